"""How objectives feed a batch to an encoder (so padding masks are never forgotten)."""
from __future__ import annotations

import torch


def encode(encoder, batch: dict, x: torch.Tensor | None = None) -> dict:
    """``encoder(x)`` where x defaults to ``batch["x"]``, with ``mask=batch["mask"]``
    (B, T) when the batch has one (series of unequal length)."""
    x = batch["x"] if x is None else x
    if "mask" in batch:
        return encoder(x, mask=batch["mask"])
    return encoder(x)
