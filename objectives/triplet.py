"""Triplet margin objective with triplets mined from the labels of the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from objectives.functional import triplet_loss
from objectives.parts import encode_batch, mlp
from core.registry import register

MINING = ("batch_hard", "random")


def mine_triplets(z: torch.Tensor, labels: torch.Tensor, mining: str) -> tuple[torch.Tensor, ...]:
    """Indices (anchor, positive, negative) of one triplet per usable anchor.

    An anchor is usable when the batch holds another row with its label and a
    row with a different one; other anchors are skipped. ``batch_hard``
    (Hermans et al. 2017): the farthest positive and the nearest negative in
    Euclidean distance between L2-normalized rows; ``random``: a uniformly
    drawn positive and negative. Shapes: z (B, D), labels (B,); each output
    (A,) long, A = number of usable anchors (may be 0).
    """
    z = F.normalize(z.detach().float(), dim=1)
    dist = torch.cdist(z, z)
    same = labels[:, None] == labels[None, :]
    pos_mask = same & ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    neg_mask = ~same
    anchors = torch.nonzero(pos_mask.any(dim=1) & neg_mask.any(dim=1)).flatten()
    pos_mask, neg_mask, dist = pos_mask[anchors], neg_mask[anchors], dist[anchors]
    if mining == "batch_hard":
        positives = dist.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
        negatives = dist.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
    elif len(anchors):
        positives = torch.multinomial(pos_mask.float(), 1).flatten()
        negatives = torch.multinomial(neg_mask.float(), 1).flatten()
    else:
        positives = negatives = anchors
    return anchors, positives, negatives


@register("objective", "triplet", needs=("label", "embedding"))
class Triplet(nn.Module):
    """Triplet loss (Schroff et al. 2015, FaceNet) on a projection of the embedding.

    ``batch["x"]`` is encoded, projected by a two-layer MLP (hidden =
    embedding dim) to ``proj_dim``, triplets are mined from ``batch["label"]``
    (B,) by ``mine_triplets`` (``mining``: "batch_hard" or "random") and scored
    with ``functional.triplet_loss`` (normalized rows, Euclidean distance,
    ``margin``). A batch with no usable anchor (every label unique, or one
    label only) gives a loss of 0 that still backpropagates (zero gradient),
    never NaN. Triplets come from this rank's batch only.

    Logs ``valid_frac`` (usable anchors / B), ``active_frac`` (triplets with
    a positive loss), ``pos_dist`` and ``neg_dist`` (mean distances of the
    mined pairs).

    Raises:
        ValueError: ``mining`` is not "batch_hard" or "random".
    """

    label_mode = "single"  # one class per item (objectives.labels)

    def __init__(self, encoders: dict, proj_dim: int = 128, margin: float = 0.2,
                 mining: str = "batch_hard"):
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"triplet mining must be one of {', '.join(MINING)}, got '{mining}'")
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim)
        self.margin, self.mining = margin, mining

    def forward(self, encoders: dict, batch: dict) -> dict:
        z = self.head(encode_batch(encoders["x"], batch)["embedding"])
        a, p, n = mine_triplets(z, batch["label"], self.mining)
        if len(a) == 0:
            zero = z.sum() * 0.0
            return {"loss": zero, "valid_frac": 0.0, "active_frac": 0.0, "pos_dist": 0.0, "neg_dist": 0.0}
        loss = triplet_loss(z[a], z[p], z[n], self.margin)
        with torch.no_grad():
            zn = F.normalize(z.detach().float(), dim=1)
            d_pos = (zn[a] - zn[p]).norm(dim=1)
            d_neg = (zn[a] - zn[n]).norm(dim=1)
        return {"loss": loss, "valid_frac": len(a) / len(z),
                "active_frac": (d_pos - d_neg + self.margin > 0).float().mean(),
                "pos_dist": d_pos.mean(), "neg_dist": d_neg.mean()}
