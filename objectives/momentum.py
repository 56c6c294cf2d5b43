"""Momentum (EMA) teachers: a frozen copy of an online module, moved toward it after every step.

Used by MoCo's key encoder and by the teachers of BYOL and DINO. After optimizer step k of K
the teacher's parameters become ``tau_k * teacher + (1 - tau_k) * online``. ``tau_k`` is
constant (MoCo: 0.999) or follows BYOL's cosine schedule (Grill et al. 2020, eq. after (2);
DINO uses the same), rising from ``base`` at k = 0 to 1 at k = K::

    tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2

Only parameters are averaged: a teacher's buffers (BatchNorm running statistics) are its own,
kept up to date by its own forward passes, as in the MoCo and BYOL reference code.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

SCHEDULES = ("constant", "cosine")


def momentum_at(base: float, step: int, total_steps: int, schedule: str = "constant") -> float:
    """tau of the update after optimizer step ``step`` (1-based) of ``total_steps``.

    Raises:
        ValueError: an unknown schedule, or ``base`` outside [0, 1].
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"momentum schedule must be one of {', '.join(SCHEDULES)}, got '{schedule}'")
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {base}")
    if schedule == "constant" or total_steps <= 0:
        return base
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient (a teacher's starting point)."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, online: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * online, parameter by parameter.

    Raises:
        ValueError: the two modules do not have the same parameters.
    """
    for t, o in zip(teacher.parameters(), online.parameters(), strict=True):
        if t.shape != o.shape:
            raise ValueError(f"teacher and online modules differ: a parameter of shape {tuple(t.shape)} "
                             f"against {tuple(o.shape)}")
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)
