"""Supervised contrastive objective (SupCon)."""
from __future__ import annotations

from einops import rearrange
from torch import nn

from objectives.functional import supcon_loss
from objectives.parts import encode_views, mlp, pair_stats
from core.registry import register


@register("objective", "supcon", needs=("views", "label", "embedding"))
class SupCon(nn.Module):
    """Supervised Contrastive Learning (Khosla et al. 2020, arXiv 2004.11362).

    Every view of ``batch["views"]`` (B, V, ...) is encoded, projected by a
    two-layer MLP (hidden = embedding dim) to ``proj_dim`` and scored with
    ``functional.supcon_loss`` (L_out, positives = other rows with the same
    ``batch["label"]`` (B,), normalized, gathered across ranks).

    ``head_batch_norm`` puts a BatchNorm1d in the head's hidden layer (SupContrast's
    head has none); the head sees (B * V, D) rows, so its statistics span every view.

    Logs ``temperature`` and, between the first and last view of each sample,
    ``pos_sim``, ``neg_sim`` and ``retrieval_acc``.

    Raises (in forward, from supcon_loss):
        ValueError: no anchor has a positive.
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, temperature: float = 0.1,
                 head_batch_norm: bool = False, tiled: bool | None = None):
        super().__init__()
        self.tiled = tiled
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim, batch_norm=head_batch_norm)
        self.temperature = temperature

    def positives(self, batch: dict):
        """Labels (B,) that define positives; SimCLR overrides this with None."""
        return batch["label"]

    def represent(self, encoders: dict, batch: dict) -> dict:
        """{"z": (B, V, proj_dim)}: every view encoded and projected, per sample."""
        embeddings = encode_views(encoders["x"], batch)  # (B, V, D)
        return {"z": rearrange(self.head(rearrange(embeddings, "b v d -> (b v) d")), "(b v) p -> b v p",
                               b=len(embeddings))}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        """The in-batch SupCon loss over every row of ``reps["z"]`` (gathered across ranks)."""
        z = reps["z"]
        loss = supcon_loss(z, self.positives(batch), self.temperature, tiled=self.tiled)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(z[:, 0], z[:, -1])}

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)
