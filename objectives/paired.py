"""The shared shape of the paired (signal, text) objectives: CLAP, ConVIRT, SigLIP.

Each projects the signal embedding with ``x_head`` and the text embedding with
``text_head`` into one joint space, then scores the pairs. Split in two so that
evaluation (retrieval, zero-shot) and the gradient cache reuse the exact joint
space training used:

- ``represent(encoders, batch) -> {"x": (B, P), "text": (B, P)}``: per sample,
  no interaction between rows;
- ``loss_from(reps, batch) -> {"loss", ...}``: the in-batch loss over all rows.
"""
from __future__ import annotations

import torch
from torch import nn

from objectives.parts import encode_batch


class PairedObjective(nn.Module):
    """Base of the objectives whose batches pair ``x`` with ``text``.

    Subclasses set ``self.x_head`` and ``self.text_head`` and define ``loss_from``.
    """

    x_head: nn.Module
    text_head: nn.Module

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
        return {"x": self.embed_x(encoders, batch), "text": self.embed_text(encoders, batch["text"])}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        raise NotImplementedError

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)
