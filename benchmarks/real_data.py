"""Every label-free objective, two supervised references and the classic baselines on the real dev sets.

    python benchmarks/real_data.py                                   # everything, into runs/real_data
    python benchmarks/real_data.py --sets gm_notes --objectives simclr ce --set train.steps=5 --out /tmp/rd
    python benchmarks/real_data.py --split val                       # report on the carved val split
    python benchmarks/real_data.py --jobs 1                          # one cell at a time, every core
    python benchmarks/real_data.py --sets ACSF1 --resample 3         # UCR/UEA resample 3 of train and test

Builds the dev sets first (benchmarks/dev_sets.py, cached). Then, per set, the baselines of
benchmarks/baselines.py (on the loader's own splits; cached in OUT/<set>-baselines-<split>-seed<S>[-resample<K>].json)
and one cell per objective: ``python run.py --modality M --objective O [--config
configs/experiments/dev_<set>.yaml] --data PATH --run-dir OUT/<set>-<O> seed=S [eval.split=val]
[data.<loader>.resample=K] [--set overrides]`` in a subprocess (output in the cell's log.txt), with the project's defaults.
A cell whose results.json exists is skipped; one with a
checkpoint and no results is resumed; a cell folder made by another command (its cell.json) stops
the script before anything runs. Objectives: simclr, moco, vicreg, cpc, ts2vec (label-free; ts2vec
not on the glyph set: images are not series), clap,
convirt, siglip (paired: audio and glyph sets only; the series loaders' captions name the class)
and supcon, ce (supervised references). Modalities: series sets -> sequence, gm_notes -> audio,
noto_glyphs -> medical (the medical manifest loader).

The baselines run first; then ``--jobs`` cells at a time (default 2), each subprocess with
``OMP_NUM_THREADS`` = cores // jobs: on small CPU models two one-thread runs side by side get
more done than one two-thread run. The cells of START_FIRST (the longest runs) start first, so
that no job is left alone with a long cell at the end. ``seconds`` is then a cell's wall time
while sharing the machine with the other job.

Writes OUT/table.md (also printed), OUT/results.csv and OUT/summary.txt (also printed: per set, whether the
best label-free objective reaches the classic baselines, benchmarks/verdict.py, and how many sets pass);
prints the total wall time.
Exit status 0 when every cell that applies finished, 1 when some failed, 2 for a stale cell folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import baselines  # noqa: E402
import dev_sets  # noqa: E402
import verdict  # noqa: E402

LABEL_FREE_BY_DEFAULT = ("simclr", "moco", "vicreg", "cpc", "ts2vec")  # of verdict.LABEL_FREE, the ones run without --objectives
PAIRED = verdict.PAIRED
SUPERVISED = ("supcon", "ce")
OBJECTIVES = LABEL_FREE_BY_DEFAULT + PAIRED + SUPERVISED
CHOICES = tuple(dict.fromkeys(OBJECTIVES + verdict.LABEL_FREE))  # the second wave's label-free ones on request
NOT_SERIES = "not applicable: ts2vec needs series (per-step outputs of a signal over time), glyphs are images"
SERIES_CAPTIONS = "not applicable: the series loader's captions read 'a series of class X' (the label)"
START_FIRST = ("ACSF1", "gm_notes")  # sets whose cells take longest (1460-step series; 44.1 kHz clips)
COLUMNS = ["set", "objective", "linear probe", "SVM", "kNN", "R@1 x->t / t->x", "floor", "chance", "baseline",
           "seconds"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=list(baselines.SETS), metavar="SET",
                        help=f"default {' '.join(baselines.DEFAULT_SETS)}; also "
                        f"{' '.join(s for s in baselines.SETS if s not in baselines.DEFAULT_SETS)}")
    parser.add_argument("--jobs", type=int, default=2,
                        help="cells run at a time, each with cores // jobs threads (default 2)")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=CHOICES, metavar="O",
                        help=f"default {' '.join(OBJECTIVES)}; also "
                        f"{' '.join(o for o in CHOICES if o not in OBJECTIVES)}")
    parser.add_argument("--out", type=Path, default=Path("runs/real_data"), help="default runs/real_data")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run and baseline (default 0)")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="split reported: val adds eval.split=val to every run (default test)")
    parser.add_argument("--resample", type=int, default=0, metavar="K",
                        help="series sets only: UCR/UEA resample K of train and test, for the runs and the "
                        "baselines (default 0: the published split; benchmarks/resamples.py loops over K)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config override passed to every run (repeatable), e.g. --set train.steps=5")
    parser.add_argument("--cache", type=Path, help="dev-set cache (default as benchmarks/dev_sets.py)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.sets = args.sets or list(baselines.DEFAULT_SETS)
    if args.resample < 0:
        parser.error("--resample must be 0 (the published split) or a resample number >= 1")
    not_series = [k for k in args.sets if k not in baselines.SERIES_SETS]
    if args.resample and not_series:
        parser.error(f"--resample redraws a series set's train and test files; {' '.join(not_series)} "
                     f"{'is' if len(not_series) == 1 else 'are'} not series: pick --sets among "
                     f"{' '.join(baselines.SERIES_SETS)}")
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def cell_command(args, set_key: str, objective: str, path: Path, run_dir: Path) -> list[str]:
    """The run.py argument list of one cell (a fresh run; resuming is decided when it runs)."""
    modality = baselines.SETS[set_key][0]
    experiment = ROOT / "configs" / "experiments" / f"dev_{set_key}.yaml"  # the set's experiment file, if any
    config = ["--config", str(experiment.relative_to(ROOT))] if experiment.is_file() else []
    extra = [f"seed={args.seed}"] + (["eval.split='val'"] if args.split == "val" else [])
    if args.resample:
        extra.append(f"data.{baselines.loader_name(modality, path)}.resample={args.resample}")
    extra += args.overrides
    return ["--modality", modality, "--objective", objective, *config, "--data", str(path), "--run-dir", str(run_dir),
            *extra]


def check_not_stale(run_dir: Path, command: list[str]) -> None:
    """Stop (exit 2) when ``run_dir`` was made by another command than ``command`` (its cell.json)."""
    saved = run_dir / "cell.json"
    if saved.is_file() and json.loads(saved.read_text())["command"] != command:
        print(f"error: '{run_dir}' was made with other settings ({saved}); use another --out or remove it",
              file=sys.stderr)
        sys.exit(2)


def failure(log: Path, returncode: int) -> str:
    """'failed: <the run's error: line, else its last line>' in one line."""
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()] if log.is_file() else []
    last = ([x for x in lines if x.startswith("error:")] or lines or ["no output"])[-1]
    return f"failed (exit {returncode}): {last[:200]}"


