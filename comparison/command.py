"""``python run.py compare``: every compatible modality x objective pair, over seeds, in one folder.

    python run.py compare --modalities audio medical sequence --objectives cpc supcon clap --seeds 0 1 2

Each (modality, objective, seed) cell is one ordinary run, ``python run.py --modality M
--objective O --run-dir OUT/M-O-seedS ...``, started as a subprocess so that a crash in one
cell cannot stop the others; its output goes to ``OUT/M-O-seedS/log.txt``. A cell whose
``results.json`` exists is skipped, a cell with a checkpoint but no results is resumed,
any other cell is (re)started. Pairs the registry rules out are listed with the missing
capability. The report (``comparison/report.py``) is written at the end:
``comparison.md``, ``comparison.csv``, ``comparison.png`` and, with label fractions,
``comparison_fractions.png``. ``tensorboard --logdir OUT`` shows every cell as a run.

Settings of a cell, later wins: the modality's and objective's config files; the budgets file
(``configs/compare.yaml``: overrides per modality, per objective and per modality/objective);
the command line's ``key=value`` overrides; its ``SCOPE:key=value`` overrides, where SCOPE is a
modality, an objective or modality/objective; ``--device``; ``--budget`` (``comparison/budget.py``:
``train.steps`` of every cell worked out from equal steps, epochs or samples seen); the cell's seed.
"""
from __future__ import annotations

import argparse
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import registry
from comparison.budget import check_budget_overrides, parse_budget, with_budget
from core.errors import UserError, report
from training.build import resolve_dataset
from training.compatibility import missing_capabilities
from training.run_dir import read_results

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = config_lib.CONFIG_DIR / "compare.yaml"
DEFAULT_OUT = "runs/compare"


@dataclass
class Cell:
    """One run of the comparison: a (modality, objective, seed) and where it lives."""

    modality: str
    objective: str
    seed: int
    run_dir: Path
    overrides: list[str]
    results: dict | None = None   # results.json once finished
    failure: str = ""             # why it did not finish, for the report
    wall_s: float = 0.0           # seconds this invocation spent on it (0 when skipped)
    cpu_s: float = 0.0            # CPU seconds (user + system) of its subprocess


