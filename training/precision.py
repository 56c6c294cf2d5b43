"""Mixed precision and the speed switches of ``train.*``.

- ``train.precision``: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32``, ``bf16``
  (autocast to bfloat16; no scaler needed: bf16 has fp32's exponent range) or
  ``fp16`` (autocast to float16 with a ``torch.amp.GradScaler``, CUDA only).
  Parameters and optimizer state stay float32; the contrastive losses compute
  their logits in float32 under autocast (objectives/functional.py).
- ``train.tf32``: TF32 tensor cores for float32 matmuls and convolutions on CUDA.
- ``train.compile``: ``torch.compile`` of the encoders, in place (``Module.compile``,
  so checkpoint keys do not change).
- ``train.channels_last``: ``auto`` (on CUDA, for encoders with 2-D convolutions),
  ``always`` or ``never``: channels-last weights and 4-D inputs.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from errors import UserError

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


def apply_speed_settings(cfg: dict, model: nn.ModuleDict, device: torch.device) -> bool:
    """TF32, channels-last weights and torch.compile of the encoders, as ``train.*`` asks.

    Call after the model is on ``device`` and the optimizer is built (compile
    keeps the same parameters). Returns whether batches should be channels-last.

    Raises:
        UserError: a bad ``train.precision`` or ``train.channels_last`` (see above).
    """
    tc = cfg["train"]
    autocast_dtype(tc["precision"], device)  # a bad precision fails here, before the run directory exists
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc["tf32"]
        torch.backends.cudnn.allow_tf32 = tc["tf32"]
    channels_last = use_channels_last(tc["channels_last"], device, model["encoders"]["x"])
    if channels_last:
        model["encoders"]["x"].to(memory_format=torch.channels_last)
    if tc["compile"]:
        for encoder in model["encoders"].values():
            encoder.compile()
    return channels_last


def to_channels_last(batch: dict) -> dict:
    """4-D tensors of a batch (B, C, H, W) in channels-last memory format; others unchanged."""
    return {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
            for k, v in batch.items()}
