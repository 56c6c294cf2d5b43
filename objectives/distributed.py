"""Gathering across ranks for in-batch contrastive losses.

A loss on rank r scores its own rows against the rows of every rank. The
features are gathered with ``torch.distributed.nn.functional.all_gather``,
whose backward sums the gradient of each slice over the ranks and hands every
rank back its own slice; with the local loss scaled as the losses here do,
the DDP average of per-rank gradients equals the one-process full-batch
gradient. Plain ``dist.all_gather`` carries no gradient and is only used for
labels. Every rank must hold the same number of rows (all_gather needs equal
shapes). ``min_over_ranks`` and ``from_rank_zero`` make small values agree across
ranks (TS2Vec's crop: every rank's overlap must have the same length).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from core.process_group import is_distributed


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, differentiable; ``x`` itself on one rank.

    Shapes: (M, ...) on every rank -> (world_size * M, ...), rank r's rows at
    [r * M, (r + 1) * M).
    """
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 without gradient (for labels)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def min_over_ranks(value: int, device) -> int:
    """The smallest ``value`` of any rank (``value`` itself on one rank); a tensor on ``device`` travels."""
    if not is_distributed():
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def from_rank_zero(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``x`` on every rank (for random draws every rank must share); ``x`` itself on one rank."""
    if not is_distributed():
        return x
    x = x.clone()
    dist.broadcast(x, src=0)
    return x


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The sum of every rank's ``x`` (same shape on all), without gradient; ``x`` itself on one rank."""
    if not is_distributed():
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    return total