@dataclass
class Pair:
    """A (modality, objective) of the grid: its cells, or why it cannot run."""

    modality: str
    objective: str
    impossible: str = ""          # e.g. "needs label"; empty when the pair can train
    cells: list[Cell] = field(default_factory=list)
    budget_note: str = ""         # with --budget: the steps it gave, e.g. "160 steps of 32 (1024 train items)"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py compare",
        description="Train and evaluate every compatible modality x objective pair over seeds, one run folder "
                    "per cell under --out,\nthen write comparison.md, comparison.csv and comparison.png there (and\n"
                    "comparison_fractions.png when the cells set eval.label_fractions). With 2+ seeds each mean has its\n"
                    "95% t interval over seeds, and a best objective whose interval overlaps the runner-up's is marked\n"
                    "within noise.",
        epilog="Overrides apply to every cell (train.steps=100) or to a scope: a modality, an objective or\n"
               "modality/objective (audio:train.steps=100, supcon:train.batch_size=64,\n"
               "medical/cpc:objective.prediction_steps=2). Re-running the same command skips finished cells and\n"
               "resumes interrupted ones; a cell folder made with other settings is an error (pick another --out).\n"
               "--budget epochs=5 (or samples=9600, steps=300) gives every cell the train.steps of that many passes\n"
               "over its modality's train split (samples seen, steps) at its own batch size, replacing the budgets\n"
               "file's train.steps; it cannot be combined with train.steps or train.epochs overrides.\n"
               "Exit status: 0 when every cell finished, 1 when some failed, 2 on bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modalities", nargs="+", required=True, metavar="M", help="registered modalities (rows)")
    parser.add_argument("--objectives", nargs="+", required=True, metavar="O", help="registered objectives (columns)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds per pair (default 0)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"comparison folder, one run folder per cell (default {DEFAULT_OUT})")
    parser.add_argument("--budgets", default=str(BUDGETS), metavar="FILE",
                        help="YAML of overrides per scope (default configs/compare.yaml: the default budgets)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device in every cell")
    parser.add_argument("--budget", metavar="KIND=VALUE",
                        help="equal training for every cell: steps=N, epochs=E (passes over the train split) or "
                             "samples=S (items seen); sets each cell's train.steps (default: the cells' own "
                             "train.steps, from the budgets file and overrides)")
    parser.add_argument("overrides", nargs="*", metavar="[SCOPE:]key=value", help="config overrides")
    # Overrides may follow a list option (--seeds 0 1 train.steps=5), which would swallow them.
    options, overrides, takes_value = [], [], False
    for arg in argv:
        (overrides if not takes_value and "=" in arg and not arg.startswith("-") else options).append(arg)
        takes_value = arg in ("--out", "--budgets", "--device", "--budget")
    args = parser.parse_args(options)
    args.overrides += overrides
    return args


def split_scope(text: str, scopes: set[str]) -> tuple[str, str]:
    """'audio:train.steps=5' -> ('audio', 'train.steps=5'); 'train.steps=5' -> ('', 'train.steps=5').

    Raises:
        UserError: the scope is not a modality, an objective or modality/objective.
    """
    colon, equals = text.find(":"), text.find("=")
    if colon < 0 or (0 <= equals < colon):  # a ':' inside the value (a path) is not a scope
        return "", text
    scope, override = text[:colon], text[colon + 1:]
    if scope not in scopes:
        raise UserError(f"override '{text}': scope '{scope}' is not a modality, objective or modality/objective "
                        f"of this comparison{registry.closest(scope, scopes)}")
    return scope, override


def load_budgets(path: Path, scopes: set[str]) -> dict[str, list[str]]:
    """{scope: ['key=value', ...]} from the budgets file; scopes of other grids are ignored.

    Raises:
        UserError: unreadable file, or a scope whose value is not a mapping of config keys.
    """
    budgets = {}
    for scope, keys in config_lib.load_yaml(Path(path)).items():
        if not isinstance(keys, dict):
            raise UserError(f"budgets file '{path}': '{scope}' must map config keys to values, e.g. train.steps: 100")
        if scope in scopes:
            budgets[scope] = [f"{key}={value!r}" for key, value in config_lib.flatten(keys).items()]
    return budgets


def cell_config(modality: str, objective: str, overrides: list[str]) -> dict:
    """The validated config a cell will run with (what its config.yaml will hold).

    Raises:
        UserError: an override that does not fit this pair's config, naming the pair.
    """
    try:
        cfg = config_lib.load_config(modality, objective, None, overrides)
        cfg["data"]["name"] = resolve_dataset(cfg)
    except UserError as err:
        raise UserError(f"{modality}/{objective}: {err}") from None
    return cfg


def fitted_to_data(key: str, saved: dict, wanted: dict) -> bool:
    """Whether ``key`` differs only because the run fitted its budget to the data (training/budget.py):
    steps worked out from the other budget keys, or a batch cut to a train split smaller than one batch."""
    if key == "train.steps":
        return any(wanted.get(r) is not None and saved.get(r) == wanted[r] for r in config_lib.BUDGET_KEYS if r != key)
    return key == "train.batch_size" and saved[key] < wanted[key]


def check_not_stale(cell: Cell, cfg: dict) -> None:
    """A cell folder from an earlier call must have been made with the same settings.

    Raises:
        UserError: its config.yaml gives a key another value than this call would (device aside).
    """
    saved_path = cell.run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved, wanted = config_lib.flatten(config_lib.load_yaml(saved_path)), config_lib.flatten(cfg)
    # Keys only one side has come from a config schema that changed in between: not a difference.
    differ = sorted(k for k in saved.keys() & wanted.keys() if k != "device" and saved[k] != wanted[k]
                    and not fitted_to_data(k, saved, wanted))
    if differ:
        shown = ", ".join(f"{k}: {saved[k]!r} there, {wanted[k]!r} now" for k in differ[:3])
        raise UserError(f"'{cell.run_dir}' was made with other settings ({shown}); pass another --out "
                        f"or remove that folder")


def plan(args) -> list[Pair]:
    """The grid: each pair's cells with their overrides, or the reason it is impossible.

    Raises:
        UserError: an unknown name, scope or key, a bad ``--budget`` or one combined with a
            train.steps/train.epochs override, or a stale cell folder.
    """
    budget = parse_budget(args.budget) if args.budget else None
    check_budget_overrides(budget, args.overrides)
    sizes: dict = {}
    for modality in args.modalities:
        registry.check_modality(modality)
    for objective in args.objectives:
        registry.get("objective", objective)
    scopes = {*args.modalities, *args.objectives, *(f"{m}/{o}" for m in args.modalities for o in args.objectives)}
    budgets = load_budgets(args.budgets, scopes)
    scoped: dict[str, list[str]] = {}
    for text in args.overrides:
        scope, override = split_scope(text, scopes)
        scoped.setdefault(scope, []).append(override)
    device = [f"device={args.device!r}"] if args.device else []

    pairs = []
    for m in dict.fromkeys(args.modalities):
        for o in dict.fromkeys(args.objectives):
            order = (m, o, f"{m}/{o}")
            overrides = [*(x for s in order for x in budgets.get(s, [])), *scoped.get("", []),
                         *(x for s in order for x in scoped.get(s, [])), *device]
            cfg = cell_config(m, o, overrides)
            lacking = missing_capabilities(cfg)
            pair = Pair(m, o, impossible=f"needs {', '.join(lacking)}" if lacking else "")
            pairs.append(pair)
            if lacking:
                continue
            for seed in dict.fromkeys(args.seeds):
                seeded, extra = {**cfg, "seed": seed}, []
                if budget is not None:
                    seeded, pair.budget_note = with_budget(seeded, budget, sizes)
                    extra = [f"train.steps={seeded['train']['steps']}"]
                cell = Cell(m, o, seed, Path(args.out) / f"{m}-{o}-seed{seed}", [*overrides, *extra, f"seed={seed}"])
                check_not_stale(cell, seeded)
                pair.cells.append(cell)
    return pairs


def failure_reason(log: Path, returncode: int) -> str:
    """The run's 'error: ...' line, else its last line, with the exit status."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = (errors or lines or ["no output"])[-1]
    return f"exit status {returncode}: {last[:300]}"


def run_cell(cell: Cell) -> None:
    """Run (or resume) one cell in a subprocess; fills ``cell.results`` or ``cell.failure``."""
    resume = (cell.run_dir / "checkpoints" / "last.pt").is_file()
    device = [o for o in cell.overrides if o.startswith("device=")]
    args = ["--resume", str(cell.run_dir), *device] if resume else [
        "--modality", cell.modality, "--objective", cell.objective, "--run-dir", str(cell.run_dir), *cell.overrides]
    command = [sys.executable, str(ROOT / "run.py"), *args]
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    log = cell.run_dir / "log.txt"
    began, used = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        done = subprocess.run(command, check=False, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    cell.wall_s, now = time.time() - began, resource.getrusage(resource.RUSAGE_CHILDREN)
    cell.cpu_s = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    cell.results = read_results(cell.run_dir) if done.returncode == 0 else None
    if cell.results is None:
        cell.failure = failure_reason(log, done.returncode) if done.returncode else \
            "stopped before train.steps (train.stop_after_steps); run the command again to continue"


def describe(cell: Cell) -> str:
    if cell.results is None:
        return f"failed ({cell.failure}); log: {cell.run_dir / 'log.txt'}"
    m, f = cell.results["metrics"], cell.results["floor"]
    shown = [f"{label} {m[key]:.3f} (floor {f[key]:.3f})" for key, label in (("linear_probe_acc", "linear probe"),
                                                                           ("svm_acc", "SVM")) if key in m and key in f]
    return ", ".join(shown)


def main(argv) -> int:
    args = parse_args(argv)
    try:
        pairs = plan(args)
    except UserError as err:
        return report(err)
    from comparison.report import write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "run.py", "compare", *argv])
    (out / "command.txt").write_text(command + "\n")
    for pair in pairs:
        if pair.impossible:
            print(f"{pair.modality}/{pair.objective}: impossible, {pair.impossible}", flush=True)
        elif pair.budget_note:
            print(f"{pair.modality}/{pair.objective}: --budget {args.budget}: {pair.budget_note}", flush=True)
    cells = [cell for pair in pairs for cell in pair.cells]
    for i, cell in enumerate(cells, 1):
        name = f"[{i}/{len(cells)}] {cell.modality}/{cell.objective} seed {cell.seed}"
        cell.results = read_results(cell.run_dir)
        if cell.results is not None:
            print(f"{name}: finished before, skipped: {describe(cell)}", flush=True)
            continue
        print(f"{name}: running in {cell.run_dir}", flush=True)
        run_cell(cell)
        print(f"{name}: {describe(cell)} in {cell.wall_s:.0f}s ({cell.cpu_s:.0f}s CPU)", flush=True)
    paths = write_report(out, pairs, command)
    failed = [cell for cell in cells if cell.results is None]
    print(f"{len(cells) - len(failed)} of {len(cells)} cells finished, {len(failed)} failed, "
          f"{sum(bool(p.impossible) for p in pairs)} pairs impossible; wrote {', '.join(map(str, paths))}; "
          f"tensorboard --logdir {out}")
    return 1 if failed else 0
