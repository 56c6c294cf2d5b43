"""CPC objective: per-step linear predictors over an encoder's sequence output."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from objectives.functional import cpc_infonce
from objectives.parts import encode_batch
from core.registry import register


def steps_mask(mask: torch.Tensor | None, steps: int) -> torch.Tensor | None:
    """An input mask (B, T_in) brought to the encoder's ``steps``: a step is valid
    when any input sample it covers is (max-pooling; the identity when T_in == steps)."""
    if mask is None:
        return None
    if mask.shape[1] == steps:
        return mask.bool()
    return F.adaptive_max_pool1d(mask.float().unsqueeze(1), steps).squeeze(1) > 0


@register("objective", "cpc", needs=("sequence",))
class CPC(nn.Module):
    """Contrastive Predictive Coding (van den Oord et al. 2018).

    Predicts z_{t+k}, k = 1..K, from the context c_t with one linear map W_k
    per step, scored by InfoNCE against ``n_negatives`` latents drawn
    uniformly from every (sequence, time) of the batch. Uses the encoder's
    ``context`` output when it has one (the audio GRU); otherwise owns a GRU
    context network over ``sequence`` (e.g. rows of image patches).

    Logs ``cpc/acc_step{k}`` for every k and their mean ``cpc/acc``.
    """

    def __init__(self, encoders: dict, prediction_steps: int = 12, n_negatives: int = 128):
        super().__init__()
        dims = encoders["x"].dims
        seq_dim = dims["sequence"]
        ctx_dim = dims.get("context") or seq_dim
        self.own_context = nn.GRU(seq_dim, ctx_dim, batch_first=True) if not dims.get("context") else None
        self.weights = nn.Parameter(torch.randn(prediction_steps, seq_dim, ctx_dim) / ctx_dim ** 0.5)
        self.n_negatives = n_negatives

    def forward(self, encoders: dict, batch: dict) -> dict:
        out = encode_batch(encoders["x"], batch)
        latents = out["sequence"]
        context = out["context"] if self.own_context is None else self.own_context(latents)[0]
        b, t, _ = latents.shape
        if t <= self.weights.shape[0]:
            raise UserError(f"CPC predicts {self.weights.shape[0]} steps ahead but the encoder gives sequences of "
                            f"{t} steps; lower objective.prediction_steps or use longer inputs")
        valid = steps_mask(batch.get("mask"), t)
        if valid is None:
            negative_index = torch.randint(0, b * t, (b, self.n_negatives), device=latents.device)
        else:  # negatives only from real (unpadded) steps
            real = valid.flatten().nonzero().squeeze(1)
            negative_index = real[torch.randint(0, len(real), (b, self.n_negatives), device=latents.device)]
        loss, accuracy = cpc_infonce(context, latents, self.weights, negative_index, valid)
        logs = {f"cpc/acc_step{k + 1}": acc for k, acc in enumerate(accuracy)}
        return {"loss": loss, "cpc/acc": accuracy.mean(), **logs}
