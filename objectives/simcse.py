"""Unsupervised SimCSE: the positive pair is one input encoded twice with independent dropout masks."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from core.errors import UserError
from core.registry import register
from objectives.functional import infonce_loss
from objectives.parts import encode_batch, pair_stats


def applies_dropout(module: nn.Module) -> bool:
    """Whether ``module`` drops anything in training mode.

    True when one of its submodules is a torch dropout layer with p > 0, a recurrent layer
    (nn.RNNBase) with dropout > 0 and more than one layer (torch drops only between layers), or
    declares functional dropout with a numeric attribute ``dropout`` > 0 (the sequence
    transformer's blocks pass it to scaled_dot_product_attention).
    """
    for sub in module.modules():
        if isinstance(sub, nn.modules.dropout._DropoutNd):
            if sub.p > 0:
                return True
        elif isinstance(sub, nn.RNNBase):
            if sub.dropout > 0 and sub.num_layers > 1:
                return True
        else:
            rate = getattr(sub, "dropout", None)
            if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
                return True
    return False


@register("objective", "simcse", needs=("embedding",))
class SimCSE(nn.Module):
    """Unsupervised SimCSE (Gao, Yao & Chen 2021, arXiv 2104.08821).

    ``batch["x"]`` (B, ...) is encoded twice in the mode the encoder is in, as one batch of 2B
    rows (as the authors' code does), so in training each copy gets its own dropout mask; the
    two embeddings of a sample are the positive pair and the other samples' second embeddings
    its negatives: ``functional.infonce_loss(h, h')`` (eq. 4: cosine / ``temperature``, 0.05 in
    the paper; h' gathered across ranks). ``head``: the paper's training-only pooler MLP, one
    Linear(D, D) + tanh on the embedding; evaluation reads the encoder's embedding, without it,
    as the paper does at test time. In eval mode (validation) the two passes are equal, so the
    validation loss measures how well in-batch samples are told apart, not a dropout task.

    ``encoder_name`` (filled in by training.build, not a config key) names the encoder in errors.

    Logs ``temperature`` and ``pos_sim``, ``neg_sim``, ``retrieval_acc`` between the two passes.

    Raises:
        UserError: the encoder applies no dropout (the two passes would be identical and the
            task trivial); the message names the key that enables it.
    """

    def __init__(self, encoders: dict, temperature: float = 0.05, head: bool = True,
                 encoder_name: str | None = None):
        super().__init__()
        encoder = encoders["x"]
        if not applies_dropout(encoder):
            name = encoder_name or "<encoder>"
            # An encoder may say which settings turn its dropout on (a GRU also needs 2+ layers).
            settings = getattr(encoder, "enable_dropout", ("dropout=0.1",))
            keys = " and ".join(f"model.{name}.{setting}" for setting in settings)
            raise UserError(f"simcse needs dropout in the encoder (its positive pair is one input encoded twice "
                            f"with independent dropout masks), but encoder '{name}' applies none; set {keys}")
        dim = encoder.dims["embedding"]
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh()) if head else nn.Identity()
        self.temperature = temperature

    def represent(self, encoders: dict, batch: dict) -> dict:
        """{"z": (B, 2, D)}: two passes of every sample (one batch of 2B rows), through the head."""
        x = batch["x"]
        masks = {"mask": torch.cat([batch["mask"], batch["mask"]])} if "mask" in batch else {}
        embedding = encode_batch(encoders["x"], masks, x=torch.cat([x, x]))["embedding"]
        return {"z": rearrange(self.head(embedding), "(v b) d -> b v d", v=2)}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        z = reps["z"]
        loss = infonce_loss(z[:, 0], z[:, 1], self.temperature)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(z[:, 0], z[:, 1])}

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)
