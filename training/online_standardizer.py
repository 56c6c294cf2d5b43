"""The running per-dimension standardization the online classifier reads its inputs through
(training/online_eval.py; ``train.online_eval_momentum``)."""
from __future__ import annotations

import torch

from training.distributed import all_reduce_mean


class Standardizer:
    """Per-dimension running mean and variance of the rows the classifier sees, and rows standardized by them.

    ``update(rows)``: the step's rows (N, D) (every rank's, under torchrun: sums all-reduced) give a batch
    mean m and variance v (float64); the first step sets mean = m, var = v, later ones move them by
    ``momentum``: mean <- (1 - momentum) mean + momentum m, and var likewise. ``__call__(rows)``:
    (rows - mean) / sqrt(var + eps), what the classifier reads in training and at validation alike (the
    final linear probe standardizes by its train split's statistics the same way).
    """

    def __init__(self, dim: int, momentum: float, device, eps: float = 1e-5):
        self.momentum, self.eps = momentum, eps
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.var = torch.ones(dim, dtype=torch.float64, device=device)
        self.steps = torch.zeros((), dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, rows: torch.Tensor) -> bool:
        """Move the statistics toward those of ``rows``; False (nothing changed) when the global sums are
        not finite (the same answer on every rank)."""
        rows = rows.double()
        sums = torch.cat([torch.tensor([len(rows)], dtype=torch.float64, device=rows.device), rows.sum(0),
                          (rows * rows).sum(0)])
        all_reduce_mean([sums])  # means over ranks of (n, sum, sum of squares): their ratios are global
        if not bool(torch.isfinite(sums).all()):
            return False
        n, d = sums[0], rows.shape[1]
        mean = sums[1:1 + d] / n
        var = (sums[1 + d:] / n - mean * mean).clamp_min(0)
        if int(self.steps) == 0:
            self.mean.copy_(mean)
            self.var.copy_(var)
        else:
            self.mean.lerp_(mean, self.momentum)
            self.var.lerp_(var, self.momentum)
        self.steps += 1
        return True

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        return ((rows.double() - self.mean) / (self.var + self.eps).sqrt()).float()

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "steps": self.steps.clone()}

    def load_state_dict(self, state: dict) -> None:
        for key in ("mean", "var", "steps"):
            getattr(self, key).copy_(state[key])
