"""The shared shape of the paired (signal, text) objectives: CLAP, ConVIRT, SigLIP.

Each projects the signal embedding with ``x_head`` and the text embedding with
``text_head`` into one joint space, then scores the pairs. Split in two so that
evaluation (retrieval, zero-shot) and the gradient cache reuse the exact joint
space training used:

- ``represent(encoders, batch) -> {"x": (B, P), "text": (B, P)}``: per sample,
  no interaction between rows;
- ``loss_from(reps, batch) -> {"loss", ...}``: the in-batch loss over all rows.

With ``augment_x`` the signal side trains on ``batch["views"][:, 0]``, one view made by the
modality's views (``training.build.build_views`` builds them with ``n_views=1`` for a paired
objective), as ConVIRT augments its images; evaluation, which calls ``embed_x`` on batches
without views, sees x itself.
"""
from __future__ import annotations

import torch
from torch import nn

from objectives.parts import encode_batch


class PairedObjective(nn.Module):
    """Base of the objectives whose batches pair ``x`` with ``text``.

    Subclasses set ``self.x_head`` and ``self.text_head`` and define ``loss_from``.

    Args:
        augment_x: embed the batch's first view instead of x when the batch has views.
    """

    x_head: nn.Module
    text_head: nn.Module

    def __init__(self, augment_x: bool = False):
        super().__init__()
        self.augment_x = augment_x

    def project_x(self, embedding: torch.Tensor) -> torch.Tensor:
        """Joint-space signal embeddings (B, P) of the x encoder's embeddings (B, D)."""
        return self.x_head(embedding)

    def embed_x(self, encoders: dict, batch: dict) -> torch.Tensor:
        """Joint-space signal embeddings (B, P) of ``batch["x"]`` (with its mask, if any)."""
        return self.project_x(encode_batch(encoders["x"], batch)["embedding"])

    def embed_text(self, encoders: dict, texts: list[str]) -> torch.Tensor:
        """Joint-space text embeddings (B, P) of B strings."""
        return self.text_head(encoders["text"](texts)["embedding"])

    def represent(self, encoders: dict, batch: dict) -> dict:
        if self.augment_x and "views" in batch:
            batch = dict(batch, x=batch["views"][:, 0])
        return {"x": self.embed_x(encoders, batch), "text": self.embed_text(encoders, batch["text"])}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        raise NotImplementedError

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)
