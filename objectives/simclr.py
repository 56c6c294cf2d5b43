"""SimCLR objective (NT-Xent over augmented views)."""
from __future__ import annotations

from einops import rearrange
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

    ``head_batch_norm`` puts a BatchNorm1d in the head's hidden layer (SimCLR's code uses it; off by default, since it leaves an encoder's final bias without gradient); the
    head sees (B * V, D) rows, so its statistics span every view.

    Logs ``temperature`` and, between the first and last view of each sample,
    ``pos_sim``, ``neg_sim`` and ``retrieval_acc``.

    Raises (in forward, from nt_xent_loss):
        ValueError: fewer than 2 views.
    """

    def __init__(self, encoders: dict, n_classes: int, proj_dim: int = 128, temperature: float = 0.1,
                 head_batch_norm: bool = False):
        super().__init__()
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim, batch_norm=head_batch_norm)
        self.temperature = temperature

    def forward(self, encoders: dict, batch: dict) -> dict:
        embeddings = encode_views(encoders["x"], batch)  # (B, V, D)
        z = rearrange(self.head(rearrange(embeddings, "b v d -> (b v) d")), "(b v) p -> b v p", b=len(embeddings))
        loss = nt_xent_loss(z, self.temperature)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(z[:, 0], z[:, -1])}
