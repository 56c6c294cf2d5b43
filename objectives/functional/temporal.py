"""TS2Vec's contrastive losses over per-timestamp representations (Yue et al. 2022, AAAI, arXiv 2106.10466).

Inputs are the two views' representations of their overlap, z1 and z2 (B, T, D): z1[i, t] and
z2[i, t] come from the same input timestamp of series i. As in the reference code the scores
are raw dot products: no temperature, no normalization. Each function computes in float32 at
least (float64 stays float64), with autocast off.

Under torch.distributed the instance term's negatives are the rows of every rank (gathered with
gradient, ``objectives.distributed``); each rank averages over its own rows, so the mean over
ranks of the per-rank losses, and DDP's averaged gradient, equal one process on the whole
batch. The temporal term is per series and needs nothing from other ranks. Ranks must hold
equal shapes (B, T, D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.process_group import rank
from objectives.distributed import gather_with_grad


def _check(z1: torch.Tensor, z2: torch.Tensor, name: str) -> None:
    if z1.dim() != 3 or z1.shape != z2.shape:
        raise ValueError(f"{name}: expected two (B, T, D) tensors of equal shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")


def _precise(z: torch.Tensor) -> torch.Tensor:
    return z.to(torch.promote_types(z.dtype, torch.float32))


def _pair_loss(sim: torch.Tensor, rows: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over (batch of) rows of -log softmax(sim[..., row, :] without its own column)[positive].

    sim (..., M, N); rows, positives (M,) column indices of each row itself and of its positive."""
    own = torch.zeros(sim.shape[-2:], dtype=torch.bool, device=sim.device)
    own[torch.arange(len(rows), device=sim.device), rows] = True
    log_prob = sim.masked_fill(own, float("-inf")).log_softmax(dim=-1)
    return -log_prob[..., torch.arange(len(rows), device=sim.device), positives].mean()


def _instance(z1: torch.Tensor, z2: torch.Tensor, all1: torch.Tensor, all2: torch.Tensor,
              offset: int) -> torch.Tensor:
    """Instance term of this rank's rows z1, z2 (b, T, D) against every rank's all1, all2 (B, T, D)."""
    b, n = z1.shape[0], all1.shape[0]
    if n == 1:
        return z1.new_zeros(())
    anchors = torch.cat([z1, z2]).transpose(0, 1)  # (T, 2b, D)
    columns = torch.cat([all1, all2]).transpose(0, 1)  # (T, 2B, D): view 1 of every series, then view 2
    i = torch.arange(b, device=z1.device) + offset
    rows, positives = torch.cat([i, n + i]), torch.cat([n + i, i])
    return _pair_loss(anchors @ columns.transpose(1, 2), rows, positives)


def _temporal(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Temporal term of z1, z2 (B, T, D): per series, the 2T timestamps of both views."""
    steps = z1.shape[1]
    if steps == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=1)  # (B, 2T, D)
    t = torch.arange(steps, device=z1.device)
    return _pair_loss(z @ z.transpose(1, 2), torch.cat([t, steps + t]), torch.cat([steps + t, t]))


def _gathered(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    both = gather_with_grad(torch.stack([z1, z2], dim=1))  # one collective: (B, 2, T, D)
    return both[:, 0], both[:, 1]


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance-wise contrastive loss (Yue et al. 2022, Eq. 3).

    At each timestamp t the 2B rows z1[:, t], z2[:, t] score each other by dot product; row i of
    view 1 has z2[i, t] as its positive and the 2B - 2 other rows (both views, every other
    series) as negatives, and symmetrically for view 2; a row never scores itself. The loss is
    -log softmax at the positive, averaged over the 2B rows and the T timestamps. Under
    torch.distributed B is the global batch (see the module docstring).

    Shapes: z1, z2 (B, T, D). Returns a scalar (float32 or float64); 0 when the (global) B is 1.

    Raises:
        ValueError: z1 and z2 differ in shape or are not 3-D.
    """
    _check(z1, z2, "instance_contrastive_loss")
    with torch.autocast(z1.device.type, enabled=False):
        z1, z2 = _precise(z1), _precise(z2)
        all1, all2 = _gathered(z1, z2)
        return _instance(z1, z2, all1, all2, rank() * z1.shape[0])


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's temporal contrastive loss (Yue et al. 2022, Eq. 2).

    Per series i, the 2T vectors z1[i, :], z2[i, :] score each other by dot product; z1[i, t]
    has z2[i, t] as its positive and the 2T - 2 other timestamps of both views as negatives, and
    symmetrically. -log softmax at the positive, averaged over the 2T timestamps and the B series.

    Shapes: z1, z2 (B, T, D). Returns a scalar (float32 or float64); 0 when T is 1.

    Raises:
        ValueError: z1 and z2 differ in shape or are not 3-D.
    """
    _check(z1, z2, "temporal_contrastive_loss")
    with torch.autocast(z1.device.type, enabled=False):
        return _temporal(_precise(z1), _precise(z2))


def _halve(z: torch.Tensor) -> torch.Tensor:
    """Max-pool (B, T, D) along time by 2 (an odd last step is dropped, as F.max_pool1d does)."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's hierarchical contrastive loss (Yue et al. 2022, Alg. 1), as the reference code.

    Level 0 is z1, z2; each next level max-pools both along time by 2, down to length 1. A level
    of length > 1 adds alpha * instance term + (1 - alpha) * temporal term, the temporal term
    only from level ``temporal_unit`` on; the level of length 1 adds the instance term alone.
    The sum is divided by the number of levels (floor(log2 T) + 1; 4 for T = 8). A weight of 0
    skips its term.

    Under torch.distributed the rows of every rank are gathered once, and every level's instance
    term scores this rank's rows against all of them (module docstring).

    Args:
        z1, z2: (B, T, D) representations of the overlap in the two views, timestamp-aligned.
        alpha: weight of the instance term (1 - alpha: the temporal term).
        temporal_unit: the first level with a temporal term.

    Returns:
        A scalar (float32 or float64).

    Raises:
        ValueError: z1 and z2 differ in shape or are not 3-D, or T is 0.
    """
    _check(z1, z2, "hierarchical_contrastive_loss")
    if z1.shape[1] == 0:
        raise ValueError("hierarchical_contrastive_loss: the overlap has no timestamps (T = 0)")
    with torch.autocast(z1.device.type, enabled=False):
        all1, all2 = _gathered(_precise(z1), _precise(z2))
        offset, b = rank() * z1.shape[0], z1.shape[0]
        loss, levels = all1.new_zeros(()), 0
        while True:
            z1, z2 = all1[offset:offset + b], all2[offset:offset + b]
            if alpha != 0:
                loss = loss + alpha * _instance(z1, z2, all1, all2, offset)
            if all1.shape[1] > 1 and levels >= temporal_unit and alpha != 1:
                loss = loss + (1 - alpha) * _temporal(z1, z2)
            levels += 1
            if all1.shape[1] == 1:
                return loss / levels
            all1, all2 = _halve(all1), _halve(all2)
