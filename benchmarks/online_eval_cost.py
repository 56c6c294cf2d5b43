"""The cost of ``train.online_eval`` (training/online_eval.py, evaluation/online.py) and its table, for
train_throughput.py --online-eval.

    python benchmarks/train_throughput.py --online-eval
    python benchmarks/train_throughput.py --online-eval --pairs sequence/cpc --steps 8 --repeats 3

- per step: ``training.loop.train`` on one model with the online classifier and without it,
  ``--steps`` steps per call, after one warm-up call of each; ``--repeats`` rounds, each timing
  both, alternating which goes first (load from other jobs falls on both alike). Reported: the
  median seconds per step of each and the median over rounds of the per-round ratio of time
  on / time off, on wall-clock and on CPU time (``time.process_time``).
- in the loop: the wall-clock seconds the classifier's own work took inside those same timed calls
  (``OnlineProbe.seconds``: matching and reading the embedding, the extra forward where there is one,
  its updates), as a share of the rest of the call (the step without it): measured within one call,
  so load from other jobs falls on both parts of the ratio alike; median over rounds. On CUDA the
  timer does not synchronize, so there it counts launching the classifier's kernels, not running them.
- the classifier's own work alone: a fresh ``OnlineProbe`` (the config's updates and replay) stepped
  200 times on rows of the loop's shape (batch x views, D), timed without the loop around it
  (milliseconds per step, and as a share of a step without the classifier).
- per validation: the online part of one validation (``OnlineValidation``: embedding the kNN bank
  and the val items with the frozen encoder, then the classifier, kNN, effective rank and
  output std), timed once per round; reported as seconds (median), as steps of the loop without
  the classifier, and as a share of the pair's default ``train.val_every`` steps between validations.
"""
from __future__ import annotations

import math
import statistics
import time


def timed_on(runner, steps: int) -> tuple:
    """``runner.run_loop``'s (wall, CPU) samples/s with the classifier, and the share of that call's wall
    time the classifier's own work took (``OnlineProbe.seconds``), as a share of the rest of the call."""
    before = runner.online.seconds
    rates = runner.run_loop(steps, online=True)
    online_s, call_s = runner.online.seconds - before, steps * runner.batch_size / rates[0]
    return (*rates, online_s / (call_s - online_s))


def timed_pair(runner, steps: int, on_first: bool) -> tuple[tuple, tuple]:
    """((wall, CPU samples/s, in-loop share) with the classifier, (wall, CPU samples/s) without)."""
    if on_first:
        on = timed_on(runner, steps)
        return on, runner.run_loop(steps, online=False)
    off = runner.run_loop(steps, online=False)
    return timed_on(runner, steps), off


def default_val_every(cfg: dict) -> int:
    """``train.val_every`` of the pair's own config (the runner's turns validation off)."""
    from core import config as config_lib

    return config_lib.load_config(cfg["modality"], cfg["objective"]["name"])["train"]["val_every"]


def probe_seconds(runner, calls: int = 200) -> float:
    """Seconds of the online classifier's own work per step (a fresh ``OnlineProbe``: its step on rows of
    the shape the loop gives it, batch x views by D), the mean of ``calls`` steps, without the loop around it."""
    import torch

    from training.online_eval import OnlineProbe

    train_set = runner.datasets["train"]
    dim, rows = runner.model["encoders"]["x"].dims["embedding"], runner.batch_size
    rows *= runner.views.n_views if runner.views is not None else 1
    tc = runner.cfg["train"]
    probe = OnlineProbe(dim, len(train_set.classes), tc["online_eval_lr"], runner.device, tc["online_eval_updates"],
                        tc["online_eval_momentum"], tc["online_eval_extra_every"], tc["online_eval_replay"])
    embedding = torch.randn(rows, dim, device=runner.device)
    labels = torch.randint(0, len(train_set.classes), (rows,), device=runner.device)
    began = time.perf_counter()
    for _ in range(calls):
        probe.seen.append((embedding, labels))
        probe.step()
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / calls


