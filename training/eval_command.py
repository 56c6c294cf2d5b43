"""``python run.py eval RUN_DIR``: evaluate a run's checkpoint again, with the same protocols.

Rebuilds the model from RUN_DIR/config.yaml, loads checkpoints/last.pt (the
whole model: encoders, objective heads, the text encoder's tokenizer), runs
``training.evaluate.evaluate_run`` on the trained model and its random-init
floor, rewrites ``metrics``, ``floor``, ``eval_split`` and ``eval_time_s`` in RUN_DIR/results.json
(training fields kept) and logs ``eval/*`` to the run's TensorBoard at the
checkpoint's step. Same config, same seed, same checkpoint: the same numbers
training wrote.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from errors import UserError


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py eval", description="Evaluate a run's checkpoint again with the same protocols; "
                                         "rewrites metrics and floor in RUN_DIR/results.json.",
        epilog="Overrides may change the protocol: eval.knn_k=10 eval.probe_epochs=100 eval.split=val; "
               "results.json then holds the numbers of the new protocol.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by run.py (config.yaml, checkpoints/last.pt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device (default: the run's)")
    parser.add_argument("overrides", nargs="*", metavar="eval.key=value", help="eval.* config overrides")
    return parser.parse_args(argv)


def load_run_config(run_dir: Path, overrides=()) -> dict:
    """The run's config (base schema <- RUN_DIR/config.yaml <- overrides), as ``--resume`` reads it.

    Raises:
        UserError: RUN_DIR is not a run directory, or an override is not an ``eval.*``/``device`` key.
    """
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "checkpoints" / "last.pt").is_file():
        raise UserError(f"'{run_dir}' is not a run directory (it needs config.yaml and checkpoints/last.pt, "
                        f"as run.py writes them under runs/<modality>-<objective>-<time>)")
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith(("eval.", "device")):
            raise UserError(f"override '{text}': run.py eval only takes eval.* and device overrides "
                            f"(the model is the checkpoint's)")
    saved = config_lib.load_yaml(run_dir / "config.yaml")
    if not isinstance(saved.get("objective"), dict) or "modality" not in saved:
        raise UserError(f"'{run_dir / 'config.yaml'}' is not a run config (no modality or objective)")
    cfg = config_lib.load_config(saved["modality"], saved["objective"]["name"])
    config_lib.apply(cfg, saved, f"'{run_dir / 'config.yaml'}'")
    config_lib.apply_overrides(cfg, overrides)
    return cfg


def evaluate_dir(run_dir: Path, overrides=()) -> dict:
    """Evaluate RUN_DIR's checkpoint; returns the updated results.json dict (also written)."""
    from torch.utils.tensorboard import SummaryWriter

    from training import checkpoint
    from training.build import build_datasets
    from training.evaluate import check_protocol, evaluate_run
    from training.experiment import build_model, initial_encoder, pick_device
    from training.host_memory import keep_freed_host_memory
    from training.precision import apply_speed_settings

    cfg = load_run_config(run_dir, overrides)
    check_protocol(cfg)
    keep_freed_host_memory(cfg["train"]["keep_host_memory"])
    device = pick_device(cfg["device"])
    datasets = build_datasets(cfg)
    model = build_model(cfg, datasets["train"]).to(device)
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError) as err:
        raise UserError(f"checkpoint '{run_dir / 'checkpoints' / 'last.pt'}' does not fit the model of its "
                        f"config.yaml ({str(err).splitlines()[0]})") from None
    apply_speed_settings(cfg, model, device)
    step = int(state["step"])
    writer = SummaryWriter(str(run_dir))
    try:
        evaluation = evaluate_run(cfg, model, initial_encoder(cfg, datasets["train"]).to(device), datasets,
                                  device, writer, step=step)
    finally:
        writer.close()

    path = run_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {
        "modality": cfg["modality"], "objective": cfg["objective"]["name"], "encoder": cfg["model"]["encoder"],
        "dataset": cfg["data"]["name"], "seed": cfg["seed"], "steps": step,
        "chance_acc": 1.0 / len(datasets["train"].classes)}
    results.update(evaluation)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"device={args.device!r}"] if args.device else [])
    run_dir = Path(args.run_dir)
    try:
        results = evaluate_dir(run_dir, overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m, f = results["metrics"], results["floor"]
    shown = ", ".join(f"{k} {m[k]:.3g} (floor {f[k]:.3g})" if k == "svm_c" else f"{k} {m[k]:.3f} (floor {f[k]:.3f})"
                      for k in m if m[k] is not None and f.get(k) is not None)
    print(f"{run_dir}: {shown}; evaluated in {results['eval_time_s']:.0f}s")
    return 0
