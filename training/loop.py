"""The training loop: one screen, top to bottom.

Each step: next batch -> device -> views (if the objective needs them; local views too
when the transform makes them: multi-crop) ->
objective loss (under autocast, ``train.precision``) -> backward -> (under
torchrun: gradients averaged over ranks) -> clip -> optimizer (``optim.name``) -> schedule.
TensorBoard gets ``train/loss``, every scalar the objective returns,
``train/lr``, ``train/grad_norm``, ``train/samples_per_s`` (global: all
ranks) and ``train/data_wait_frac`` (share of the step spent waiting for the
batch); ``val/*`` every ``train.val_every`` steps; ``checkpoints/last.pt``
every ``train.checkpoint_every`` steps and at the end. With ``train.average_weights``
(``training/weight_average.py``) each step's encoder weights join their running average, which
replaces them after the last step, before its validation and checkpoint. With ``train.online_eval``
(``training/online_eval.py``) the online classifier learns from each step's detached
embeddings after the model's step (``train/online_probe_loss``, ``train/online_probe_acc``)
and each validation adds what ``online_validation`` returns (``evaluation/online.py``:
``val/online_probe_acc``, ``val/knn_acc``, ``val/effective_rank``, ``val/output_std``).
Under torchrun every rank trains and validates on its own block of each global batch; only
rank 0 (``writer`` is None elsewhere) logs, checkpoints, prints progress and runs
``online_validation``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time

import torch

from core.notes import say_once
from core.process_group import is_main, rank, world_size
from training import checkpoint, grad_cache
from training.budget import epochs_done
from training.data import to_device, train_batches, val_loader
from training.distributed import average_step
from training.nonfinite import NonFiniteGuard
from training.online_eval import OnlineProbe
from training.precision import SpeedSettings, autocast, grad_scaler, to_channels_last
from training.progress import Progress
from training.signals import GracefulStop, stops_gracefully
from training.weight_average import WeightAverage


def view_generator(seed: int, step: int, device, rank: int = 0) -> torch.Generator:
    """A generator for the views of one step: fresh per (seed, rank, step), so
    augmentations differ across ranks and steps and replay exactly on resume."""
    return torch.Generator(device=device).manual_seed(hash((seed, rank, step)) % (2 ** 62))


def add_views(batch: dict, views, seed: int, step: int, device, rank: int = 0) -> dict:
    """batch["views"] (B, V, ...) and, when the transform makes ``local_views`` (multi-crop),
    batch["local_views"] (B, L, ...smaller), all drawn from the step's one generator."""
    if views is not None:
        generator = view_generator(seed, step, device, rank)
        batch["views"] = views(batch["x"], generator=generator)
        if getattr(views, "local_views", 0) and "mask" in batch:
            say_once("local views skipped: series of unequal length (padded, with a mask) have no common "
                     "window; the student sees the global views only")
        elif getattr(views, "local_views", 0):
            batch["local_views"] = views.local_crops(batch["x"], generator=generator)
    return batch


@torch.no_grad()
def validate(model, views, dataset, cfg: dict, device, amp_dtype=None) -> dict:
    """Mean of every objective scalar over ``train.val_batches`` val batches (fixed RNG).

    Under torchrun each rank takes its block of every global val batch (no item
    twice) and the means are averaged over ranks, so every rank returns the same.
    """
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    n = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg["seed"])
        for i, batch in enumerate(val_loader(dataset, cfg["train"]["batch_size"], rank(), world_size())):
            if i == cfg["train"]["val_batches"]:
                break
            batch = add_views(to_device(batch, device), views, cfg["seed"] + 1, i, device, rank())
            with autocast(device, amp_dtype):
                out = average_step([], model["objective"](model["encoders"], batch))
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + torch.as_tensor(value, dtype=torch.float64)
            n += 1
    model.train()
    return {k: float(v) / max(n, 1) for k, v in totals.items()}


def accumulate_gradients(model, batches, views, cfg: dict, step: int, device, speed: SpeedSettings, scaler,
                         online: OnlineProbe | None) -> tuple[list[dict], dict, float]:
    """The ``train.accumulate_steps`` micro-batches of ``step``: fetch, views, forward and backward
    (plain or the gradient cache, ``train.grad_cache_chunk``) into ``.grad``, each watched by ``online``.

    Returns:
        (the objective's dict per micro-batch, the last batch, seconds spent getting batches).
    """
    tc, waited, outs = cfg["train"], 0.0, []
    accumulate, encoder = tc["accumulate_steps"], model["encoders"]["x"]
    amp = functools.partial(autocast, device, speed.amp_dtype)
    for micro in range(accumulate):
        fetched = time.perf_counter()
        batch = to_device(next(batches), device)
        batch = to_channels_last(batch) if speed.channels_last else batch
        waited += time.perf_counter() - fetched
        batch = add_views(batch, views, cfg["seed"], (step - 1) * accumulate + micro + 1, device, rank())
        with online.watch(encoder, batch, amp, step) if online is not None else contextlib.nullcontext():
            outs.append(grad_cache.backward(model["objective"], model["encoders"], batch, tc["grad_cache_chunk"],
                                            lambda loss: scaler.scale(loss / accumulate), amp))
    return outs, batch, waited