def measure_online(runner, steps: int, repeats: int) -> dict:
    """Seconds per step on and off, their per-round ratios (time on / time off), and one online validation.

    Raises:
        SystemExit: the runner's config has no online classifier (train.online_eval off, or no labels).
    """
    from evaluation.online import OnlineValidation

    if runner.online is None:
        raise SystemExit("no online classifier to measure: train.online_eval is off or the data has no labels")
    watch = OnlineValidation(runner.cfg, runner.datasets, runner.device)
    encoder = runner.model["encoders"]["x"]
    timed_pair(runner, max(2, steps // 4), True)  # warm-up, not counted
    watch(encoder, runner.online)
    on, off, validation = [], [], []
    for r in range(repeats):
        a, b = timed_pair(runner, steps, r % 2 == 0)
        on.append(a)
        off.append(b)
        began = time.perf_counter()
        watch(encoder, runner.online)
        validation.append(time.perf_counter() - began)
    probe_s = probe_seconds(runner)
    ratios = [[b[i] / a[i] for a, b in zip(on, off, strict=True)] for i in (0, 1)]  # rates off / on = time on / off
    step_off = runner.batch_size / statistics.median(b[0] for b in off)
    val_s, val_every = statistics.median(validation), default_val_every(runner.cfg)
    return {"step_off": step_off, "step_on": runner.batch_size / statistics.median(a[0] for a in on),
            "ratio": statistics.median(ratios[0]), "cpu_ratio": statistics.median(ratios[1]),
            "ratios": ratios[0], "cpu_ratios": ratios[1], "in_loop": statistics.median(a[2] for a in on),
            "in_loops": [a[2] for a in on], "val_s": val_s, "val_steps": val_s / step_off,
            "val_every": val_every, "val_share": val_s / step_off / val_every, "probe_s": probe_s,
            "bank": len(watch.bank) if watch.bank is not None else 0, "queries": len(watch.queries)}


def online_table(args, open_runner) -> bool:
    """Print the markdown table of ``measure_online`` for each of ``args.pairs``: seconds per step with
    ``train.online_eval`` on and off, and one online validation; True when every ratio is finite.

    Args:
        args: train_throughput.py's parsed arguments (``pairs``, ``steps``, ``repeats``, ``device``, ``set``).
        open_runner: train_throughput.open_runner, ``(pair, device, overrides)`` -> a context manager
            giving its ``Runner``.

    Raises:
        SystemExit: a pair's config has no online classifier (``measure_online``).
    """
    print("| pair | device | batch | s/step off | s/step on | on / off, wall | per round | on / off, CPU time "
          "| per round | in the loop: online share of a step | per round | classifier's own ms/step (share of a step) "
          "| online validation s (bank + val items) | in steps | share at val_every |")
    print("|---" * 15 + "|", flush=True)
    ok = True
    for pair in args.pairs:
        with open_runner(pair, args.device, args.set) as runner:
            row = measure_online(runner, args.steps, args.repeats)
        wall, cpu = (" ".join(f"{x:.3f}" for x in row[key]) for key in ("ratios", "cpu_ratios"))
        ok = ok and math.isfinite(row["ratio"])
        print(f"| {pair} | {runner.device} | {runner.batch_size} | {row['step_off']:.4f} | {row['step_on']:.4f} "
              f"| {row['ratio']:.3f} | {wall} | {row['cpu_ratio']:.3f} | {cpu} "
              f"| {row['in_loop']:.4f} | {' '.join(f'{x:.4f}' for x in row['in_loops'])} "
              f"| {1000 * row['probe_s']:.2f} ({row['probe_s'] / row['step_off']:.4f}) | {row['val_s']:.2f} "
              f"({row['bank']} + {row['queries']}) | {row['val_steps']:.1f} "
              f"| {row['val_share']:.3f} ({row['val_every']}) |", flush=True)
    return ok
