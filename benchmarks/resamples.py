"""The series dev sets over UCR/UEA resamples: how much of a set's verdict is its one published split.

    python benchmarks/resamples.py --sets PickupGestureWiimoteZ --objectives ts2vec --resamples 10
    python benchmarks/resamples.py --sets ItalyPowerDemand --resamples 3 --set train.steps=5 --out /tmp/rs

Runs benchmarks/real_data.py once per resample K = 1..N (``--resample K``: train and test files
pooled and redrawn with each class's train count kept, ``data.<loader>.resample``; into
OUT/resample-K, reused and resumed as that script's folders are). Then, per set, one row per
resample (each objective's better of probe and SVM, each baseline, the verdict of
benchmarks/verdict.py) and a row of means over the resamples with the verdict on those means:
per objective the mean probe and mean SVM (over the resamples whose cell finished, counted when
some did not), per baseline its mean, the figures the UCR/UEA
literature reports for a method (Bagnall et al. 2017). Resample 0, the published split, is
real_data.py's own run and not repeated here. Writes OUT/resamples.md (also printed).
Exit status: real_data.py's worst (1 when a cell failed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import baselines  # noqa: E402
import real_data  # noqa: E402
import verdict  # noqa: E402

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", required=True, choices=baselines.SERIES_SETS, metavar="SET",
                        help=f"series sets: {' '.join(baselines.SERIES_SETS)}")
    parser.add_argument("--objectives", nargs="+", default=list(real_data.LABEL_FREE_BY_DEFAULT),
                        choices=verdict.LABEL_FREE, metavar="O",
                        help=f"label-free objectives (default {' '.join(real_data.LABEL_FREE_BY_DEFAULT)})")
    parser.add_argument("--resamples", type=int, default=10, help="resamples 1..N (default 10)")
    parser.add_argument("--out", type=Path, default=Path("runs/resamples"), help="default runs/resamples")
    parser.add_argument("--jobs", type=int, default=2, help="cells at a time (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run and baseline (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config override passed to every run (repeatable)")
    parser.add_argument("--cache", type=Path, help="dev-set cache (default as benchmarks/dev_sets.py)")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    return args


def real_data_argv(args, k: int) -> list[str]:
    argv = ["--sets", *args.sets, "--objectives", *args.objectives, "--resample", str(k),
            "--out", str(args.out / f"resample-{k}"), "--jobs", str(args.jobs), "--seed", str(args.seed)]
    argv += [a for o in args.overrides for a in ("--set", o)]
    return argv + (["--cache", str(args.cache)] if args.cache else [])


def collect(args, set_key: str, k: int) -> tuple[dict, list[dict]]:
    """({objective: results.json dict or None}, baselines) of resample ``k`` of ``set_key``."""
    out = args.out / f"resample-{k}"
    runs = {}
    for o in args.objectives:
        file = out / f"{set_key}-{o}" / "results.json"
        runs[o] = json.loads(file.read_text()) if file.is_file() else None
    found = json.loads((out / f"{set_key}-baselines-test-seed{args.seed}-resample{k}.json").read_text())
    return runs, found


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def set_table(args, set_key: str) -> str:
    """The markdown rows of one set: a row per resample, the row of means and the verdict on the means."""
    per_k = {k: collect(args, set_key, k) for k in range(1, args.resamples + 1)}
    names = [b["name"] for b in next(iter(per_k.values()))[1]]
    head = ["set", "resample", *args.objectives, *names, "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k, (runs, found) in per_k.items():
        scores = [real_data.number(verdict.score(runs[o])) if runs[o] else "failed" for o in args.objectives]
        accs = [real_data.number(verdict.baseline_acc(found, n)) for n in names]
        ok = verdict.set_verdict(set_key, "sequence", runs, found)[1]
        lines.append(f"| {set_key} | {k} | " + " | ".join(scores + accs) + f" | {'PASS' if ok else 'FAIL'} |")
    means = {o: {"metrics": {key: mean([r[o]["metrics"].get(key) if r[o] else None for r, _ in per_k.values()])
                             for key in ("linear_probe_acc", "svm_acc")}} for o in args.objectives}
    means = {o: r for o, r in means.items() if r["metrics"]["linear_probe_acc"] is not None}
    mean_found = [{"name": n, "acc": mean([verdict.baseline_acc(f, n) for _, f in per_k.values()])} for n in names]
    line, ok = verdict.set_verdict(f"{set_key}, mean of {args.resamples} resamples", "sequence", means, mean_found)
    finished = {o: sum(r[o] is not None for r, _ in per_k.values()) for o in args.objectives}
    cells = [f"{means[o]['metrics']['linear_probe_acc']:.3f} / {means[o]['metrics']['svm_acc'] or 0:.3f}"
             + (f" ({finished[o]} of {args.resamples} finished)" if finished[o] < args.resamples else "")
             if o in means else "-" for o in args.objectives]
    lines.append(f"| {set_key} | mean (probe / SVM) | " + " | ".join(
        cells + [real_data.number(b["acc"]) for b in mean_found]) + f" | {'PASS' if ok else 'FAIL'} |")
    passes = sum(verdict.set_verdict(set_key, "sequence", *per_k[k])[1] for k in per_k)
    return "\n".join(lines) + f"\n\n{line}\nresamples passing: {passes} of {args.resamples}\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    status = 0
    for k in range(1, args.resamples + 1):
        print(f"== resample {k} of {args.resamples}", flush=True)
        status = max(status, real_data.main(real_data_argv(args, k)))
    text = "\n".join(set_table(args, s) for s in args.sets)
    (args.out / "resamples.md").write_text(text)
    print("\n" + text + f"\nwrote {args.out / 'resamples.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
