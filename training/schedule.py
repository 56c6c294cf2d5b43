"""Learning-rate schedule: linear warmup from 0, then cosine decay to a floor."""
from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float):
    """LambdaLR whose factor rises linearly over ``warmup_steps`` then follows a
    half cosine from 1 to ``min_lr_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
