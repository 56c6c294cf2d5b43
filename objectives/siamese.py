"""The Siamese margin objective (DrLIM's contrastive loss) over all pairs of a batch of views."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core.errors import UserError
from core.registry import register
from objectives.functional import siamese_loss
from objectives.functional.siamese import squared_distances
from objectives.parts import mlp, pair_stats, project_views


@register("objective", "contrastive", needs=("views", "embedding"))
class SiameseContrastive(nn.Module):
    """Contrastive (Siamese margin) loss of Hadsell, Chopra & LeCun 2006 (DrLIM), on all pairs.

    Every view of ``batch["views"]`` (B, V, ...) is encoded and projected by a two-layer MLP
    (hidden = embedding dim) to ``proj_dim``; ``functional.siamese_loss`` then scores every
    pair of the B * V rows (gathered across ranks): two views of one sample are a similar pair
    (with ``use_labels``, any two rows sharing ``batch["label"]``), every other pair dissimilar,
    y D^2 + (1 - y) max(0, margin - D)^2. ``normalize``: rows L2-normalized first, so D lies in
    [0, 2]; the default margin 1 stops pushing a dissimilar pair once its cosine is below 0.5.
    ``balanced`` (default): the similar and dissimilar pairs averaged apart and added; false: one
    mean over all pairs, the paper's formula, where the few similar pairs weigh little.

    Logs, over this rank's rows: ``pos_dist`` and ``neg_dist`` (mean distance of similar and
    dissimilar pairs), ``neg_in_margin`` (fraction of dissimilar pairs closer than the margin,
    the ones still pushed apart) and ``pos_sim``, ``neg_sim``, ``retrieval_acc`` between the
    first and last view.

    Raises:
        UserError: a margin outside [0, 2] with ``normalize`` (no pair can be farther than 2).
        ValueError (in forward): ``use_labels`` and a batch without labels.
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, margin: float = 1.0, normalize: bool = True,
                 use_labels: bool = False, balanced: bool = True):
        super().__init__()
        if normalize and not 0 < margin <= 2:
            raise UserError(f"contrastive: with normalize=true distances lie in [0, 2], so the margin must be "
                            f"in (0, 2]; got objective.margin={margin}")
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim)
        self.margin, self.normalize, self.use_labels, self.balanced = margin, normalize, use_labels, balanced

    @property
    def label_mode(self) -> str | None:
        """"single" with ``use_labels`` (one class per item), else None (``objectives.labels``)."""
        return "single" if self.use_labels else None

    def represent(self, encoders: dict, batch: dict) -> dict:
        """{"z": (B, V, proj_dim)}: every view encoded and projected, per sample."""
        return {"z": project_views(encoders["x"], self.head, batch)}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        z = reps["z"]
        if self.use_labels and "label" not in batch:
            raise ValueError("contrastive with use_labels=true needs labels, but the batch has no 'label' field; "
                             "use a labelled dataset or set objective.use_labels=false")
        labels = batch["label"] if self.use_labels else None
        loss = siamese_loss(z, labels, self.margin, self.normalize, self.balanced)
        return {"loss": loss, **self.distance_stats(z, labels), **pair_stats(z[:, 0], z[:, -1])}

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)

    @torch.no_grad()
    def distance_stats(self, z: torch.Tensor, labels: torch.Tensor | None) -> dict:
        """pos_dist, neg_dist, neg_in_margin over the pairs of this rank's rows (0 where none)."""
        batch, views, _ = z.shape
        flat = rearrange(z.detach().float(), "b v d -> (b v) d")
        if self.normalize:
            flat = F.normalize(flat, dim=-1)
        dist = squared_distances(flat, flat, self.normalize).sqrt()
        ids = (torch.arange(batch, device=z.device) if labels is None else labels).repeat_interleave(views)
        same = ids[:, None] == ids[None, :]
        similar = same & ~torch.eye(len(flat), dtype=torch.bool, device=z.device)
        dissimilar = ~same

        def mean(values, mask):
            return (values * mask).sum() / mask.sum().clamp_min(1)

        return {"pos_dist": mean(dist, similar), "neg_dist": mean(dist, dissimilar),
                "neg_in_margin": mean((dist < self.margin).float(), dissimilar)}
