"""One training run from a validated config: build, train, evaluate, write results.

Run directory layout::

    config.yaml            the merged config (what --resume reads back)
    events.out.tfevents.*  TensorBoard scalars and the config text
    checkpoints/last.pt    model, optimizer, scheduler, step, RNG state
    results.json           held-out evaluation (see RESULTS_SCHEMA in README)

Under torchrun (training/distributed.py) every rank builds the same model from
the same seed (rank 0's weights are broadcast anyway) and trains on its block
of each global batch of ``train.batch_size * world_size``; only rank 0 writes
the run directory and evaluates (the whole test split, nothing duplicated)
after the process group is closed, while the other ranks return None.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import config as config_lib
import registry
from errors import UserError
from training import checkpoint, grad_cache
from training import distributed as dist
from training.budget import epochs_done, fit_budget
from training.build import (
    build_datasets,
    build_encoder,
    build_objective,
    build_text_encoder,
    build_views,
)
from training.evaluate import check_protocol, evaluate_run
from training.host_memory import keep_freed_host_memory
from training.loop import train
from training.precision import apply_speed_settings
from training.schedule import warmup_cosine


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
    (same seed, same init). A text encoder is built only for objectives that need text."""
    encoders = nn.ModuleDict({"x": initial_encoder(cfg, train_set)})
    if "text" in registry.get("objective", cfg["objective"]["name"]).capabilities:
        encoders["text"] = build_text_encoder(cfg, train_set.captions)
    objective = build_objective(cfg, encoders, len(train_set.classes))
    return nn.ModuleDict({"encoders": encoders, "objective": objective})


def open_run_dir(cfg: dict, model, run_dir: Path, start_step: int) -> SummaryWriter:
    """Write config.yaml (and tokenizer.json) into ``run_dir``; the TensorBoard writer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_lib.dump(cfg))
    if "text" in model["encoders"] and hasattr(model["encoders"]["text"], "tokenizer"):
        model["encoders"]["text"].tokenizer.save(run_dir / "tokenizer.json")
    # purge_step hides events a crashed session logged after its last checkpoint.
    writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
    if not start_step:
        writer.add_text("config", "    " + config_lib.dump(cfg).replace("\n", "\n    "), 0)
    return writer


def run_experiment(cfg: dict, run_dir: Path, resume: bool = False) -> dict | None:
    """Train (or continue) the run in ``run_dir`` and evaluate it; returns results.json's dict,
    or {"stopped_at_step", "steps"} when ``train.stop_after_steps`` ended the session early.
    Under torchrun, ranks other than 0 return None."""
    device = dist.setup(pick_device(cfg["device"]))
    try:
        return _run(cfg, Path(dist.broadcast_object(str(run_dir))), resume, device)
    finally:
        dist.teardown()


def build_training(cfg: dict, device: torch.device) -> tuple:
    """What a run trains, as ``run.py`` builds it: (datasets, model on ``device`` with the
    same parameters on every rank and the ``train.*`` speed settings, views, AdamW, its
    warmup-cosine schedule). Also used by benchmarks/train_throughput.py."""
    grad_cache.check(cfg["train"], cfg["objective"]["name"])  # config errors before minutes of building
    check_protocol(cfg)
    keep_freed_host_memory(cfg["train"]["keep_host_memory"])  # before the first large allocation
    datasets = build_datasets(cfg)
    fit_budget(cfg["train"], len(datasets["train"]), dist.world_size())  # before the schedule and config.yaml
    model = build_model(cfg, datasets["train"]).to(device)
    dist.broadcast_parameters(model)
    apply_speed_settings(cfg, model, device)
    views = build_views(cfg)
    views = views.to(device) if views is not None else None
    oc = cfg["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=oc["lr"], betas=tuple(oc["betas"]),
                                  weight_decay=oc["weight_decay"])
    scheduler = warmup_cosine(optimizer, cfg["train"]["steps"], oc["warmup_steps"], oc["min_lr_ratio"])
    return datasets, model, views, optimizer, scheduler


def _run(cfg: dict, run_dir: Path, resume: bool, device: torch.device) -> dict | None:
    began = time.time()
    main, world = dist.is_main(), dist.world_size()
    datasets, model, views, optimizer, scheduler = build_training(cfg, device)

    start_step, counters = 0, {}
    if resume:
        state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        start_step, counters = checkpoint.restore(state, model, optimizer, scheduler), state.get("counters", {})
    writer = open_run_dir(cfg, model, run_dir, start_step) if main else None

    stats = train(cfg, model, views, datasets, optimizer, scheduler, writer, run_dir, device, start_step, counters)
    dist.teardown()  # the rest is rank 0 alone: no collective (a loss's gather) can wait on a finished rank
    if not main:
        return None
    if stats["step"] < cfg["train"]["steps"]:
        writer.close()
        return {"stopped_at_step": stats["step"], "steps": cfg["train"]["steps"]}

    evaluation = evaluate_run(cfg, model, initial_encoder(cfg, datasets["train"]).to(device), datasets, device,
                              writer, step=cfg["train"]["steps"])
    steps = cfg["train"]["steps"]
    writer.close()

    results = {
        "modality": cfg["modality"], "objective": cfg["objective"]["name"], "encoder": cfg["model"]["encoder"],
        "dataset": cfg["data"]["name"], "seed": cfg["seed"], "steps": steps,
        "epochs": round(epochs_done(cfg["train"], steps, len(datasets["train"]), world), 3),
        "batch_size": cfg["train"]["batch_size"], "train_items": len(datasets["train"]), "resumed_from_step": start_step,
        "wall_time_s": round(time.time() - began, 2), "samples_per_s": round(stats["samples_per_s"], 2),
        "final_train_loss": stats["final_loss"], "chance_acc": 1.0 / len(datasets["train"].classes),
        **evaluation,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
