"""SigLIP: pairwise sigmoid objective between a signal and its paired text."""
from __future__ import annotations

import math

import torch
from torch import nn

from objectives.functional import siglip_loss
from objectives.parts import mlp, pair_stats
from objectives.paired import PairedObjective
from core.registry import register

PROJECTIONS = {"linear": 1, "mlp": 2}


@register("objective", "siglip", needs=("text", "embedding"))
class SigLIP(PairedObjective):
    """SigLIP (Zhai et al. 2023, arXiv 2303.15343).

    The signal embedding (``encoders["x"]``) and the text embedding
    (``encoders["text"](batch["text"])``, B strings) are projected to
    ``proj_dim`` (``projection``: "linear" as in the paper, or "mlp",
    Linear-ReLU-Linear with hidden = ``proj_dim``) and scored with
    ``functional.siglip_loss`` at scale t = exp(t') and bias b, both learnt,
    initialized at ``init_logit_scale`` (10) and ``init_logit_bias`` (-10).

    Logs ``logit_scale``, ``logit_bias``, ``pos_sim``, ``neg_sim`` and
    ``retrieval_acc`` (signal -> text, this rank's batch).

    Raises:
        ValueError: ``projection`` is not "linear" or "mlp".
    """

    def __init__(self, encoders: dict, augment_x: bool = False, proj_dim: int = 256, projection: str = "linear",
                 init_logit_scale: float = 10.0, init_logit_bias: float = -10.0):
        super().__init__(augment_x)
        if projection not in PROJECTIONS:
            raise ValueError(f"siglip projection must be one of {sorted(PROJECTIONS)}, got '{projection}'")
        x_dim, text_dim = encoders["x"].dims["embedding"], encoders["text"].dims["embedding"]
        self.x_head = mlp(x_dim, proj_dim, proj_dim, n_layers=PROJECTIONS[projection])
        self.text_head = mlp(text_dim, proj_dim, proj_dim, n_layers=PROJECTIONS[projection])
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))

    def loss_from(self, reps: dict, batch: dict) -> dict:
        a, b = reps["x"], reps["text"]
        scale = self.log_logit_scale.exp()
        loss = siglip_loss(a, b, scale, self.logit_bias)
        return {"loss": loss, "logit_scale": scale.detach(), "logit_bias": self.logit_bias.detach(),
                **pair_stats(a, b)}
