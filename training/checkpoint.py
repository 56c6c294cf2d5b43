"""Checkpoints: written atomically, read without executing code.

A checkpoint is a plain dict of tensors, numbers and strings:
``{"step", "model", "optimizer", "scheduler", "rng": {"torch", "cuda"}}``.
It is saved to a temporary file in the same folder and renamed over
``last.pt``, so a crash mid-write never leaves a half-written ``last.pt``.
Loading uses ``torch.load(..., weights_only=True)``: unpickling cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing or cannot be read."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, step: int, model, optimizer, scheduler) -> None:
    """Write the training state atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict:
    """Read a checkpoint safely (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing or is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: {err})".split("\n")[0]) from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this codebase")
    return state


def restore(state: dict, model, optimizer, scheduler) -> int:
    """Load ``state`` into the live objects; returns the step to continue from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])
