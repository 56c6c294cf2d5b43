"""``python run.py eval RUN_DIR``: evaluate a run's checkpoint again, with the same protocols.

Rebuilds the model from RUN_DIR/config.yaml, loads checkpoints/last.pt (the
whole model: encoders, objective heads, the text encoder's tokenizer), runs
``evaluation.protocols.evaluate_run`` on the trained model and its random-init
floor, rewrites ``metrics``, ``floor`` (every key, per-class and per-label metrics included),
``eval_split`` and ``eval_time_s`` in RUN_DIR/results.json (training fields kept; the data summary
and parameter counts refreshed), rewrites RUN_DIR/MODEL_CARD.md from it and logs
``eval/*`` to the run's TensorBoard at the checkpoint's step. Same config, same seed, same checkpoint: the same numbers
training wrote.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from torch.utils.tensorboard import SummaryWriter

from core.errors import UserError, report
from evaluation.model_card import write_model_card
from evaluation.protocols import check_protocol, evaluate_run
from training import checkpoint
from training.build import build_model_and_data, initial_encoder, pick_device
from training.data_summary import data_facts
from training.run_dir import CHECKPOINT, identity, load_trained_run_config, model_facts, read_results, write_results


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py eval", description="Evaluate a run's checkpoint again with the same protocols; "
                                         "rewrites metrics and floor in RUN_DIR/results.json.",
        epilog="Overrides may change the protocol: eval.knn_k=10 eval.probe_epochs=100 eval.split=val, or add "
               "fine-tuning and label fractions: eval.finetune=true 'eval.label_fractions=[0.01,0.1,1.0]'; "
               "results.json then holds the numbers of the new protocol.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by run.py (config.yaml, checkpoints/last.pt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sets device (default: the run's)")
    parser.add_argument("overrides", nargs="*", metavar="eval.key=value", help="eval.* config overrides")
    return parser.parse_args(argv)


def check_eval_overrides(overrides) -> None:
    """Raises UserError for an override that is not an ``eval.*`` or ``device`` key."""
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith(("eval.", "device")):
            raise UserError(f"override '{text}': run.py eval only takes eval.* and device overrides "
                            f"(the model is the checkpoint's)")


def evaluate_dir(run_dir: Path, overrides=()) -> dict:
    """Evaluate RUN_DIR's checkpoint; returns the updated results.json dict (also written, with
    MODEL_CARD.md).

    Raises:
        UserError: not a run directory, an override other than eval.*/device, a checkpoint that
            does not fit the model of the run's config, or what the protocols raise.
    """
    check_eval_overrides(overrides)
    cfg = load_trained_run_config(run_dir, overrides)
    check_protocol(cfg)
    device = pick_device(cfg["device"])
    datasets, model, _ = build_model_and_data(cfg, device)
    state = checkpoint.load(run_dir / CHECKPOINT)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError) as err:
        raise UserError(f"checkpoint '{run_dir / CHECKPOINT}' does not fit the model of its "
                        f"config.yaml ({str(err).splitlines()[0]})") from None
    step = int(state["step"])
    writer = SummaryWriter(str(run_dir))
    try:
        evaluation = evaluate_run(cfg, model, initial_encoder(cfg, datasets["train"]).to(device), datasets,
                                  device, writer, step=step)
    finally:
        writer.close()
    results = read_results(run_dir) or identity(cfg, datasets, step)
    results.update(data=data_facts(cfg, datasets), **model_facts(model), **evaluation)
    write_results(run_dir, results)
    write_model_card(run_dir, cfg, results)
    return results


def main(argv) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"device={args.device!r}"] if args.device else [])
    run_dir = Path(args.run_dir)
    try:
        results = evaluate_dir(run_dir, overrides)
    except UserError as err:
        return report(err)
    m, f = results["metrics"], results["floor"]
    shown = ", ".join(f"{k} {m[k]:.3g} (floor {f[k]:.3g})" if k == "svm_c" else f"{k} {m[k]:.3f} (floor {f[k]:.3f})"
                      for k in m if isinstance(m[k], (int, float)) and isinstance(f.get(k), (int, float)))
    print(f"{run_dir}: {shown}; evaluated in {results['eval_time_s']:.0f}s")
    return 0
