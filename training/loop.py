"""The training loop: one screen, top to bottom.

Each step: next batch -> device -> views (if the objective needs them) ->
objective loss -> backward -> clip -> AdamW -> schedule. TensorBoard gets
``train/loss``, every scalar the objective returns, ``train/lr``,
``train/grad_norm`` and ``train/samples_per_s``; ``val/*`` every
``train.val_every`` steps; ``checkpoints/last.pt`` every
``train.checkpoint_every`` steps and at the end.
"""
from __future__ import annotations

import math
import time

import torch

from training import checkpoint
from training.data import eval_loader, to_device, train_batches
from training.progress import Progress


def view_generator(seed: int, step: int, device, rank: int = 0) -> torch.Generator:
    """A generator for the views of one step: fresh per (seed, rank, step), so
    augmentations differ across ranks and steps and replay exactly on resume."""
    return torch.Generator(device=device).manual_seed(hash((seed, rank, step)) % (2 ** 62))


def add_views(batch: dict, views, seed: int, step: int, device) -> dict:
    if views is not None:
        batch["views"] = views(batch["x"], generator=view_generator(seed, step, device))
    return batch


@torch.no_grad()
def validate(model, views, dataset, cfg: dict, device) -> dict:
    """Mean of every objective scalar over ``train.val_batches`` val batches (fixed RNG)."""
    model.eval()
    totals: dict[str, float] = {}
    n = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg["seed"])
        for i, batch in enumerate(eval_loader(dataset, cfg["train"]["batch_size"])):
            if i == cfg["train"]["val_batches"]:
                break
            batch = add_views(to_device(batch, device), views, cfg["seed"] + 1, i, device)
            out = model["objective"](model["encoders"], batch)
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            n += 1
    model.train()
    return {k: v / max(n, 1) for k, v in totals.items()}


def train(cfg: dict, model, views, datasets: dict, optimizer, scheduler, writer, run_dir, device,
          start_step: int = 0) -> dict:
    """Train ``model`` ({"encoders": {"x"[, "text"]}, "objective"}) from ``start_step`` to ``train.steps``.

    Stops early, with a checkpoint, after ``train.stop_after_steps`` steps of
    this session when that is non-zero.

    Returns:
        {"samples_per_s": mean throughput of this session, "final_loss": last loss, "step": last step}.
    """
    tc = cfg["train"]
    last_step = tc["steps"] if not tc["stop_after_steps"] else min(tc["steps"], start_step + tc["stop_after_steps"])
    batches = train_batches(datasets["train"], tc["batch_size"], cfg["seed"], start_step,
                            num_workers=cfg["data"]["num_workers"], pin_memory=device.type == "cuda")
    progress = Progress(tc["steps"], start_step, enabled=tc["progress"])
    clip = tc["grad_clip"] if tc["grad_clip"] > 0 else math.inf
    model.train()
    train_seconds, samples, loss = 0.0, 0, float("nan")
    for step in range(start_step + 1, last_step + 1):
        began = time.perf_counter()
        batch = add_views(to_device(next(batches), device), views, cfg["seed"], step, device)
        out = model["objective"](model["encoders"], batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        if hasattr(model["objective"], "on_step_end"):  # e.g. MoCo's momentum update
            model["objective"].on_step_end(model["encoders"])
        seconds = time.perf_counter() - began
        train_seconds, samples = train_seconds + seconds, samples + len(batch["x"])
        loss = out["loss"].item()

        if step % tc["log_every"] == 0 or step == tc["steps"]:
            writer.add_scalar("train/loss", loss, step)
            for key, value in out.items():
                if key != "loss":
                    writer.add_scalar(f"train/{key}", float(value), step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
            writer.add_scalar("train/grad_norm", float(grad_norm), step)
            writer.add_scalar("train/samples_per_s", len(batch["x"]) / seconds, step)
        if tc["val_every"] and (step % tc["val_every"] == 0 or step == tc["steps"]):
            for key, value in validate(model, views, datasets["val"], cfg, device).items():
                writer.add_scalar(f"val/{key}", value, step)
        if step % tc["checkpoint_every"] == 0 or step == last_step:
            checkpoint.save(run_dir / "checkpoints" / "last.pt", step, model, optimizer, scheduler)
        progress.update(step, loss, len(batch["x"]) / seconds)
    writer.flush()
    return {"samples_per_s": samples / train_seconds if train_seconds else 0.0, "final_loss": loss,
            "step": last_step}
