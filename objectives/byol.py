"""BYOL: an online network with a predictor regresses a momentum target's projection of another view."""
from __future__ import annotations

import torch
from torch import nn

from core.registry import register
from objectives.functional import byol_loss
from objectives.momentum import ema_update, frozen_copy, momentum_at
from objectives.parts import encode_views, mlp, normalized_std, pair_stats


@register("objective", "byol", needs=("views", "embedding"))
class BYOL(nn.Module):
    """BYOL (Grill et al. 2020, arXiv 2006.07733).

    Online: encoder -> projector (Linear-BN-ReLU-Linear to ``proj_dim``) -> predictor (same
    shape). Target: frozen copies of the encoder and projector (``objectives.momentum``), moved
    toward the online ones after every step with tau rising from ``momentum`` to 1 (cosine
    schedule, ``momentum_schedule``). Loss: ``functional.byol_loss``, the sum of both directions
    of 2 - 2 cos(q(z_1), sg(z'_2)). The predictor sees only the online branch.

    Logs ``momentum`` (tau of the last update), ``output_std`` (``parts.normalized_std`` of the
    online projections; 0 at collapse), ``pos_sim``, ``neg_sim``, ``retrieval_acc`` (online
    prediction vs target projection).

    Raises (in forward):
        ValueError: fewer than 2 views.
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, hidden_dim: int = 512, momentum: float = 0.99,
                 momentum_schedule: str = "cosine"):
        super().__init__()
        momentum_at(momentum, 0, 1, momentum_schedule)  # a bad momentum or schedule fails here
        dim = encoders["x"].dims["embedding"]
        # No final bias: the predictor batch-normalizes the projection first, so it would get no gradient.
        self.projector = mlp(dim, hidden_dim, proj_dim, n_layers=2, batch_norm=True, last_bias=False)
        self.predictor = mlp(proj_dim, hidden_dim, proj_dim, n_layers=2, batch_norm=True)
        self.target_encoder = frozen_copy(encoders["x"])
        self.target_projector = frozen_copy(self.projector)
        self.momentum, self.momentum_schedule = momentum, momentum_schedule
        self.register_buffer("last_momentum", torch.tensor(float(momentum)))

    def forward(self, encoders: dict, batch: dict) -> dict:
        if batch["views"].shape[1] < 2:
            raise ValueError(f"byol needs at least 2 views per sample, got {batch['views'].shape[1]}")
        two = {**batch, "views": batch["views"][:, :2]}
        # Each view through the heads on its own, as the reference code: batch statistics per view.
        h = encode_views(encoders["x"], two)
        z = [self.projector(h[:, v]) for v in (0, 1)]
        q = torch.stack([self.predictor(z[v]) for v in (0, 1)], dim=1)
        with torch.no_grad():
            h_target = encode_views(self.target_encoder, two)
            target = torch.stack([self.target_projector(h_target[:, v]) for v in (0, 1)], dim=1)
        return {"loss": byol_loss(q, target), "momentum": self.last_momentum.clone(),
                "output_std": normalized_std(z[0]), **pair_stats(q[:, 0], target[:, 1])}

    def on_step_end(self, encoders: dict, step: int, total_steps: int) -> None:
        """Momentum update of the target encoder and projector after optimizer step ``step``."""
        momentum = momentum_at(self.momentum, step, total_steps, self.momentum_schedule)
        ema_update(self.target_encoder, encoders["x"], momentum)
        ema_update(self.target_projector, self.projector, momentum)
        self.last_momentum.fill_(momentum)
