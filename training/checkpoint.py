"""Checkpoints: written atomically, kept one generation back, checked on reading, read without executing code.

A checkpoint is a plain dict of tensors, numbers and strings:
``{"step", "model", "optimizer", "scheduler", "rng": {"torch", "cuda"}, "counters"[, "online_probe"]
[, "weight_average"], "checksum"}`` (``counters``: the loop's running totals, e.g. ``nonfinite_steps``, so that
their TensorBoard curves go on from where they were; ``online_probe``: the online
classifier's weights and AdamW state, ``training/online_eval.py``, with ``train.online_eval``;
``weight_average``: the running average of the encoders, ``training/weight_average.py``, with
``train.average_weights``).
It is saved to a temporary file in the same folder (flushed and fsynced) and
renamed over ``last.pt``, so a crash or SIGKILL mid-write never leaves a
half-written ``last.pt``. Before the rename the old ``last.pt`` becomes
``previous.pt`` (a hard link, so ``last.pt`` exists at every instant).
``checksum`` is a CRC32 of every value, checked by ``load``: a damaged file
(truncated, or with flipped bytes inside tensor data, which ``torch.load``
alone does not notice) is an error naming the file and, when
``previous.pt`` is intact, the command that puts it back. Loading uses
``torch.load(..., weights_only=True)``: unpickling cannot run code.
With ``train.deterministic`` (one CPU thread, deterministic GPU kernels:
``training/precision.py``) a resumed run equals an uninterrupted one bit for bit;
without it, multi-threaded kernels may change the last bits from run to run.
"""
from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import torch

from core.errors import UserError
from core.notes import say_once


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


def checksum(value, crc: int = 0) -> int:
    """CRC32 over a nested state: tensor bytes, dtypes and shapes, keys, and the repr of other values."""
    if isinstance(value, dict):
        for key, item in value.items():
            crc = checksum(item, zlib.crc32(repr(key).encode(), crc))
        return crc
    if isinstance(value, (list, tuple)):
        for item in value:
            crc = checksum(item, crc)
        return crc
    if torch.is_tensor(value):
        flat = value.detach().cpu().contiguous().reshape(-1)
        crc = zlib.crc32(f"{flat.dtype}{tuple(value.shape)}".encode(), crc)
        return zlib.crc32(flat.view(torch.uint8).numpy().data, crc) if flat.numel() else crc
    return zlib.crc32(repr(value).encode(), crc)


def save(path: Path, step: int, model, optimizer, scheduler, counters: dict | None = None, online=None,
         average=None) -> None:
    """Write the training state (and ``counters``, a dict of ints, and the ``state_dict`` of ``online``,
    the online classifier, and of ``average``, the encoders' weight average, when there is one)
    atomically (temporary file, fsync, rename); the old ``path`` becomes ``previous.pt`` in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "counters": dict(counters or {})}
    if online is not None:
        state["online_probe"] = online.state_dict()
    if average is not None:
        state["weight_average"] = average.state_dict()
    state["checksum"] = checksum(state)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            keep = path.with_name(f".previous.pt.tmp-{os.getpid()}")
            keep.unlink(missing_ok=True)
            try:
                os.link(path, keep)
            except OSError:  # a file system without hard links
                shutil.copy2(path, keep)
            os.replace(keep, path.with_name("previous.pt"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises several types for a damaged file)
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: {err}".split("\n")[0]
                              + ")") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this codebase")
    if "checksum" in state and checksum({k: v for k, v in state.items() if k != "checksum"}) != state["checksum"]:
        raise CheckpointError(f"checkpoint '{path}' cannot be read (its checksum does not match: the file is damaged)")
    return state


def load(path: Path) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check its checksum.

    Raises:
        CheckpointError: the file is missing, damaged or not a checkpoint; when it is damaged
            and ``previous.pt`` beside it is intact, the message gives the command to use that one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        return _read(path)
    except CheckpointError as err:
        previous = path.with_name("previous.pt")
        if path.name == "previous.pt" or not previous.is_file():
            raise
        try:
            step = _read(previous)["step"]
        except CheckpointError:
            raise err from None
        raise CheckpointError(f"{err}; the previous checkpoint '{previous}' (step {step}) is intact: "
                              f"`cp {previous} {path}`, then resume again") from None


def restore(state: dict, model, optimizer, scheduler, online=None, average=None) -> int:
    """Load ``state`` into the live objects (and into ``online``, the online classifier, and ``average``,
    the encoders' weight average, when given); returns the step to continue from. A checkpoint without
    an online classifier (written with ``train.online_eval=false`` or before it existed) leaves
    ``online`` fresh, and one line says so.

    Raises:
        CheckpointError: ``average`` is given and the checkpoint holds none (written with
            ``train.average_weights=false``): the average of the steps before cannot be rebuilt.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if online is not None and "online_probe" in state and not online.load_state_dict(state["online_probe"]):
        say_once(f"online evaluation: the checkpoint of step {state['step']} holds an online classifier of "
                 f"unstandardized embeddings (an older run); a fresh one starts from that step")
    elif online is not None and "online_probe" not in state:
        say_once(f"online evaluation: the checkpoint of step {state['step']} holds no online classifier; "
                 f"it starts afresh from that step")
    if average is not None:
        if "weight_average" not in state:
            raise CheckpointError(f"the checkpoint of step {state['step']} holds no weight average (trained with "
                                  f"train.average_weights=false); resume it with train.average_weights=false")
        average.load_state_dict(state["weight_average"])
    set_rng_state(state["rng"])
    return int(state["step"])
