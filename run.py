"""Train a contrastive objective on a modality, log to TensorBoard, evaluate on held-out data.

    python run.py                                   # audio + CPC on the built-in data
    python run.py --modality audio --objective cpc train.steps=600 optim.lr=1e-3
    python run.py --list                            # objectives x modalities: what works
    python run.py --resume runs/audio-cpc-20261124-120000
    python run.py eval RUN_DIR                      # evaluate a finished run again (evaluation/command.py)
    python run.py embed RUN_DIR [--data PATH]       # embeddings as .npz (inference/embed_command.py)
    python run.py export RUN_DIR --out DIR          # safetensors + preprocess.json (inference/export_command.py)
    python run.py query RUN_DIR "a rising chirp"    # paired runs: the items nearest a sentence (inference/query_command.py)
    python run.py compare --modalities audio medical --objectives cpc supcon   (comparison/command.py)
    tensorboard --logdir runs

One run is ``experiment.run_experiment``; the layers below it are ``evaluation/``,
``comparison/``, ``inference/``, ``training/``, then ``objectives/`` and ``modalities/`` (README, Design).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import registry
from core.errors import UserError, report
from training.build import resolve_dataset
from training.compatibility import capability_matrix, check_pair

DEFAULT_MODALITY, DEFAULT_OBJECTIVE = "audio", "cpc"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__.split("\n")[0],
        epilog="Overrides are dotted config keys, values parsed as Python literals: "
               "train.steps=100 optim.lr=1e-3 data.num_workers=2. Layers merge in the order "
               "configs/base.yaml <- configs/modalities/<m>.yaml <- configs/objectives/<o>.yaml "
               "<- the modality file's with_objective.<o> <- --config FILE <- overrides. "
               "With --data, data.format=auto picks the modality's loader that recognizes the path.\n\n"
               "Subcommands: python run.py eval --help (evaluate a run again: evaluation/command.py), "
               "python run.py compare --help (a modality x objective grid: comparison/command.py), "
               "python run.py embed --help (a run's embeddings as .npz: inference/embed_command.py), "
               "python run.py export --help (a run's encoders as safetensors: inference/export_command.py), "
               "python run.py query --help (paired runs: the items nearest a sentence: inference/query_command.py). "
               "One run is experiment.py over training/, objectives/, modalities/ and core/ (README, Design).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", default=None, help=f"registered modality (default {DEFAULT_MODALITY})")
    parser.add_argument("--objective", default=None, help=f"registered objective (default {DEFAULT_OBJECTIVE})")
    parser.add_argument("--data", metavar="PATH", help="your data (sets data.path); default: built-in data")
    parser.add_argument("--config", metavar="FILE", help="experiment YAML merged after modality and objective files")
    parser.add_argument("--run-dir", metavar="DIR", help="run directory (default runs/<modality>-<objective>-<time>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device (default auto: cuda if any)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from checkpoints/last.pt "
                        "(its config.yaml, plus any overrides given here, e.g. train.steps=600)")
    parser.add_argument("--list", action="store_true", help="print which objective works on which modality (and what it needs) and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_intermixed_args(argv)  # overrides may come before and after options


def print_matrix(cells: dict) -> None:
    """One row per objective: what it needs, then per modality 'ok' or what that modality lacks."""
    modalities_ = sorted({m for m, _ in cells})
    objectives_ = sorted({o for _, o in cells})
    needs = {o: ", ".join(sorted(registry.get("objective", o).capabilities)) for o in objectives_}
    rows = [["objective", "needs", *modalities_]]
    rows += [[o, needs[o], *("ok" if not cells[m, o] else "lacks " + "+".join(cells[m, o]) for m in modalities_)]
             for o in objectives_]
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    for row in rows:
        print("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print()
    for capability in registry.CAPABILITIES:
        print(f"{capability}: {registry.MEANING[capability]}")


def make_config(args) -> tuple[dict, Path, bool]:
    """The validated config, the run directory and whether to resume."""
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data!r}")
    if args.device:
        overrides.append(f"device={args.device!r}")
    if args.resume:
        run_dir = Path(args.resume)
        return config_lib.load_run_config(run_dir / "config.yaml", overrides), run_dir, True
    modality = registry.check_modality(args.modality or DEFAULT_MODALITY)
    objective = registry.get("objective", args.objective or DEFAULT_OBJECTIVE).name
    cfg = config_lib.load_config(modality, objective, args.config, overrides)
    cfg["data"]["name"] = resolve_dataset(cfg)
    run_dir = Path(args.run_dir or f"runs/{modality}-{objective}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, run_dir, False


SUBCOMMANDS = {"eval": "evaluation.command", "compare": "comparison.command", "embed": "inference.embed_command",
               "export": "inference.export_command", "query": "inference.query_command"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:  # each subcommand module has main(argv) -> exit code
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = parse_args(argv)
    started = False
    try:
        if args.list:
            print_matrix(capability_matrix())
            return 0
        cfg, run_dir, resume = make_config(args)
        check_pair(cfg)
        from experiment import run_experiment  # heavy imports only once the input is known good

        started = True
        results = run_experiment(cfg, run_dir, resume)
    except UserError as err:
        return report(err, every_rank=started)
    if results is None:  # a torchrun rank other than 0: rank 0 reports
        from training.distributed import exit_other_rank

        exit_other_rank()
    if "stopped_at_step" in results:
        print(f"{run_dir}: stopped at step {results['stopped_at_step']}/{results['steps']} "
              f"(train.stop_after_steps); continue with: python run.py --resume {run_dir}")
        return 0
    m, f = results["metrics"], results["floor"]
    if "linear_probe_acc" in m:
        headline = (f"linear probe {m['linear_probe_acc']:.3f} (random-init floor {f['linear_probe_acc']:.3f}, "
                    f"chance {results['chance_acc']:.3f})")
    else:  # multi-label data
        headline = (f"linear probe macro AUROC {m.get('linear_probe_macro_auroc', float('nan')):.3f} (random-init "
                    f"floor {f.get('linear_probe_macro_auroc', float('nan')):.3f}, chance 0.5)")
    print(f"{run_dir}: {headline} after {results['steps']} steps in {results['wall_time_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
