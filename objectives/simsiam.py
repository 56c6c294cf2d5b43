"""SimSiam: two views, a predictor and a stop-gradient; no negatives, no momentum encoder."""
from __future__ import annotations

import torch
from torch import nn

from core.registry import register
from objectives.functional import simsiam_loss
from objectives.parts import encode_views, mlp, normalized_std, pair_stats


@register("objective", "simsiam", needs=("views", "embedding"))
class SimSiam(nn.Module):
    """SimSiam (Chen & He 2021, arXiv 2011.10566).

    Views 0 and 1 are encoded, projected (``proj_layers`` Linear-BN-ReLU blocks and a final
    Linear-BN without ReLU: the paper's 3-layer projector) and passed through the predictor
    (Linear-BN-ReLU-Linear, bottleneck ``pred_hidden``); the loss is
    ``functional.simsiam_loss``: D(p_1, sg(z_2)) / 2 + D(p_2, sg(z_1)) / 2.

    Logs ``output_std`` (``parts.normalized_std`` of z: near 1/sqrt(proj_dim) when healthy, 0
    at collapse), ``pos_sim``, ``neg_sim`` and ``retrieval_acc`` between the two projections.

    Raises (in forward):
        ValueError: fewer than 2 views.
    """

    def __init__(self, encoders: dict, proj_dim: int = 256, proj_layers: int = 3, pred_hidden: int = 64):
        super().__init__()
        dim = encoders["x"].dims["embedding"]
        # The output batch norm has no affine part (as the reference code): the predictor batch-normalizes
        # its input, so a shift or bias here would get no gradient.
        self.projector = nn.Sequential(mlp(dim, proj_dim, proj_dim, n_layers=proj_layers, batch_norm=True,
                                           last_bias=False), nn.BatchNorm1d(proj_dim, affine=False))
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim, n_layers=2, batch_norm=True)

    def forward(self, encoders: dict, batch: dict) -> dict:
        if batch["views"].shape[1] < 2:
            raise ValueError(f"simsiam needs at least 2 views per sample, got {batch['views'].shape[1]}")
        h = encode_views(encoders["x"], {**batch, "views": batch["views"][:, :2]})
        # Each view through the heads on its own, as the reference code: batch statistics per view.
        z = torch.stack([self.projector(h[:, 0]), self.projector(h[:, 1])], dim=1)
        p = torch.stack([self.predictor(z[:, 0]), self.predictor(z[:, 1])], dim=1)
        return {"loss": simsiam_loss(p, z), "output_std": normalized_std(z[:, 0]), **pair_stats(z[:, 0], z[:, 1])}
