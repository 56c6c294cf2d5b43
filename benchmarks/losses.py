"""Speed and peak memory of the in-batch losses: reference, dense and tiled paths.

    python benchmarks/losses.py                       # full table, about 10 minutes on 2 cores
    python benchmarks/losses.py --sizes 256 8192 --threads 2

Implementations, forward + backward on random float32 inputs (D = 128):
- reference: the plain formulation, full N x N similarity, logits and masks:
  for SupCon the SupContrast authors' ``SupConLoss`` (labels, mask.repeat,
  scatter'd logits_mask, exp, log_prob; features normalized first,
  base_temperature = temperature); for CLIP open_clip's single-process
  ``ClipLoss`` (s A B^T and its transpose through cross-entropy).
- dense: ``supcon_loss`` / ``clip_loss`` with tiled=False.
- tiled: the same with tiled=True (objectives.tiled, O(N D) memory).
SupCon rows are B x 2 views with 100 classes; CLIP rows are N pairs.

Measurement: every cell runs in a fresh Python subprocess, so one
measurement's allocations cannot serve another's. In it: build the inputs,
run the loss once on 64 rows (loads kernels and libraries), read
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak resident set so far),
run forward + backward once, read it again: peak MB is the increase, i.e.
peak memory above the inputs. glibc serves large blocks with mmap and returns
them on free, so the resident peak follows the tensors' peak. Time is the
minimum over ``repeats`` forward + backward runs (first one included).
Cells whose estimated dense memory exceeds --max-gib are skipped and shown as
"skip". The machine's 2 cores are shared with other jobs: with 2 OpenMP
threads every parallel region waits for a descheduled thread, so timings are
noisy; --threads 1 (default) gives the steadier comparison. Ratios compare
cells of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bytes per N^2 element held at the peak (float32 matrices alive at once),
# measured at N = 8192 and rounded up; used only to skip cells that would not fit.
MATRICES_AT_PEAK = {("supcon", "reference"): 9, ("supcon", "dense"): 5,
                    ("clip", "reference"): 5, ("clip", "dense"): 5}


def supcon_reference(features, labels, temperature=0.1):
    """SupContrast's SupConLoss (Khosla et al. code), contrast_mode='all'."""
    import torch
    import torch.nn.functional as F

    features = F.normalize(features, dim=-1)
    batch_size, contrast_count = features.shape[:2]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_dot_contrast = torch.div(contrast_feature @ contrast_feature.T, temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(contrast_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1,
                                torch.arange(batch_size * contrast_count).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mask_pos_pairs = mask.sum(1)
    mask_pos_pairs = torch.where(mask_pos_pairs < 1e-6, 1, mask_pos_pairs)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask_pos_pairs
    return (-mean_log_prob_pos).view(contrast_count, batch_size).mean()


def clip_reference(a, b, logit_scale):
    """open_clip's ClipLoss on one process."""
    import torch
    import torch.nn.functional as F

    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.T
    target = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def child(spec: dict) -> dict:
    """One measurement, run inside a fresh subprocess."""
    import torch

    sys.path.insert(0, ROOT)
    from objectives import functional as L

    torch.set_num_threads(spec["threads"])
    loss, impl, n, dim = spec["loss"], spec["impl"], spec["n"], spec["dim"]

    def make(rows):
        torch.manual_seed(0)
        if loss == "supcon":
            return torch.randn(rows // 2, 2, dim, requires_grad=True), torch.randint(0, 100, (rows // 2,))
        return torch.randn(rows, dim, requires_grad=True), torch.randn(rows, dim, requires_grad=True)

    def run(x, y):
        if loss == "supcon":
            out = supcon_reference(x, y) if impl == "reference" else L.supcon_loss(x, y, tiled=impl == "tiled")
        else:
            out = clip_reference(x, y, 10.0) if impl == "reference" else L.clip_loss(x, y, 10.0, tiled=impl == "tiled")
        out.backward()
        return out.item()

    run(*make(64))
    x, y = make(n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, value = [], None
    for i in range(spec["repeats"]):
        x.grad = y.grad = None
        start = time.perf_counter()
        value = run(x, y)
        times.append(time.perf_counter() - start)
        if i == 0:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time_s": min(times), "peak_mb": (peak - base) / 1024, "value": value}


def measure(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return (f"{os.cpu_count()} cores, {model}, torch {torch.__version__}, "
            f"load average at start {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--losses", nargs="+", default=["supcon", "clip"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 1024, 4096, 8192, 16384, 65536])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-gib", type=float, default=8.0, help="skip cells estimated above this")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    print(f"# {machine()}; torch threads {args.threads}; D = {args.dim}; float32; forward + backward")
    header = ("loss", "rows", "ref s", "dense s", "tiled s", "ref MB", "dense MB", "tiled MB",
              "tiled/ref time", "tiled/ref mem")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    started = time.perf_counter()
    for loss in args.losses:
        for n in args.sizes:
            cells = {}
            for impl in ("reference", "dense", "tiled"):
                gib = MATRICES_AT_PEAK.get((loss, impl), 0) * 4 * n * n / 2 ** 30
                if gib > args.max_gib:
                    continue
                repeats = 3 if n <= 8192 else 1
                cells[impl] = measure(dict(loss=loss, impl=impl, n=n, dim=args.dim,
                                           threads=args.threads, repeats=repeats))
            get = lambda impl, key, fmt: fmt.format(cells[impl][key]) if impl in cells else "skip"  # noqa: E731
            ratio = lambda key: (f"{cells['tiled'][key] / cells['reference'][key]:.2f}"  # noqa: E731
                                 if "reference" in cells else "-")
            row = (loss, n, get("reference", "time_s", "{:.3f}"), get("dense", "time_s", "{:.3f}"),
                   get("tiled", "time_s", "{:.3f}"), get("reference", "peak_mb", "{:.0f}"),
                   get("dense", "peak_mb", "{:.0f}"), get("tiled", "peak_mb", "{:.0f}"),
                   ratio("time_s"), ratio("peak_mb"))
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
            values = [cell["value"] for cell in cells.values()]
            if max(values) - min(values) > 1e-4 * max(1.0, abs(values[0])):
                print(f"# WARNING: {loss} at {n} rows: implementations disagree: {values}")
    print(f"# total {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()[0]:.1f}; "
          f"'skip': estimated above {args.max_gib:g} GiB")


if __name__ == "__main__":
    main()
