"""SimCLR objective (NT-Xent over augmented views)."""
from __future__ import annotations

from torch import nn

from objectives.functional import nt_xent_loss
from objectives.heads import encode_views, mlp, pair_stats
from registry import register


@register("objective", "simclr", needs=("views", "embedding"))
class SimCLR(nn.Module):
    """SimCLR (Chen et al. 2020, arXiv 2002.05709).

    Every view of ``batch["views"]`` (B, V, ...) is encoded, projected by a
    two-layer MLP (hidden = embedding dim) to ``proj_dim`` and scored with
    ``functional.nt_xent_loss``: a sample's other views are its positives,
    every other row of the (gathered) batch a negative.

    Logs ``temperature`` and, between the first and last view of each sample,
    ``pos_sim``, ``neg_sim`` and ``retrieval_acc``.

    Raises (in forward, from nt_xent_loss):
        ValueError: fewer than 2 views.
    """

    def __init__(self, encoders: dict, n_classes: int, proj_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim)
        self.temperature = temperature

    def forward(self, encoders: dict, batch: dict) -> dict:
        z = self.head(encode_views(encoders["x"], batch))  # (B, V, proj_dim)
        loss = nt_xent_loss(z, self.temperature)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(z[:, 0], z[:, -1])}
