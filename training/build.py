"""From a validated config to datasets, encoders, views and an objective.

``check_pair`` decides, from registry capabilities alone, whether an objective
can train on a modality; it runs before anything is built.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

import registry
from errors import UserError


class IncompatibleError(UserError, ValueError):
    """An objective needs a capability that the modality does not offer."""


def offered(dataset: str, encoder: str, views: str | None) -> set[str]:
    """Capabilities a (dataset, encoder, views) triple offers."""
    caps = set(registry.get("dataset", dataset).capabilities) | set(registry.get("encoder", encoder).capabilities)
    if views:
        caps |= registry.get("views", views).capabilities
    return caps


def missing(cfg: dict) -> list[str]:
    """Capabilities the configured objective needs that the configured modality lacks."""
    needs = registry.get("objective", cfg["objective"]["name"]).capabilities
    caps = offered(cfg["data"]["name"], cfg["model"]["encoder"], cfg["views"]["name"])
    return sorted(needs - caps)


def check_pair(cfg: dict, working_pairs) -> None:
    """Raise a one-sentence error if the objective cannot train on this modality.

    ``working_pairs()`` returns the "modality/objective" strings that do work,
    named in the message; it is called only when the pair fails.

    Raises:
        IncompatibleError: a needed capability is missing.
    """
    lacking = missing(cfg)
    if lacking:
        raise IncompatibleError(
            f"objective '{cfg['objective']['name']}' needs {', '.join(lacking)}, which modality "
            f"'{cfg['modality']}' (dataset '{cfg['data']['name']}', encoder '{cfg['model']['encoder']}') "
            f"does not provide; pairs that work: {', '.join(working_pairs()) or 'none'}")


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


def build_datasets(cfg: dict) -> dict:
    """{'train', 'val', 'test'} datasets of the configured data."""
    data = cfg["data"]
    kwargs = section(data, data["name"])
    if data["path"] is not None:
        kwargs["path"] = data["path"]
    return {split: registry.build("dataset", data["name"], split=split, seed=cfg["seed"], **kwargs)
            for split in ("train", "val", "test")}


def build_encoder(cfg: dict, input_shape) -> torch.nn.Module:
    """The configured encoder; ``in_channels`` (C) and ``spatial_dims`` (1 for (C, T),
    2 for (C, H, W), 3 for (C, D, H, W)) come from the data when the encoder takes them."""
    name = cfg["model"]["encoder"]
    kwargs = section(cfg["model"], name)
    params = inspect.signature(registry.get("encoder", name).factory).parameters
    if "in_channels" in params:
        kwargs.setdefault("in_channels", input_shape[0])
    if "spatial_dims" in params:
        kwargs.setdefault("spatial_dims", len(input_shape) - 1)
    return registry.build("encoder", name, **kwargs)


def build_text_encoder(cfg: dict, captions) -> torch.nn.Module:
    """The text encoder of paired objectives; a word tokenizer is built from ``captions``
    (the train split's), or ``model.text.pretrained`` names a local HuggingFace model."""
    from modalities.text.encoders import build_text_encoder as build

    text = cfg["model"]["text"]
    if text["pretrained"]:
        return build(captions, "text_pretrained", path=text["pretrained"])
    return build(captions, text["encoder"], **section(text, text["encoder"]))


def build_views(cfg: dict):
    """The configured view transform, or None when the objective does not need views."""
    name = cfg["views"]["name"]
    needs = registry.get("objective", cfg["objective"]["name"]).capabilities
    if not name or "views" not in needs:
        return None
    return registry.build("views", name, **section(cfg["views"], name))


def build_objective(cfg: dict, encoders: dict, n_classes: int) -> torch.nn.Module:
    """The configured objective. Every objective takes ``encoders`` (a dict of
    modules whose ``.dims`` it reads; it may copy them, as MoCo's key encoder
    does, but never keeps them as submodules) and ``n_classes`` first."""
    options = {k: v for k, v in cfg["objective"].items() if k != "name"}
    return registry.build("objective", cfg["objective"]["name"], encoders=encoders, n_classes=n_classes, **options)