def run_cell(command: list[str], run_dir: Path, threads: int) -> dict:
    """Run (or resume, or skip) one cell with ``threads`` torch threads;
    {'results': dict or None, 'seconds', 'error', 'cached'}.

    ``seconds`` adds up the wall time of every session of the cell (kept in its cell.json).
    """
    results, info = run_dir / "results.json", run_dir / "cell.json"
    if results.is_file():
        seconds = json.loads(info.read_text()).get("wall_s", 0.0) if info.is_file() else 0.0
        return {"results": json.loads(results.read_text()), "seconds": seconds, "error": "", "cached": True}
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    argv = ["--resume", str(run_dir), *[a for a in command[command.index("--run-dir") + 2:]
                                         if not a.startswith("seed=")]] if resume else command
    full = [sys.executable, str(ROOT / "run.py"), *argv]
    earlier = json.loads(info.read_text()).get("wall_s", 0.0) if resume and info.is_file() else 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps({"command": command, "wall_s": earlier}))
    start = time.perf_counter()
    with open(run_dir / "log.txt", "a") as log:
        log.write(f"$ {shlex.join(full)}\n")
        log.flush()
        done = subprocess.run(full, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = earlier + time.perf_counter() - start
    info.write_text(json.dumps({"command": command, "wall_s": seconds, "returncode": done.returncode}))
    if done.returncode == 0 and results.is_file():
        return {"results": json.loads(results.read_text()), "seconds": seconds, "error": "", "cached": False}
    error = failure(run_dir / "log.txt", done.returncode) if done.returncode else \
        "stopped before train.steps (train.stop_after_steps): run again to resume it"
    return {"results": None, "seconds": seconds, "error": error, "cached": False}


def cached_baselines(args, set_key: str, path: Path) -> list[dict]:
    """The set's baselines, from OUT/<set>-baselines-<split>.json when an earlier call wrote it."""
    resample = f"-resample{args.resample}" if args.resample else ""
    file = args.out / f"{set_key}-baselines-{args.split}-seed{args.seed}{resample}.json"
    if file.is_file():
        return json.loads(file.read_text())
    found = baselines.run_baselines(baselines.SETS[set_key][0], path, args.split, args.seed, args.resample)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(found, indent=1))
    return found


def number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def cell_row(set_key: str, objective: str, cell: dict) -> dict:
    """One table row (strings) of a cell: its metrics, or its one-line reason in the linear-probe column."""
    row = dict.fromkeys(COLUMNS, "-") | {"set": set_key, "objective": objective}
    if cell.get("results") is None:
        row["linear probe"] = cell["error"]
    else:
        r = cell["results"]
        m, f = r.get("metrics", {}), r.get("floor", {})
        row |= {"linear probe": number(m.get("linear_probe_acc")), "SVM": number(m.get("svm_acc")),
                "kNN": number(m.get("knn_acc")), "floor": number(f.get("linear_probe_acc")),
                "chance": number(r.get("chance_acc"))}
        if "retrieval_r1_x2t" in m:
            row["R@1 x->t / t->x"] = f"{m['retrieval_r1_x2t']:.3f} / {m.get('retrieval_r1_t2x', float('nan')):.3f}"
    if "seconds" in cell:
        row["seconds"] = f"{cell['seconds']:.0f}" + (" (earlier call)" if cell.get("cached") else "")
    return row


