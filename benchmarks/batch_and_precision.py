"""The GPU-session tables of train_throughput.py: loop samples/s per ``train.precision``, and the largest batch.

    python benchmarks/train_throughput.py --device cuda --precisions fp32 bf16
    python benchmarks/train_throughput.py --device cuda --largest-batch --precisions fp32 bf16

- precisions: ``training.loop.train`` (as in the overhead table) with
  ``train.precision`` set to each value in turn on one model, rounds
  alternating the order; samples/s per precision (median) and the median
  per-round ratio against the first precision.
- largest batch: one optimizer step of the loop's own pieces (views,
  autocast, ``grad_cache.backward`` with the loss scaler, AdamW) at growing
  batch sizes, doubling until a step runs out of memory (or ``--max-batch``),
  then bisecting to within 1/16. The built-in train split has 1024 items, so a
  batch of N repeats them (memory does not depend on the content). On CUDA:
  the peak of ``torch.cuda.max_memory_allocated`` during the step; on the CPU
  nothing runs out of memory here, so the search only stops at ``--max-batch``
  (a check of the code path, not a figure).
"""
from __future__ import annotations

import gc
import statistics

import torch


def precision_rows(runner, precisions: list[str], steps: int, repeats: int) -> dict:
    """{"samples_per_s": {precision: median}, "ratios": {precision: median of per-round ratio to precisions[0]}}."""
    rates = {p: [] for p in precisions}
    for r in range(repeats):
        for p in precisions if r % 2 == 0 else precisions[::-1]:
            runner.cfg["train"]["precision"] = p
            rates[p].append(runner.run_loop(steps)[0])
    first = rates[precisions[0]]
    return {"samples_per_s": {p: statistics.median(v) for p, v in rates.items()},
            "ratios": {p: statistics.median(a / b for a, b in zip(v, first, strict=True)) for p, v in rates.items()}}


def batch_of(dataset, size: int) -> dict:
    """A batch of ``size`` items of ``dataset``, cycling through it."""
    from torch.utils.data import default_collate

    return default_collate([dataset[i % len(dataset)] for i in range(size)])


def one_step(runner, batch_size: int, precision: str) -> float:
    """One optimizer step at ``batch_size``; returns the peak GiB allocated on CUDA (NaN on the CPU).

    Raises:
        torch.OutOfMemoryError: the step does not fit.
    """
    from training import grad_cache
    from training.data import to_device
    from training.loop import add_views
    from training.precision import autocast, autocast_dtype, grad_scaler

    device, model = runner.device, runner.model
    dtype = autocast_dtype(precision, device)
    scaler = grad_scaler(device, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batch = add_views(to_device(batch_of(runner.datasets["train"], batch_size), device), runner.views,
                      runner.cfg["seed"], 1, device)
    runner.optimizer.zero_grad(set_to_none=True)
    grad_cache.backward(model["objective"], model["encoders"], batch, 0, scaler.scale, lambda: autocast(device, dtype))
    scaler.step(runner.optimizer)
    scaler.update()
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def fits(runner, batch_size: int, precision: str) -> float | None:
    """Peak GiB of a step at ``batch_size``, or None when it runs out of memory."""
    try:
        return one_step(runner, batch_size, precision)
    except torch.OutOfMemoryError:
        return None
    finally:
        runner.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if runner.device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(runner, precision: str, max_batch: int) -> tuple[int, float]:
    """(largest batch size that fits, its peak GiB), searched from ``train.batch_size`` up to ``max_batch``."""
    low = runner.batch_size
    peak = fits(runner, low, precision)
    if peak is None:
        return 0, float("nan")
    high = None
    while high is None and low < max_batch:  # double until a step fails
        size = min(2 * low, max_batch)
        got = fits(runner, size, precision)
        if got is None:
            high = size
        else:
            low, peak = size, got
    while high is not None and high - low > max(1, low // 16):  # bisect between the last fit and the first failure
        size = (low + high) // 2
        got = fits(runner, size, precision)
        if got is None:
            high = size
        else:
            low, peak = size, got
    return low, peak
