"""SupCon for multi-label data: positives are the rows that share any label with the anchor.

Each docstring gives the shapes, what is normalized and how the result is reduced. Tests check
the loss against a float64 loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from core.process_group import rank, world_size
from objectives.distributed import gather_no_grad, gather_with_grad


def shared_label_positives(targets: torch.Tensor, sample: torch.Tensor, targets_all: torch.Tensor,
                           sample_all: torch.Tensor, offset: int) -> torch.Tensor:
    """(M, N) bool: row j is a positive of anchor i when j is another view of i's sample or the two
    share a label; never i itself (anchor i is row ``offset + i`` of the N rows).

    Shapes: targets (M, K) and targets_all (N, K) multi-hot; sample (M,), sample_all (N,) sample ids.
    """
    positive = (targets.float() @ targets_all.float().T > 0) | (sample[:, None] == sample_all[None, :])
    rows = torch.arange(len(targets), device=targets.device)
    positive[rows, rows + offset] = False
    return positive


def multilabel_supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon L_out (Khosla et al. 2020, Eq. 2) with multi-hot labels.

    Every one of the B*V rows is an anchor; the softmax runs over all other rows and
    loss_i = -1/|P(i)| sum_{p in P(i)} log softmax_i(p), where P(i) = the other rows that are a
    view of i's sample or share at least one label with i (``shared_label_positives``). A row
    with no label (all zeros, "no finding") has only its sample's other views as positives.
    One-hot labels give ``supcon_loss`` with class labels exactly. The loss is the mean over
    anchors with a positive. Under torch.distributed rows are gathered (with gradient) and the
    rank's sum is scaled by world_size / (anchors with a positive, all ranks), as ``supcon_loss``.
    Dense (M, N) logits; float32.

    Args:
        features: (B, V, D) any float dtype; L2-normalized over D.
        labels: (B, K) multi-hot in {0, 1} (any dtype).
        temperature: t; logits are cosine similarity / t.

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: features not 3-D, labels not (B, K), or no anchor has a positive.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (batch, views, dim), got shape {tuple(features.shape)}")
    batch, views, _ = features.shape
    if labels.dim() != 2 or labels.shape[0] != batch:
        raise ValueError(f"multi-hot labels must have shape ({batch}, K), got {tuple(labels.shape)}")
    z = rearrange(F.normalize(features.float(), dim=-1), "b v d -> (b v) d")
    targets = labels.float().repeat_interleave(views, dim=0)
    sample = (torch.arange(batch, device=z.device) + rank() * batch).repeat_interleave(views)
    z_all, targets_all, sample_all = gather_with_grad(z), gather_no_grad(targets), gather_no_grad(sample)
    n_valid = int(shared_label_positives(targets_all, sample_all, targets_all, sample_all, 0).any(1).sum())
    if n_valid == 0:
        raise ValueError("multilabel_supcon_loss: no anchor has a positive (V=1 and no two samples share a "
                         "label); use V >= 2 views")
    offset = rank() * len(z)
    positive = shared_label_positives(targets, sample, targets_all, sample_all, offset)
    logits = (z / temperature) @ z_all.T
    self_mask = torch.zeros_like(positive)
    rows = torch.arange(len(z), device=z.device)
    self_mask[rows, rows + offset] = True
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    total = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    loss = -total / positive.sum(dim=1).clamp(min=1)
    return loss.sum() * world_size() / n_valid
