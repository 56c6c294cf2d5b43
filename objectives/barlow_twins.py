"""Barlow Twins: the cross-correlation of two views' projections is pushed to the identity."""
from __future__ import annotations

from torch import nn

from core.registry import register
from objectives.functional import barlow_twins_loss
from objectives.parts import encode_views, mlp, normalized_std, pair_stats


@register("objective", "barlow_twins", needs=("views", "embedding"))
class BarlowTwins(nn.Module):
    """Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230).

    Views 0 and 1 are encoded and projected (``proj_layers`` - 1 Linear-BN-ReLU blocks and a
    final Linear, width ``proj_dim``); ``functional.barlow_twins_loss`` standardizes each
    projection dimension over the global batch (every rank's rows under torchrun) and pushes
    their cross-correlation to the identity, off-diagonal weight ``lambd``.

    Logs ``output_std`` (``parts.normalized_std`` of view 0's projections), ``pos_sim``,
    ``neg_sim``, ``retrieval_acc``.

    Raises (in forward):
        ValueError: fewer than 2 views, or fewer than 2 rows in the global batch.
    """

    def __init__(self, encoders: dict, proj_dim: int = 512, proj_layers: int = 3, lambd: float = 5e-3):
        super().__init__()
        dim = encoders["x"].dims["embedding"]
        self.projector = mlp(dim, proj_dim, proj_dim, n_layers=proj_layers, batch_norm=True)
        self.lambd = lambd

    def forward(self, encoders: dict, batch: dict) -> dict:
        if batch["views"].shape[1] < 2:
            raise ValueError(f"barlow_twins needs at least 2 views per sample, got {batch['views'].shape[1]}")
        h = encode_views(encoders["x"], {**batch, "views": batch["views"][:, :2]})
        a, b = self.projector(h[:, 0]), self.projector(h[:, 1])
        return {"loss": barlow_twins_loss(a, b, self.lambd), "output_std": normalized_std(a), **pair_stats(a, b)}