def baseline_rows(set_key: str, found: list[dict]) -> list[dict]:
    return [dict.fromkeys(COLUMNS, "-") | {
        "set": set_key, "objective": "baseline",
        "baseline": f"{b['name']} {b['acc']:.3f}" if b["acc"] is not None else f"{b['name']} failed: {b['error']}",
        "seconds": f"{b['seconds']:.0f}"} for b in found]


def write_table(rows: list[dict], out: Path) -> str:
    """The markdown table of ``rows``, also written to OUT/table.md and (raw strings) OUT/results.csv."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return text


def run_cells(args, plan: list) -> dict:
    """{(set, objective): cell} of every cell of ``plan``, ``args.jobs`` at a time (START_FIRST first);
    prints a line as each one ends."""
    cells, todo = {}, []
    for k, o, command in plan:
        if o in PAIRED and baselines.SETS[k][0] == "sequence":
            cells[k, o] = {"error": SERIES_CAPTIONS}
        elif o == "ts2vec" and baselines.SETS[k][0] == "medical":
            cells[k, o] = {"error": NOT_SERIES}
        else:
            todo.append((k, o, command))
    todo.sort(key=lambda p: p[0] not in START_FIRST)  # stable: plan order within each group
    with ThreadPoolExecutor(args.jobs) as pool:
        running = {pool.submit(run_cell, command, args.out / f"{k}-{o}", args.threads): (k, o)
                   for k, o, command in todo}
        for done in as_completed(running):
            k, o = running[done]
            cell = cells[k, o] = done.result()
            row = cell_row(k, o, cell)
            print(f"{k} {o}: " + (f"linear probe {row['linear probe']} (floor {row['floor']}), seconds {row['seconds']}"
                                  if cell.get("results") else row["linear probe"]), flush=True)
    return cells


def summarize(args, cells: dict, found: dict) -> str:
    """One verdict line per set (benchmarks/verdict.py) and how many sets pass; also OUT/summary.txt."""
    lines, passed = [], 0
    for set_key in args.sets:
        runs = {o: cells[k, o].get("results") for k, o in cells if k == set_key}
        line, ok = verdict.set_verdict(set_key, baselines.SETS[set_key][0], runs, found[set_key])
        lines.append(line)
        passed += ok
    lines.append(f"sets passing: {passed} of {len(args.sets)}")
    text = "\n".join(lines) + "\n"
    (args.out / "summary.txt").write_text(text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    cache = (args.cache or dev_sets.default_cache()).expanduser().resolve()
    args.out = args.out.resolve()
    paths = {k: cache / baselines.SETS[k][1] / baselines.SETS[k][2] for k in args.sets}
    plan = [(k, o, cell_command(args, k, o, paths[k], args.out / f"{k}-{o}"))
            for k in args.sets for o in args.objectives]
    for k, o, command in plan:
        check_not_stale(args.out / f"{k}-{o}", command)
    built = dev_sets.build(sorted({baselines.SETS[k][1] for k in args.sets}), cache)
    print(f"dev sets ready in {time.perf_counter() - start:.0f} s "
          f"({', '.join(f'{n} {s:.0f} s' for n, s in built.items() if s) or 'all cached'})", flush=True)
    found = {}
    for set_key in args.sets:
        found[set_key] = cached_baselines(args, set_key, paths[set_key])
        for b in found[set_key]:
            print(f"{set_key} baseline {b['name']}: {number(b['acc'])} {b['error']} ({b['seconds']:.0f} s)", flush=True)
    print(f"cells: {args.jobs} at a time, {args.threads} thread(s) each", flush=True)
    cells = run_cells(args, plan)
    rows = []
    for set_key in args.sets:
        rows += [cell_row(k, o, cells[k, o]) for k, o, _ in plan if k == set_key]
        rows += baseline_rows(set_key, found[set_key])
    print("\n" + write_table(rows, args.out))
    print(summarize(args, cells, found))
    print(f"wrote {args.out / 'table.md'} and {args.out / 'results.csv'}; total wall time "
          f"{time.perf_counter() - start:.0f} s ({args.jobs} jobs x {args.threads} thread(s))")
    failed = [c for c in cells.values() if c.get("results") is None and c["error"] not in (SERIES_CAPTIONS, NOT_SERIES)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
