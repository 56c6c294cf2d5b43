"""CLIP-style contrastive objective between a signal and its paired text (CLAP)."""
from __future__ import annotations

import math

import torch
from torch import nn

from objectives.functional import clip_loss
from objectives.parts import mlp, pair_stats
from objectives.paired import PairedObjective
from core.registry import register


@register("objective", "clap", needs=("text", "embedding"))
class CLAP(PairedObjective):
    """CLAP / CLIP symmetric InfoNCE (Elizalde et al. 2022; Wu et al. 2023; Radford et al. 2021).

    The signal embedding (from ``encoders["x"]``) and the caption embedding
    (``encoders["text"](batch["text"])``, B strings) each go through a
    two-layer projection (Linear-ReLU-Linear, hidden = ``proj_dim``) into a
    joint space of ``proj_dim`` and are scored with ``functional.clip_loss``
    at scale s = exp(theta). theta is learnt, starts at ln(init_logit_scale)
    and s is clamped at ``max_logit_scale`` in forward (CLIP caps it at 100;
    the clamp stops the gradient pushing theta further).

    Logs ``logit_scale`` (the clamped s), ``pos_sim``, ``neg_sim`` and
    ``retrieval_acc`` (signal -> text, this rank's batch).
    """

    def __init__(self, encoders: dict, augment_x: bool = False, proj_dim: int = 256, init_logit_scale: float = 1 / 0.07,
                 max_logit_scale: float = 100.0, tiled: bool | None = None):
        super().__init__(augment_x)
        self.tiled = tiled
        x_dim, text_dim = encoders["x"].dims["embedding"], encoders["text"].dims["embedding"]
        self.x_head = mlp(x_dim, proj_dim, proj_dim)
        self.text_head = mlp(text_dim, proj_dim, proj_dim)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.max_logit_scale = max_logit_scale

    def logit_scale(self) -> torch.Tensor:
        """s = exp(theta), at most ``max_logit_scale``."""
        return self.log_logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    def loss_from(self, reps: dict, batch: dict) -> dict:
        a, b = reps["x"], reps["text"]
        scale = self.logit_scale()
        return {"loss": clip_loss(a, b, scale, tiled=self.tiled), "logit_scale": scale.detach(), **pair_stats(a, b)}
