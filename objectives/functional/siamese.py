"""The Siamese margin (contrastive) loss of Hadsell, Chopra & LeCun 2006 (DrLIM) over every pair
of rows of a batch of views.

Each docstring gives the paper, the shapes, what is normalized and how the
result is reduced. Tests check each one against an independent formulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from core.process_group import rank, world_size
from objectives.distributed import gather_no_grad, gather_with_grad
from objectives.functional.decoupled import sample_ids


def squared_distances(z: torch.Tensor, z_all: torch.Tensor, normalized: bool) -> torch.Tensor:
    """(M, N) squared Euclidean distances ||z_i - z_all_j||^2 through the Gram matrix, clamped at 0
    (rounding can make them slightly negative); 2 - 2 cos on the unit sphere."""
    gram = z @ z_all.T
    if normalized:
        return (2 - 2 * gram).clamp_min(0.0)
    return (z.pow(2).sum(1)[:, None] + z_all.pow(2).sum(1)[None, :] - 2 * gram).clamp_min(0.0)


def siamese_loss(features: torch.Tensor, labels: torch.Tensor | None = None, margin: float = 1.0,
                 normalize: bool = True, balanced: bool = False) -> torch.Tensor:
    """Contrastive loss on all pairs of a batch (Hadsell, Chopra & LeCun 2006, eq. 4, without the 1/2).

    The B * V rows of ``features`` (B, V, D) are L2-normalized when ``normalize`` (then
    D_ij in [0, 2] and a margin m <= 2 is meaningful; otherwise m is in the encoder's own scale).
    Every unordered pair {i, j}, i != j, is similar (y = 1) when both rows have the same id (two
    views of one sample; with ``labels`` (B,), any two rows of one class) and dissimilar otherwise::

        term_ij = y D_ij^2 + (1 - y) max(0, m - D_ij)^2,   D_ij = ||z_i - z_j||_2

    ``balanced=False`` (the paper's formula): the mean of term_ij over all pairs, so the about
    2B(B - 1) dissimilar pairs of two views outweigh the B similar ones. ``balanced=True``: the
    mean over similar pairs plus the mean over dissimilar pairs (each 0 when there are none).
    A dissimilar pair at distance 0 gets no gradient (D is sqrt(max(D^2, 1e-12))).

    Under torch.distributed the rows of all ranks are gathered with gradient; each rank sums the
    ordered pairs (i, j) of its own anchors i against every row j and divides by the number of
    ordered pairs of the global batch over world_size, so the ranks' mean, and DDP's averaged
    gradient, equal the one-process loss. Every unordered pair is counted twice, which leaves the
    means unchanged. float32.

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: features not 3-D, labels not (B,), a negative margin, or fewer than 2 rows
            in the (global) batch.
    """
    if features.dim() != 3:
        raise ValueError(f"siamese_loss: features must be (batch, views, dim), got {tuple(features.shape)}")
    if margin < 0:
        raise ValueError(f"siamese_loss: margin must be >= 0, got {margin}")
    batch, views, _ = features.shape
    ids = sample_ids(batch, views, labels, features.device)
    z = rearrange(features.float(), "b v d -> (b v) d")
    if normalize:
        z = F.normalize(z, dim=-1)
    z_all, ids_all = gather_with_grad(z), gather_no_grad(ids)
    n = len(z_all)
    if n < 2:
        raise ValueError("siamese_loss needs at least 2 rows to form a pair")
    d2 = squared_distances(z, z_all, normalize)
    same = ids[:, None] == ids_all[None, :]
    rows = torch.arange(len(z), device=z.device)
    not_self = torch.ones_like(same)
    not_self[rows, rows + rank() * len(z)] = False
    similar, dissimilar = same & not_self, ~same
    hinge = F.relu(margin - d2.clamp_min(1e-12).sqrt()).pow(2)
    pos_sum = torch.where(similar, d2, torch.zeros_like(d2)).sum()
    neg_sum = torch.where(dissimilar, hinge, torch.zeros_like(hinge)).sum()
    if not balanced:
        return (pos_sum + neg_sum) * world_size() / (n * (n - 1))
    _, class_all, counts = torch.unique(ids_all, return_inverse=True, return_counts=True)
    n_similar = int((counts[class_all] - 1).sum())
    n_dissimilar = n * (n - 1) - n_similar
    return world_size() * (pos_sum / max(n_similar, 1) + neg_sum / max(n_dissimilar, 1))
