"""Mixed precision and the speed switches of ``train.*``.

- ``train.precision``: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32``, ``bf16``
  (autocast to bfloat16; no scaler needed: bf16 has fp32's exponent range) or
  ``fp16`` (autocast to float16 with a ``torch.amp.GradScaler``, CUDA only).
  Parameters and optimizer state stay float32; the contrastive losses compute
  their logits in float32 under autocast (objectives/functional/).
- ``train.tf32``: TF32 tensor cores for float32 matmuls and convolutions on CUDA.
- ``train.compile``: ``torch.compile`` of the encoders, in place (``Module.compile``,
  so checkpoint keys do not change).
- ``train.channels_last``: ``auto`` (on CUDA, for encoders with 2-D convolutions),
  ``always`` or ``never``: channels-last weights and 4-D inputs.
- ``train.deterministic``: deterministic kernels (``set_deterministic``).

``resolve_speed`` reads them once into a ``SpeedSettings`` (raising on a bad value,
before the run directory exists); ``apply_speed_settings`` applies them to the model
and the loop reads the same object.
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

import torch
from torch import nn

from core.errors import UserError
from core.notes import say_once

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device``; None means plain float32.

    Raises:
        UserError: an unknown precision, fp16 without CUDA, or bf16 on a GPU without bf16.
    """
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"train.precision must be one of auto, {', '.join(PRECISIONS)}; got '{precision}'")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"train.precision=fp16 needs a CUDA device (float16 autocast with a gradient scaler); "
                        f"on {device.type} use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("train.precision=bf16: this GPU has no bfloat16 support; use fp16 or fp32")
    return PRECISIONS[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward-pass context: ``torch.autocast`` to ``dtype``, or nothing for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for float16 (a disabled one passes calls through)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def has_conv2d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def use_channels_last(setting: str, device: torch.device, encoder: nn.Module) -> bool:
    """Whether to train in channels-last memory format.

    Raises:
        UserError: ``setting`` is not auto, always or never.
    """
    if setting not in ("auto", "always", "never"):
        raise UserError(f"train.channels_last must be auto, always or never; got '{setting}'")
    if setting == "auto":
        return device.type == "cuda" and has_conv2d(encoder)
    return setting == "always"


class SpeedSettings(NamedTuple):
    """The ``train.*`` speed switches resolved once for one device and encoder (``resolve_speed``)."""

    amp_dtype: torch.dtype | None  # autocast dtype; None = plain float32
    channels_last: bool            # channels-last weights and 4-D batches
    tf32: bool
    compile: bool
    deterministic: bool


def resolve_speed(train_cfg: dict, device: torch.device, encoder: nn.Module) -> SpeedSettings:
    """``train.precision``, ``train.channels_last``, ``train.tf32``, ``train.compile`` and
    ``train.deterministic`` for ``encoder`` on ``device``.

    Raises:
        UserError: a bad ``train.precision`` or ``train.channels_last`` (see above).
    """
    return SpeedSettings(autocast_dtype(train_cfg["precision"], device),
                         use_channels_last(train_cfg["channels_last"], device, encoder),
                         bool(train_cfg["tf32"]), bool(train_cfg["compile"]), bool(train_cfg["deterministic"]))


def set_deterministic(enabled: bool, device: torch.device) -> None:
    """``train.deterministic``: deterministic kernels (``torch.use_deterministic_algorithms``,
    no cuDNN autotuning; cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG``, set here if unset). An op
    without a deterministic implementation then raises instead of running.

    On CPU it also pins torch to one intra-op thread (one ``note:`` line says so): with two or
    more threads MKL's kernels may change the last bits of a result from one run to the next
    (benchmarks/RESULTS.md, "Session 17"), so only one thread repeats bit for bit. Without the
    option nothing is changed."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        if device.type == "cpu" and torch.get_num_threads() > 1:
            say_once(f"train.deterministic: training on one CPU thread instead of {torch.get_num_threads()}, "
                     "as only one repeats bit for bit")
            torch.set_num_threads(1)
    torch.use_deterministic_algorithms(enabled)


def apply_speed_settings(speed: SpeedSettings, model: nn.ModuleDict, device: torch.device) -> None:
    """Deterministic kernels, TF32, channels-last weights and torch.compile of the encoders.

    Call after the model is on ``device`` and the optimizer is built (compile
    keeps the same parameters).
    """
    set_deterministic(speed.deterministic, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = speed.tf32
        torch.backends.cudnn.allow_tf32 = speed.tf32
    if speed.channels_last:
        model["encoders"]["x"].to(memory_format=torch.channels_last)
    if speed.compile:
        for encoder in model["encoders"].values():
            encoder.compile()


def to_channels_last(batch: dict) -> dict:
    """4-D tensors of a batch (B, C, H, W) in channels-last memory format; others unchanged."""
    return {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
            for k, v in batch.items()}
