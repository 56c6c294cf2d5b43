"""Stratified, seeded subsets of the train labels, for the label-fraction protocols.

The semi-supervised protocol of SimCLR (Chen et al. 2020, 1% and 10% of the ImageNet labels) and
of the self-supervised surveys after it: fit the same probe (or fine-tuning) on a small labelled
part of the train split, report on the same held-out split.

Per class c with n_c train items, a fraction f keeps ``max(1, floor(f * n_c + 1/2))`` items (round
half up; at least one item of every class). Which ones: one random permutation of each class's
items, drawn from ``seed`` alone, and its first items. The permutation does not depend on f, so
for one seed the subsets are **nested**: the 1% subset is part of the 10% subset, which is part
of 100% (the whole split). Only train labels are ever passed in; the indices are positions in
that train split.
"""
from __future__ import annotations

import math

import torch

from core.errors import UserError


def class_count(n_items: int, fraction: float) -> int:
    """Items kept of a class of ``n_items``: max(1, round half up of fraction x n_items)."""
    return max(1, math.floor(fraction * n_items + 0.5))


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Positions of a stratified subset of ``labels`` (module docstring).

    Args:
        labels: (N,) long class indices of the train split.
        fraction: in (0, 1]; 1 gives every position.
        seed: the subset's seed (the run's ``seed``): same seed, same subset.

    Returns:
        (M,) long positions in [0, N), sorted ascending, M = sum over classes of ``class_count``.

    Raises:
        ValueError: ``labels`` is not one-dimensional, or ``fraction`` is outside (0, 1].
    """
    if labels.dim() != 1:
        raise ValueError(f"stratified subsets need one label per item, got labels of shape {tuple(labels.shape)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"a label fraction must be in (0, 1], got {fraction}")
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c in labels.unique(sorted=True).tolist():
        members = (labels == c).nonzero().flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        kept.append(order[:class_count(len(members), fraction)])
    return torch.cat(kept).sort().values if kept else torch.zeros(0, dtype=torch.long)


def fraction_key(metric: str, fraction: float) -> str:
    """The results.json key of ``metric`` at a label fraction: ('linear_probe_acc', 0.01) ->
    'linear_probe_acc@1%', 0.1 -> '@10%', 1.0 -> '@100%', 0.005 -> '@0.5%'."""
    return f"{metric}@{round(fraction * 100, 6):g}%"


def check_fractions(fractions) -> None:
    """Raises UserError unless ``fractions`` (``eval.label_fractions``) is None or a non-empty list of
    distinct numbers in (0, 1]."""
    if fractions is None:
        return
    numbers = isinstance(fractions, (list, tuple)) and all(
        isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions)
    if not numbers or not fractions or len(set(fractions)) < len(fractions) or not all(0 < f <= 1 for f in fractions):
        raise UserError(f"eval.label_fractions must be null or a list of distinct numbers in (0, 1], "
                        f"e.g. [0.01, 0.1, 1.0]; got {fractions!r}")
