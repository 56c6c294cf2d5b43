"""The linear probe: standardized logistic regression on frozen embeddings, fit on train only.

Single-label targets (N,) long: one multinomial logistic regression (softmax, cross-entropy).
Multi-hot targets (N, K) float: one logistic output per label (sigmoid, binary cross-entropy
averaged over items and labels).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LinearProbe(NamedTuple):
    """A fitted probe: standardization (train mean, std: (D,)) and logistic regression (weight (D, C), bias (C,))."""
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) logits of embeddings ``x`` (N, D)."""
        return ((x - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) long: the class of the largest logit."""
        return self.logits(x).argmax(1)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) class probabilities (softmax of the logits)."""
        return self.logits(x).softmax(1)

    def label_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) per-label probabilities (sigmoid of the logits) of a multi-label probe."""
        return self.logits(x).sigmoid()


def fit_linear_probe(train_x, train_y, n_classes: int, epochs: int = 100, lr: float = 0.01,
                     weight_decay: float = 1e-4, seed: int = 0) -> LinearProbe:
    """Logistic regression on train only: ``train_x`` (N, D) and ``train_y`` either (N,) long in
    [0, n_classes) (cross-entropy) or (N, n_classes) multi-hot in {0, 1} (binary cross-entropy)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x = (train_x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(x.shape[1], n_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=weight_decay)
    multi_label = train_y.dim() == 2
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            logits = x @ weight + bias
            if multi_label:
                F.binary_cross_entropy_with_logits(logits, train_y.float()).backward()
            else:
                F.cross_entropy(logits, train_y).backward()
            optimizer.step()
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def linear_probe(train_x, train_y, test_x, test_y, n_classes: int, epochs: int = 100, lr: float = 0.01,
                 weight_decay: float = 1e-4, seed: int = 0) -> tuple[float, LinearProbe]:
    """(test accuracy in [0, 1], the probe) of ``fit_linear_probe`` on train, scored once on test (single-label)."""
    probe = fit_linear_probe(train_x, train_y, n_classes, epochs, lr, weight_decay, seed)
    return (probe.predict(test_x) == test_y).float().mean().item(), probe
