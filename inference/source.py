"""Reading what ``load_run`` builds from: a run folder or an export folder.

A run folder (``training/run_dir.py``): config.yaml and checkpoints/last.pt. The input shape and
the preprocessing are read off the run's train split, rebuilt from its config (as ``run.py eval``
does: user data must still be where the run read it); the tokenizer comes from the checkpoint.

An export folder (``run.py export``) needs nothing else::

    weights.safetensors   the encoders' tensors (and, for paired objectives, the joint-space heads)
    config.yaml           the run's merged config
    preprocess.json       what the loader did (``inference/spec.py``)
    model.json            step, classes, embedding sizes, and whether x_encoder.pt2 was written
    tokenizer.json        the text encoder's word tokenizer, when it has one
    x_encoder.pt2         torch.export program: x (B, *input_shape) -> embedding (B, D), when it exports
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from core import config as config_lib
from core.errors import UserError
from inference.model import is_paired, select
from inference.spec import preprocess_spec, read_spec
from modalities.text.tokenizer import Tokenizer
from training import checkpoint
from training.build import build_datasets
from training.run_dir import CHECKPOINT, CONFIG, load_trained_run_config

WEIGHTS, SPEC, MODEL, TOKENIZER, PROGRAM = ("weights.safetensors", "preprocess.json", "model.json", "tokenizer.json",
                                            "x_encoder.pt2")


class Source(NamedTuple):
    """What a folder says about a trained model."""

    path: Path
    kind: str                     # "run" or "export"
    cfg: dict                     # the merged config
    spec: dict                    # the preprocessing (inference/spec.py)
    classes: list                 # class names of the train split, by label index
    tensors: dict                 # {name: tensor} for ``inference.model.load_weights``
    tokenizer: Tokenizer | None   # the text encoder's, when it has one
    step: int                     # the training step of the weights
    weights_file: Path            # where the tensors came from (named in errors)


def read_source(path) -> Source:
    """The run or export folder at ``path``.

    Raises:
        UserError: ``path`` is neither, or one of its files is damaged or does not fit.
    """
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return read_export(path)
    if (path / CONFIG).is_file() and (path / CHECKPOINT).is_file():
        return read_run(path)
    raise UserError(f"'{path}' is neither a run folder ({CONFIG} and {CHECKPOINT}, as run.py writes it) nor an "
                    f"export folder ({WEIGHTS}, {CONFIG}, {SPEC}, {MODEL}, as run.py export writes it)")


def read_run(path: Path) -> Source:
    cfg = load_trained_run_config(path)
    state = checkpoint.load(path / CHECKPOINT)
    train = build_datasets(cfg, ("train",))["train"]
    extra = state["model"].get("encoders.text._extra_state")
    tokenizer = Tokenizer.from_state(extra["tokenizer"]) if isinstance(extra, dict) and "tokenizer" in extra else None
    return Source(path, "run", cfg, preprocess_spec(cfg, train), list(train.classes),
                  select(state["model"], is_paired(cfg)), tokenizer, int(state["step"]), path / CHECKPOINT)


def read_export(path: Path) -> Source:
    for name in (CONFIG, SPEC, MODEL):
        if not (path / name).is_file():
            raise UserError(f"export folder '{path}' has no {name} (run.py export writes it beside {WEIGHTS})")
    cfg = config_lib.load_run_config(path / CONFIG)
    try:
        model = json.loads((path / MODEL).read_text(encoding="utf-8"))
        step, classes = int(model["step"]), list(model["classes"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"'{path / MODEL}' is not an export's model.json ({type(err).__name__}: {err})") from None
    tokenizer = Tokenizer.load(path / TOKENIZER) if (path / TOKENIZER).is_file() else None
    return Source(path, "export", cfg, read_spec(path / SPEC), classes, read_tensors(path / WEIGHTS), tokenizer,
                  step, path / WEIGHTS)


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (no code runs when it is read).

    Raises:
        UserError: the file is damaged or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"'{file}' cannot be read as safetensors ({type(err).__name__}: {err})") from None
