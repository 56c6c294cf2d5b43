"""From a validated config to what a run trains: datasets, encoders, views, objective, optimizer
and the online classifier (``training/online_eval.py``).

``build_training`` is the one recipe, used by ``experiment.py`` to train and, through
``build_model_and_data``, by ``run.py eval`` to rebuild a run's model around its checkpoint.
Encoders, datasets, views and objectives are looked up by name in the registry; the
arguments a factory takes from the data (``in_channels``, ``spatial_dims``, ``n_classes``)
are passed only to factories that take them.
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from core import registry
from core.errors import UserError
from core.process_group import world_size
from objectives.labels import check_label_mode
from training import distributed, grad_cache
from training.budget import fit_budget
from training.host_memory import keep_freed_host_memory
from training.online_eval import OnlineProbe, build_online_probe
from training.optimizers import build_optimizer
from training.precision import SpeedSettings, apply_speed_settings, resolve_speed
from training.schedule import warmup_cosine


def resolve_dataset(cfg: dict) -> str:
    """The dataset name for ``cfg``: ``data.name`` without a path; with ``data.path``,
    ``data.format`` when it names a dataset, else the first loader of the modality
    whose ``accepts(path)`` recognizes the path.

    Raises:
        UserError: the path does not exist, or no loader of the modality recognizes it.
    """
    data = cfg["data"]
    if data["path"] is None:
        return data["name"]
    if data["format"] != "auto":
        return registry.get("dataset", data["format"]).name
    path = Path(data["path"]).expanduser()
    if not path.exists():
        raise UserError(f"data path '{path}' does not exist")
    loaders = [n for n in registry.names("dataset", cfg["modality"])
               if hasattr(registry.get("dataset", n).factory, "accepts")]
    for name in loaders:
        if registry.get("dataset", name).factory.accepts(path):
            return name
    raise UserError(f"no {cfg['modality']} loader recognizes '{path}'; loaders: {', '.join(loaders) or 'none'} "
                    f"(see README for their layouts, or set data.format=NAME)")


def section(cfg_part: dict, name: str) -> dict:
    """Options of a registered name: the ``<name>`` sub-section, or {}."""
    return dict(cfg_part.get(name) or {})


def build_datasets(cfg: dict, splits=("train", "val", "test")) -> dict:
    """{split: dataset} of the configured data, for each of ``splits`` (default train, val, test)."""
    data = cfg["data"]
    kwargs = section(data, data["name"])
    if data["path"] is not None:
        kwargs["path"] = str(Path(data["path"]).expanduser())  # "~/..." in an experiment file
    return {split: registry.build("dataset", data["name"], split=split, seed=cfg["seed"], **kwargs)
            for split in splits}


def takes(kind: str, name: str, argument: str) -> bool:
    """Whether the registered factory ``kind``/``name`` has a parameter ``argument``."""
    return argument in inspect.signature(registry.get(kind, name).factory).parameters


def build_encoder(cfg: dict, input_shape) -> nn.Module:
    """The configured encoder; ``in_channels`` (C) and ``spatial_dims`` (1 for (C, T),
    2 for (C, H, W), 3 for (C, D, H, W)) come from the data when the encoder takes them."""
    name = cfg["model"]["encoder"]
    kwargs = section(cfg["model"], name)
    if takes("encoder", name, "in_channels"):
        kwargs.setdefault("in_channels", input_shape[0])
    if takes("encoder", name, "spatial_dims"):
        kwargs.setdefault("spatial_dims", len(input_shape) - 1)
    return registry.build("encoder", name, **kwargs)


def build_text_encoder(cfg: dict, captions) -> nn.Module:
    """The text encoder of paired objectives; a word tokenizer is built from ``captions``
    (the train split's), or ``model.text.pretrained`` names a local HuggingFace model."""
    from modalities.text.encoders import build_text_encoder as build

    text = cfg["model"]["text"]
    if text["pretrained"]:
        return build(captions, "text_pretrained", path=text["pretrained"])
    return build(captions, text["encoder"], **section(text, text["encoder"]))


def build_views(cfg: dict):
    """The configured view transform, or None when the objective neither needs views nor asks for an
    augmented x (a paired objective's ``augment_x``: one view, ``n_views=1``)."""
    name = cfg["views"]["name"]
    needs = registry.get("objective", cfg["objective"]["name"]).capabilities
    augment_x = cfg["objective"].get("augment_x", False)
    if not name or ("views" not in needs and not augment_x):
        return None
    options = section(cfg["views"], name)
    if augment_x:
        options["n_views"] = 1
    return registry.build("views", name, **options)


def build_objective(cfg: dict, encoders: dict, n_classes: int) -> nn.Module:
    """The configured objective. Every objective takes ``encoders`` (a dict of
    modules whose ``.dims`` it reads; it may copy them, as MoCo's key encoder
    does, but never keeps them as submodules); ``n_classes`` goes only to those
    that take it (``ce``'s classifier), ``encoder_name`` (``model.encoder``) only to those that
    name the encoder in their errors (``simcse``)."""
    name = cfg["objective"]["name"]
    options = {k: v for k, v in cfg["objective"].items() if k != "name"}
    if takes("objective", name, "n_classes"):
        options["n_classes"] = n_classes
    if takes("objective", name, "encoder_name"):
        options["encoder_name"] = cfg["model"]["encoder"]
    return registry.build("objective", name, encoders=encoders, **options)


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu.

    Raises:
        UserError: 'cuda' asked for on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def initial_encoder(cfg: dict, train_set) -> nn.Module:
    """The modality encoder as initialized from ``cfg['seed']``: the weights a run starts
    from, and the random-init floor it is compared with."""
    torch.manual_seed(cfg["seed"])
    return build_encoder(cfg, train_set.input_shape)


def build_model(cfg: dict, train_set) -> nn.ModuleDict:
    """{"encoders": {"x"[, "text"]}, "objective"}, initialized from ``cfg['seed']``
    (same seed, same init). A text encoder is built only for objectives that need text.

    Raises:
        UserError: multi-label data (``train_set.multi_label``) for an objective that reads one
            label per item (``objectives.labels.check_label_mode``).
    """
    encoders = nn.ModuleDict({"x": initial_encoder(cfg, train_set)})
    if "text" in registry.get("objective", cfg["objective"]["name"]).capabilities:
        encoders["text"] = build_text_encoder(cfg, train_set.captions)
    objective = build_objective(cfg, encoders, len(train_set.classes))
    check_label_mode(objective, cfg["objective"]["name"], getattr(train_set, "multi_label", False))
    return nn.ModuleDict({"encoders": encoders, "objective": objective})


def build_model_and_data(cfg: dict, device: torch.device) -> tuple[dict, nn.ModuleDict, SpeedSettings]:
    """(datasets, model on ``device`` with the same parameters on every rank and the ``train.*``
    speed settings applied, those settings). Fits ``train.batch_size``/``train.steps`` to the
    train split (``training.budget``) before anything reads them.

    Raises:
        UserError: a data error of the loader, or a bad speed setting.
    """
    keep_freed_host_memory(cfg["train"]["keep_host_memory"])  # before the first large allocation
    datasets = build_datasets(cfg)
    fit_budget(cfg["train"], len(datasets["train"]), world_size(),  # before the schedule and config.yaml
               math.prod(datasets["train"].input_shape))
    model = build_model(cfg, datasets["train"]).to(device)
    distributed.broadcast_parameters(model)
    speed = resolve_speed(cfg["train"], device, model["encoders"]["x"])
    apply_speed_settings(speed, model, device)
    return datasets, model, speed


class Training(NamedTuple):
    """What a run trains, as ``build_training`` makes it."""

    datasets: dict                    # {"train", "val", "test"}
    model: nn.ModuleDict              # {"encoders": {"x"[, "text"]}, "objective"} on the device
    views: nn.Module | None           # the view transform, None when the objective takes none
    optimizer: torch.optim.Optimizer  # optim.name (training/optimizers.py)
    scheduler: object                 # its warmup-cosine LambdaLR
    speed: SpeedSettings              # the resolved train.* speed switches the loop reads
    online: OnlineProbe | None        # the online classifier (train.online_eval; None when off or unlabelled)


def build_training(cfg: dict, device: torch.device) -> Training:
    """What a run trains, as ``run.py`` builds it. Also used by benchmarks/train_throughput.py.

    Raises:
        UserError: a bad gradient-cache setting (before minutes of building), or what
            ``build_model_and_data`` raises.
    """
    grad_cache.check(cfg["train"], cfg["objective"]["name"])
    datasets, model, speed = build_model_and_data(cfg, device)
    views = build_views(cfg)
    views = views.to(device) if views is not None else None
    oc = cfg["optim"]
    optimizer = build_optimizer(oc, model)
    scheduler = warmup_cosine(optimizer, cfg["train"]["steps"], oc["warmup_steps"], oc["min_lr_ratio"])
    online = build_online_probe(cfg, model["encoders"]["x"], datasets["train"], device)
    return Training(datasets, model, views, optimizer, scheduler, speed, online)
