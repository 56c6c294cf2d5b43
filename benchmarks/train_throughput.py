"""Overhead of run.py's training loop: samples/s of ``training.loop.train`` against a minimal loop.

    python benchmarks/train_throughput.py                    # audio cpc, medical supcon, sequence cpc
    python benchmarks/train_throughput.py --steps 10 --repeats 3 --pairs sequence/cpc
    python benchmarks/train_throughput.py --device cuda --precisions fp32 bf16     # GPU session
    python benchmarks/train_throughput.py --device cuda --largest-batch --precisions fp32 bf16
    python benchmarks/train_throughput.py --online-eval      # the cost of train.online_eval: on / off

For each modality/objective pair, with default model sizes and batch size:

- loop: ``training.loop.train`` as ``run_experiment`` calls it (model,
  views, AdamW and warmup-cosine schedule built the same way; a real
  TensorBoard writer in a temporary run directory, scalars every step, the
  resumable data order, autocast/scaler/channels-last resolution, the
  checkpoint that ends every session). Validation is off (``val_every=0``):
  it is evaluation, not training throughput.
- minimal: the loop a user would write by hand around the same model,
  objective, views and optimizer: a shuffled ``DataLoader`` of the same
  batch size, then per step batch -> device -> views -> loss -> zero_grad ->
  backward -> clip -> step (-> the objective's ``on_step_end``).

The process-wide settings ``build_training`` applies (``train.keep_host_memory``:
glibc keeps freed memory for reuse, training/host_memory.py) hold for both
loops alike; ``--set train.keep_host_memory=false`` measures both without it.
Without it, how many pages each step faults afresh depends on the heap's
history, which made this ratio swing between 0.81 and 1.03 from run to run
(benchmarks/RESULTS.md).

The loop runs as experiment.py runs it, so with ``train.online_eval`` (on by default) the
online classifier trains in it; ``--online-eval`` prints the loop with it on against off
instead (benchmarks/online_eval_cost.py).

``--precisions`` and ``--largest-batch`` print the GPU-session tables
instead (benchmarks/batch_and_precision.py).

Each measurement is one call (``--steps`` optimizer steps) timed from call
to return, so the loop's per-session costs (data order, checkpoint) count
against it. One warm-up call of each is run first and not counted; then
``--repeats`` rounds, each timing both, alternating which goes first, so
that load from other jobs on a shared machine falls on both alike. Reported:
median samples/s of each, and the median over rounds of the per-round ratio
loop / minimal, on wall-clock time and on the process's CPU time
(``time.process_time``, all threads, TensorBoard's writer thread included).
With one torch thread the CPU-time ratio is far less disturbed by other jobs
on the machine; it does not count time spent waiting on the disk (the
checkpoint's fsync), which the wall-clock ratio does.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = ["audio/cpc", "medical/supcon", "sequence/cpc"]


def setup(modality: str, objective: str, device_name: str, overrides=()):
    from core import config as config_lib
    import modalities  # noqa: F401
    import objectives  # noqa: F401
    from training.build import build_training, pick_device

    cfg = config_lib.load_config(modality, objective, None, ["train.val_every=0", "train.steps=1000000",
                                                             f"device={device_name!r}", *overrides])
    device = pick_device(cfg["device"])
    return (cfg, device, *build_training(cfg, device))


class Runner:
    """Both loops over one model; each ``run_*`` call trains ``steps`` steps and returns samples/s."""

    def __init__(self, modality: str, objective: str, device_name: str, run_dir: Path, overrides=()):
        from torch.utils.tensorboard import SummaryWriter

        (self.cfg, self.device, self.datasets, self.model, self.views, self.optimizer,
         self.scheduler, self.speed, self.online) = setup(modality, objective, device_name, overrides)
        self.run_dir, self.writer, self.step = run_dir, SummaryWriter(str(run_dir)), 0
        self.batch_size = self.cfg["train"]["batch_size"]
        self.minimal_batches = None

    def run_loop(self, steps: int, online: bool = True) -> tuple[float, float]:
        """The loop as experiment.py calls it; ``online=False`` leaves the online classifier out."""
        from training.loop import train

        self.cfg["train"]["stop_after_steps"] = steps
        began, cpu = time.perf_counter(), time.process_time()
        stats = train(self.cfg, self.model, self.views, self.datasets, self.optimizer, self.scheduler,
                      self.writer, self.run_dir, self.device, self.speed, start_step=self.step,
                      online=self.online if online else None)
        self.step = stats["step"]
        return self.rates(steps, began, cpu)

    def rates(self, steps: int, began: float, cpu: float) -> tuple[float, float]:
        """(samples/s of wall-clock time, samples/s of CPU time) since ``began``, ``cpu``."""
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        samples = steps * self.batch_size
        return samples / (time.perf_counter() - began), samples / (time.process_time() - cpu)

    def run_minimal(self, steps: int) -> tuple[float, float]:
        import torch
        from torch.utils.data import DataLoader

        began, cpu = time.perf_counter(), time.process_time()
        loader = DataLoader(self.datasets["train"], batch_size=self.batch_size, shuffle=True, drop_last=True)
        objective, encoders = self.model["objective"], self.model["encoders"]
        params = [p for p in self.model.parameters() if p.requires_grad]
        generator = torch.Generator(device=self.device).manual_seed(0)
        batches, done = iter(loader), 0
        while done < steps:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                continue
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            if self.views is not None:
                batch["views"] = self.views(batch["x"], generator=generator)
            loss = objective(encoders, batch)["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, self.cfg["train"]["grad_clip"])
            self.optimizer.step()
            done += 1
            if hasattr(objective, "on_step_end"):
                objective.on_step_end(encoders, done, self.cfg["train"]["steps"])
        return self.rates(steps, began, cpu)


@contextlib.contextmanager
def open_runner(pair: str, device_name: str, overrides=()):
    """A Runner for ``pair`` ("modality/objective") with its TensorBoard run in a temporary folder."""
    modality, objective = pair.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(modality, objective, device_name, Path(tmp), overrides)
        try:
            yield runner
        finally:
            runner.writer.close()


def measure(pair: str, steps: int, repeats: int, device_name: str, overrides=()) -> dict:
    with open_runner(pair, device_name, overrides) as runner:
        runner.run_loop(max(2, steps // 4))  # warm-up, not counted
        runner.run_minimal(max(2, steps // 4))
        loop, minimal = [], []  # (wall, cpu) samples/s per round
        for r in range(repeats):
            if r % 2 == 0:
                a, b = runner.run_loop(steps), runner.run_minimal(steps)
            else:
                b, a = runner.run_minimal(steps), runner.run_loop(steps)
            loop.append(a)
            minimal.append(b)
    ratios = [[a[i] / b[i] for a, b in zip(loop, minimal, strict=True)] for i in (0, 1)]
    return {"pair": pair, "batch": runner.batch_size, "device": str(runner.device),
            "loop": statistics.median(a[0] for a in loop), "minimal": statistics.median(b[0] for b in minimal),
            "ratio": statistics.median(ratios[0]), "cpu_ratio": statistics.median(ratios[1]),
            "ratios": ratios[0], "cpu_ratios": ratios[1]}


def machine() -> str:
    import torch

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name"))
    except StopIteration:
        cpu = platform.processor() or "unknown CPU"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if torch.cuda.is_available():
        cpu = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), {cpu}"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {load}")


def overhead_table(args) -> bool:
    """The loop / minimal table; True when every ratio is finite."""
    print("| pair | device | batch | loop samples/s | minimal samples/s | loop / minimal, wall | per round "
          "| loop / minimal, CPU time | per round |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for pair in args.pairs:
        row = measure(pair, args.steps, args.repeats, args.device, args.set)
        wall, cpu = (" ".join(f"{x:.3f}" for x in row[key]) for key in ("ratios", "cpu_ratios"))
        print(f"| {row['pair']} | {row['device']} | {row['batch']} | {row['loop']:.1f} | {row['minimal']:.1f} "
              f"| {row['ratio']:.3f} | {wall} | {row['cpu_ratio']:.3f} | {cpu} |", flush=True)
        rows.append(row)
    return all(math.isfinite(r["ratio"]) for r in rows)


def precision_table(args) -> bool:
    """Loop samples/s per train.precision (batch_and_precision.py); True when every rate is positive."""
    from batch_and_precision import precision_rows

    print("| pair | device | batch | " + " | ".join(f"{p} samples/s" for p in args.precisions) + " | "
          + " | ".join(f"{p} / {args.precisions[0]}" for p in args.precisions[1:]) + " |")
    print("|---" * (3 + 2 * len(args.precisions) - 1) + "|", flush=True)
    ok = True
    for pair in args.pairs:
        with open_runner(pair, args.device, args.set) as runner:
            for p in args.precisions:  # warm-up (and compile, if train.compile) in every precision
                runner.cfg["train"]["precision"] = p
                runner.run_loop(max(2, args.steps // 4))
            row = precision_rows(runner, args.precisions, args.steps, args.repeats)
        rates = row["samples_per_s"]
        ok = ok and all(v > 0 for v in rates.values())
        print(f"| {pair} | {runner.device} | {runner.batch_size} | " + " | ".join(f"{rates[p]:.1f}" for p in args.precisions)
              + " | " + " | ".join(f"{row['ratios'][p]:.3f}" for p in args.precisions[1:]) + " |", flush=True)
    return ok


def batch_table(args) -> bool:
    """The largest batch per pair and precision (batch_and_precision.py); True when each pair fits its default batch."""
    from batch_and_precision import largest_batch

    print("| pair | device | precision | largest batch | peak GiB |")
    print("|---|---|---|---|---|", flush=True)
    ok = True
    for pair in args.pairs:
        with open_runner(pair, args.device, args.set) as runner:
            for p in args.precisions:
                size, peak = largest_batch(runner, p, args.max_batch)
                ok = ok and size > 0
                capped = " (--max-batch)" if size == args.max_batch else ""
                peak_text = f"{peak:.2f}" if math.isfinite(peak) else "-"
                print(f"| {pair} | {runner.device} | {p} | {size}{capped} | {peak_text} |", flush=True)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="modality/objective pairs")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of (loop, minimal), order alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for both loops, e.g. train.keep_host_memory=false")
    parser.add_argument("--precisions", nargs="+", metavar="PRECISION",
                        help="instead of loop / minimal: the loop's samples/s in each train.precision "
                             "(e.g. fp32 bf16; the first is the reference)")
    parser.add_argument("--largest-batch", action="store_true",
                        help="instead: the largest batch one step fits in, per --precisions (default the config's)")
    parser.add_argument("--max-batch", type=int, default=65536, help="where --largest-batch stops growing")
    parser.add_argument("--online-eval", action="store_true",
                        help="instead: seconds per step with train.online_eval on against off, and one "
                             "online validation")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"{args.steps} steps per measurement, {args.repeats} rounds, overrides: {' '.join(args.set) or 'none'}\n")
    began = time.time()
    if args.largest_batch:
        args.precisions = args.precisions or ["auto"]
        ok = batch_table(args)
    elif args.online_eval:
        from online_eval_cost import online_table

        ok = online_table(args, open_runner)
    elif args.precisions:
        ok = precision_table(args)
    else:
        ok = overhead_table(args)
    print(f"\n{time.time() - began:.0f} s; load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
