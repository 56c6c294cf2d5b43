"""VICReg: variance-invariance-covariance regularization between two views."""
from __future__ import annotations

from torch import nn

from objectives.functional import vicreg_loss
from objectives.parts import encode_views, mlp, pair_stats
from core.registry import register


@register("objective", "vicreg", needs=("views", "embedding"))
class VICReg(nn.Module):
    """VICReg (Bardes, Ponce & LeCun 2022, arXiv 2105.04906).

    Views 0 and 1 of ``batch["views"]`` (B, V, ...) are encoded and passed
    through an expander of ``expander_layers`` layers of width
    ``expander_dim`` (Linear-BatchNorm-ReLU blocks, a final Linear without
    bias, as in the authors' code; the paper uses 8192 x 3) and scored with
    ``functional.vicreg_loss`` (weights sim/var/cov = 25/25/1). Further views
    are not encoded. Not gathered across ranks (the variance and covariance are
    this rank's batch statistics).

    Logs ``pos_sim``, ``neg_sim`` and ``retrieval_acc`` between the two
    expanded views.

    Raises (in forward):
        ValueError: fewer than 2 views, or a batch of one sample.
    """

    def __init__(self, encoders: dict, expander_dim: int = 256, expander_layers: int = 3,
                 sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0):
        super().__init__()
        dim = encoders["x"].dims["embedding"]
        self.expander = mlp(dim, expander_dim, expander_dim, n_layers=expander_layers, batch_norm=True,
                            last_bias=False)
        self.weights = {"sim_weight": sim_weight, "var_weight": var_weight, "cov_weight": cov_weight}

    def forward(self, encoders: dict, batch: dict) -> dict:
        if batch["views"].shape[1] < 2:
            raise ValueError(f"vicreg needs at least 2 views per sample, got {batch['views'].shape[1]}")
        z = encode_views(encoders["x"], {**batch, "views": batch["views"][:, :2]})
        a, b = self.expander(z[:, 0]), self.expander(z[:, 1])
        return {"loss": vicreg_loss(a, b, **self.weights), **pair_stats(a, b)}
