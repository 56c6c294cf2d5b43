"""Remedies for false and easy negatives in InfoNCE: the debiased and hard-negative loss
(Chuang et al. 2020; Robinson et al. 2021).

Each docstring gives the paper, the shapes, what is normalized and how the
result is reduced. Tests check each one against an independent formulation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from core.process_group import rank
from objectives.distributed import gather_no_grad, gather_with_grad


def debiased_loss(features: torch.Tensor, temperature: float = 0.5, tau_plus: float = 0.1, beta: float = 0.0,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """Debiased (Chuang et al. 2020, eq. 6) and hard-negative (Robinson et al. 2021, eq. 4) contrast.

    Rows: the 2B L2-normalized views of features (B, 2, D). For anchor i with positive score
    s+ (its other view) and the N scores s- of its negatives (cosine similarities; t = temperature)::

        neg = exp(s- / t), imp = neg ** beta, reweighted = sum(imp * neg) / mean(imp)
        Ng = max((reweighted - N tau_plus exp(s+ / t)) / (1 - tau_plus), N exp(-1 / t))
        loss_i = -log(exp(s+ / t) / (exp(s+ / t) + Ng))

    averaged over anchors. tau_plus = 0 and beta = 0 give NT-Xent exactly. Negatives are every
    other row but i's positive; with ``labels`` (B,), rows of i's class are left out of them too
    (known positives are not negatives). Under torch.distributed anchors are this rank's rows,
    candidates every rank's (gathered with gradient); the rank's loss is its anchors' mean, so
    with equal batches per rank the ranks' mean (and DDP's averaged gradient) is the one-process
    loss. float32.

    Raises:
        ValueError: features not (B, 2, D), labels not (B,), tau_plus outside [0, 1), or an
            anchor without negatives.
    """
    if features.dim() != 3 or features.shape[1] != 2:
        raise ValueError(f"debiased_loss: features must be (batch, 2, dim), got {tuple(features.shape)}")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"debiased_loss: tau_plus must lie in [0, 1), got {tau_plus}")
    batch = features.shape[0]
    if labels is not None and labels.shape != (batch,):
        raise ValueError(f"debiased_loss: labels must have shape ({batch},), got {tuple(labels.shape)}")
    z = rearrange(F.normalize(features.float(), dim=-1), "b v d -> (b v) d")
    sample = (torch.arange(batch, device=z.device) + rank() * batch).repeat_interleave(2)
    z_all, sample_all = gather_with_grad(z), gather_no_grad(sample)
    logits = z @ z_all.T / temperature  # (2B, 2B * world)
    rows = torch.arange(len(z), device=z.device)
    own = rows + rank() * len(z)
    positive_col = own + 1 - 2 * (own % 2)  # the other view of the same sample
    negative = sample[:, None] != sample_all[None, :]
    if labels is not None:
        label_all = gather_no_grad(labels.long()).repeat_interleave(2)
        negative &= labels.long().repeat_interleave(2)[:, None] != label_all[None, :]
    n_neg = negative.sum(1)
    if bool((n_neg == 0).any()):
        raise ValueError("debiased_loss: an anchor has no negatives (one sample, or every row of its class)")
    pos = logits[rows, positive_col]
    neg = logits.exp() * negative
    imp = (beta * logits).exp() * negative
    reweighted = (imp * neg).sum(1) / (imp.sum(1) / n_neg)
    ng = (reweighted - n_neg * tau_plus * pos.exp()) / (1 - tau_plus)
    ng = torch.maximum(ng, n_neg * math.exp(-1 / temperature))
    loss = -(pos - torch.log(pos.exp() + ng))
    return loss.mean()
