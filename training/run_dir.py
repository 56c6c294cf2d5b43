"""What a run directory holds, written and read in one place.

Layout::

    config.yaml            the merged config (what --resume and run.py eval read back)
    tokenizer.json         the word tokenizer of a paired objective's text encoder
    events.out.tfevents.*  TensorBoard scalars and the config text
    checkpoints/last.pt    model, optimizer, scheduler, step, RNG state (training/checkpoint.py)
    results.json           the run's identity, training figures and held-out evaluation
                           (see "results.json" in the README)
    MODEL_CARD.md          written from config.yaml and results.json (evaluation/model_card.py)
"""
from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from core import config as config_lib
from core.errors import UserError
from objectives.labels import label_mode
from training.budget import epochs_done
from training.data_summary import data_facts

CONFIG, RESULTS, CHECKPOINT = "config.yaml", "results.json", Path("checkpoints") / "last.pt"


def open_run_dir(cfg: dict, model, run_dir: Path, start_step: int) -> SummaryWriter:
    """Write config.yaml (and tokenizer.json) into ``run_dir``; the TensorBoard writer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(config_lib.dump(cfg))
    if "text" in model["encoders"] and hasattr(model["encoders"]["text"], "tokenizer"):
        model["encoders"]["text"].tokenizer.save(run_dir / "tokenizer.json")
    # purge_step hides events a crashed session logged after its last checkpoint.
    writer = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
    if not start_step:
        writer.add_text("config", "    " + config_lib.dump(cfg).replace("\n", "\n    "), 0)
    return writer


def load_trained_run_config(run_dir: Path, overrides=()) -> dict:
    """The config of a run that has a checkpoint (``config.load_run_config`` of its config.yaml).

    Raises:
        UserError: RUN_DIR has no config.yaml or no checkpoint; what ``load_run_config`` raises.
    """
    if not (run_dir / CONFIG).is_file() or not (run_dir / CHECKPOINT).is_file():
        raise UserError(f"'{run_dir}' is not a run directory (it needs {CONFIG} and {CHECKPOINT}, "
                        f"as run.py writes them under runs/<modality>-<objective>-<time>)")
    return config_lib.load_run_config(run_dir / CONFIG, overrides)


def identity(cfg: dict, datasets: dict, steps: int, world: int = 1) -> dict:
    """The fields of results.json that say which run this is and what it trained on; ``chance_acc``
    (1 / classes) is None for multi-label data, whose probe reports AUROC (chance 0.5); ``data``
    is ``training.data_summary.data_facts``."""
    train = datasets["train"]
    return {"modality": cfg["modality"], "objective": cfg["objective"]["name"], "encoder": cfg["model"]["encoder"],
            "dataset": cfg["data"]["name"], "seed": cfg["seed"], "steps": steps,
            "epochs": round(epochs_done(cfg["train"], steps, len(train), world), 3),
            "batch_size": cfg["train"]["batch_size"], "world_size": world, "train_items": len(train),
            "eval_items": len(datasets[cfg["eval"]["split"]]),
            "chance_acc": None if getattr(train, "multi_label", False) else 1.0 / len(train.classes),
            "data": data_facts(cfg, datasets)}


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_facts(model) -> dict:
    """results.json's facts about the model: ``encoder_params`` (the x encoder's parameters),
    ``text_encoder_params`` (paired objectives) and ``labels_in_pretraining`` (whether the
    objective read ``batch["label"]``: ``objectives.labels.label_mode``)."""
    encoders = model["encoders"]
    facts = {"encoder_params": parameter_count(encoders["x"])}
    if "text" in encoders:
        facts["text_encoder_params"] = parameter_count(encoders["text"])
    facts["labels_in_pretraining"] = label_mode(model["objective"]) is not None
    return facts


def read_results(run_dir: Path) -> dict | None:
    """RUN_DIR/results.json, or None when the run has not written it."""
    path = run_dir / RESULTS
    return json.loads(path.read_text()) if path.is_file() else None


def write_results(run_dir: Path, results: dict) -> None:
    (run_dir / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
