"""Supervised cross-entropy baseline: a linear classifier on the embedding."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from objectives.parts import encode_batch
from core.registry import register


@register("objective", "ce", needs=("label", "embedding"))
class CrossEntropy(nn.Module):
    """Cross-entropy with a linear head: the supervised baseline of SupCon (Khosla et al. 2020).

    logits = Linear(D, n_classes)(encoder(batch["x"])["embedding"]) (B, n_classes), in float32.
    Class labels ``batch["label"]`` (B,) long: cross-entropy with ``label_smoothing``; logs
    ``acc``, the fraction of the batch whose arg-max class is the label. Multi-hot labels
    (B, n_classes): one logistic output per label, binary cross-entropy averaged over items and
    labels, targets smoothed to y (1 - s) + s / 2 by ``label_smoothing`` s; logs ``label_acc``,
    the fraction of (item, label) entries whose logit has the label's sign.

    Raises:
        ValueError: n_classes < 2.
    """

    label_mode = "multi"  # class labels or multi-hot ones (objectives.labels)

    def __init__(self, encoders: dict, n_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"the ce objective needs at least 2 classes, the dataset has {n_classes}")
        self.head = nn.Linear(encoders["x"].dims["embedding"], n_classes)
        self.label_smoothing = label_smoothing

    def forward(self, encoders: dict, batch: dict) -> dict:
        logits = self.head(encode_batch(encoders["x"], batch)["embedding"]).float()
        labels = batch["label"]
        if labels.dim() == 2:
            targets = labels.float() * (1 - self.label_smoothing) + self.label_smoothing / 2
            loss = F.binary_cross_entropy_with_logits(logits, targets)
            return {"loss": loss, "label_acc": ((logits.detach() > 0) == (labels > 0.5)).float().mean()}
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return {"loss": loss, "acc": (logits.detach().argmax(dim=1) == labels).float().mean()}
