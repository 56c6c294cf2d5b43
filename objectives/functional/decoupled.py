"""Decoupled contrastive loss (Yeh et al. 2022, arXiv 2110.06848): InfoNCE without the positive
term in the denominator, optionally with the positive term reweighted by a negative von
Mises-Fisher weight (DCLW).

Each docstring gives the paper, the shapes, what is normalized and how the
result is reduced. Tests check each one against an independent formulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from core.process_group import rank, world_size
from objectives.distributed import gather_no_grad, gather_with_grad


def sample_ids(batch: int, views: int, labels: torch.Tensor | None, device) -> torch.Tensor:
    """(B * V,) ids of the rows of (B, V, D) features flattened sample-major: ``labels`` repeated
    per view, or (labels None) the sample's global index, unique across ranks.

    Raises:
        ValueError: labels not of shape (B,).
    """
    if labels is None:
        ids = torch.arange(batch, device=device) + rank() * batch
    elif labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    else:
        ids = labels.long()
    return ids.repeat_interleave(views)


def dclw_weights(cos: torch.Tensor, positive: torch.Tensor, sigma: float) -> torch.Tensor:
    """DCLW's weights w = 2 - exp(s / sigma) / mean exp(s' / sigma) on the positive entries.

    ``cos`` (M, N): cosine similarities of this rank's anchors to all rows; ``positive`` (M, N)
    bool. The mean runs over every (anchor, positive) pair of the global batch (all ranks): for
    two views and no labels that is the mean over the B positive pairs of the batch, as
    ``2 - B * softmax_over_batch(s / sigma)`` in the reference code the lightly library cites
    (raminnakhli/Decoupled-Contrastive-Learning). Detached, as lightly's DCLLoss: a weight, not
    a path for gradient. Returns (M, N), 0 off the positive entries.
    """
    # Shifted by the largest possible cosine (1): exp never overflows, the ratio is unchanged.
    e = torch.exp((cos.detach() - 1.0) / sigma) * positive
    totals = gather_no_grad(torch.stack([e.sum(), positive.sum().to(e.dtype)])).view(-1, 2).sum(0)
    mean = totals[0] / totals[1].clamp_min(1.0)
    return torch.where(positive, 2 - e / mean, torch.zeros_like(e))


def decoupled_loss(features: torch.Tensor, labels: torch.Tensor | None = None, temperature: float = 0.1,
                   weight_sigma: float | None = None) -> torch.Tensor:
    """Decoupled contrastive loss DCL / DCLW (Yeh et al. 2022, eqs. 6 and 8), SupCon-style.

    Rows: the B * V L2-normalized views of ``features``. For anchor i, P(i) = the other rows
    with i's id (the other views of its sample; with ``labels``, every row of its class) and
    N(i) = the rows with another id; s = cosine similarity, t = temperature::

        loss_i = -1/|P(i)| sum_{p in P(i)} w_ip s_ip / t + log sum_{n in N(i)} exp(s_in / t)

    i.e. SupCon's L_out / NT-Xent with the positives removed from the denominator. w = 1 (DCL)
    when ``weight_sigma`` is None or 0, else DCLW's ``dclw_weights`` (sigma = 0.5 in the paper).
    For V = 2 without labels this is the reference code's DCL averaged over both directions.
    The loss is the mean of loss_i over anchors that have a positive and a negative; the others
    are left out. Under torch.distributed the rows of all ranks are gathered (with gradient),
    each rank scores its own anchors against all rows and scales its sum by
    world_size / (valid anchors of all ranks), so the ranks' mean (and DDP's averaged gradient)
    equals the one-process loss on the whole batch. Dense (M, N) logits (no tiled path). float32.

    Args:
        features: (B, V, D), any float dtype.
        labels: (B,) integer classes, or None (positives = the other views of the sample).
        temperature: t.
        weight_sigma: DCLW's sigma; None or 0 for unweighted DCL.

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: features not 3-D, labels not (B,), a negative weight_sigma, or no anchor
            with both a positive and a negative.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (batch, views, dim), got shape {tuple(features.shape)}")
    if weight_sigma is not None and weight_sigma < 0:
        raise ValueError(f"decoupled_loss: weight_sigma must be positive (or None/0 for DCL), got {weight_sigma}")
    batch, views, _ = features.shape
    ids = sample_ids(batch, views, labels, features.device)
    z = rearrange(F.normalize(features.float(), dim=-1), "b v d -> (b v) d")
    z_all, ids_all = gather_with_grad(z), gather_no_grad(ids)
    _, class_all, counts = torch.unique(ids_all, return_inverse=True, return_counts=True)
    n_valid = int(((counts[class_all] > 1) & (counts[class_all] < len(ids_all))).sum())
    if n_valid == 0:
        raise ValueError("decoupled_loss: no anchor has both a positive and a negative; use V >= 2 views "
                         "or labels shared by several samples, and more than one class")
    rows = torch.arange(len(z), device=z.device)
    cos = z @ z_all.T  # (M, N)
    same = ids[:, None] == ids_all[None, :]
    positive = same.clone()
    positive[rows, rows + rank() * len(z)] = False
    negative = ~same
    n_pos, has_negative = positive.sum(1), negative.any(1)
    logits = cos / temperature
    weighted = logits if not weight_sigma else logits * dclw_weights(cos, positive, weight_sigma)
    pos_term = torch.where(positive, weighted, torch.zeros_like(logits)).sum(1) / n_pos.clamp_min(1)
    # Rows without a negative get finite logits: an all -inf log-sum-exp has a NaN gradient
    # even where torch.where discards it.
    neg_logits = logits.masked_fill(~negative, float("-inf")).where(has_negative[:, None], torch.zeros_like(logits))
    loss = torch.logsumexp(neg_logits, dim=1) - pos_term
    valid = (n_pos > 0) & has_negative
    return torch.where(valid, loss, torch.zeros_like(loss)).sum() * world_size() / n_valid