def log_step(writer, step: int, out: dict, loop_scalars: dict) -> None:
    """``train/loss``, every other scalar of ``out`` (the objective's, the online classifier's) and the
    loop's own (``lr``, ``grad_norm``, ...) as ``train/<key>`` at ``step``."""
    writer.add_scalar("train/loss", float(out["loss"]), step)
    for key, value in {**{k: v for k, v in out.items() if k != "loss"}, **loop_scalars}.items():
        writer.add_scalar(f"train/{key}", float(value), step)


@stops_gracefully  # SIGTERM/SIGINT only raise the flag ``stop`` while train runs (training/signals.py)
def train(cfg: dict, model, views, datasets: dict, optimizer, scheduler, writer, run_dir, device,
          speed: SpeedSettings, start_step: int = 0, counters: dict | None = None,
          stop: GracefulStop | None = None, online: OnlineProbe | None = None, online_validation=None,
          average: WeightAverage | None = None) -> dict:
    """Train ``model`` ({"encoders": {"x"[, "text"]}, "objective"}) from ``start_step`` to ``train.steps``.

    ``speed``: the resolved speed switches the model was prepared with (``training.precision``).

    ``counters``: the running totals of the checkpoint resumed from (``{"nonfinite_steps": n}``).

    ``online``: the online classifier (trained every step, checkpointed); ``online_validation``:
    ``f(x encoder, online) -> {name: float}``, logged as ``val/<name>`` at every validation (rank 0).

    ``average``: the encoders' running weight average (``train.average_weights``; checkpointed), updated
    after every step and copied into the encoders after step ``train.steps``.

    Stops early, with a checkpoint, after ``train.stop_after_steps`` steps of
    this session when that is non-zero.

    Returns:
        {"samples_per_s": mean throughput of this session, "final_loss": last loss, "step": last step}.
    """
    tc = cfg["train"]
    main, world = is_main(), world_size()
    last_step = tc["steps"] if not tc["stop_after_steps"] else min(tc["steps"], start_step + tc["stop_after_steps"])
    accumulate = tc["accumulate_steps"]  # micro-batches per step, each with only its own negatives
    batches = train_batches(datasets["train"], tc["batch_size"], cfg["seed"], start_step * accumulate, rank(), world,
                            num_workers=cfg["data"]["num_workers"], pin_memory=device.type == "cuda")
    amp_dtype = speed.amp_dtype
    scaler = grad_scaler(device, amp_dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    progress = Progress(tc["steps"], start_step, enabled=tc["progress"] and main,
                        steps_per_epoch=1 / epochs_done(tc, 1, len(datasets["train"]), world))
    clip = tc["grad_clip"] if tc["grad_clip"] > 0 else math.inf
    guard = NonFiniteGuard(tc["max_nonfinite_in_row"], writer if main else None, not scaler.is_enabled(),
                           total=(counters or {}).get("nonfinite_steps", 0))
    model.train()
    encoder = model["encoders"]["x"]
    if online is not None:
        online.attach(encoder)
    train_seconds, samples, loss = 0.0, 0, float("nan")
    for step in range(start_step + 1, last_step + 1):
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outs, batch, waited = accumulate_gradients(model, batches, views, cfg, step, device, speed, scaler, online)
        out = average_step(params, grad_cache.mean_outputs(outs))  # torchrun: mean gradients and scalars over ranks
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        finite = guard.check(out["loss"], grad_norm, step)  # non-finite: no update, counted; N in a row: error
        if finite:
            scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if finite and hasattr(model["objective"], "on_step_end"):  # e.g. MoCo's momentum update
            model["objective"].on_step_end(model["encoders"], step, tc["steps"])
        if online is not None:  # after the model's step: its gradients and update are the same without it
            out = {**out, **online.step(update=finite)}
        if average is not None:
            average.update(model["encoders"])
            if step == tc["steps"]:
                average.copy_to(model["encoders"])
                say_once(f"train.average_weights: the encoders are now the average of their weights over "
                         f"{average.members} states (the init and every step); that is what is evaluated and saved")
        seconds = time.perf_counter() - began
        step_samples = len(batch["x"]) * world * accumulate
        train_seconds, samples = train_seconds + seconds, samples + step_samples
        loss = out["loss"].item()

        if main and (step % tc["log_every"] == 0 or step == tc["steps"]):
            log_step(writer, step, out, {"lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                                         "samples_per_s": step_samples / seconds, "data_wait_frac": waited / seconds})
        if tc["val_every"] and (step % tc["val_every"] == 0 or step == tc["steps"]):
            val = validate(model, views, datasets["val"], cfg, device, amp_dtype)  # every rank: it gathers
            if main and online_validation is not None:  # rank 0 alone: the encoder only, no collective
                val.update(online_validation(encoder, online))
            for key, value in val.items() if main else ():
                writer.add_scalar(f"val/{key}", value, step)
        stopping = stop.requested(device)
        if main and not guard.in_row and (step % tc["checkpoint_every"] == 0 or step == last_step or stopping):
            checkpoint.save(run_dir / "checkpoints" / "last.pt", step, model, optimizer, scheduler,
                            {"nonfinite_steps": guard.total}, online, average)
        progress.update(step, loss, step_samples / seconds)
        if stopping:  # exits with 128 + signal number after closing the writer
            stop.exit(step, tc["steps"], run_dir, writer if main else None)
    if online is not None:
        online.detach()
    if main:
        writer.flush()
    return {"samples_per_s": samples / train_seconds if train_seconds else 0.0, "final_loss": loss,
            "step": last_step}
