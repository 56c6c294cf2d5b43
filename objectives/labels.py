"""Which objectives read labels, and whether they take multi-hot ones.

An objective that reads ``batch["label"]`` says how in its ``label_mode`` attribute (or
property, when it depends on the options): "multi" takes one class per item (B,) long and
multi-hot labels (B, K) alike, "single" one class per item only, None (the default for an
objective without the attribute) reads no labels, so it trains on multi-label data as on any
other. ``check_label_mode`` refuses multi-label data for a "single" objective before training.
"""
from __future__ import annotations

from core.errors import UserError

MULTI_LABEL_OBJECTIVES = ("supcon", "ce")  # label_mode "multi" with their default options (tests check it)


def label_mode(objective) -> str | None:
    """``objective.label_mode``: "multi", "single" or None (reads no labels)."""
    return getattr(objective, "label_mode", None)


def check_label_mode(objective, name: str, multi_label: bool) -> None:
    """Refuse multi-label data (``multi_label``) for an objective that reads one label per item.

    Raises:
        UserError: ``multi_label`` and ``label_mode(objective) == "single"``, naming ``name`` and
            the objectives that accept multi-label data.
    """
    if multi_label and label_mode(objective) == "single":
        raise UserError(
            f"objective '{name}' with these options uses one label per item, but the data is multi-label "
            f"(labels joined by '|'); objectives that use multi-label data: {', '.join(MULTI_LABEL_OBJECTIVES)} "
            "(supcon without decoupled=true or tiled=true), and every objective that reads no labels "
            "(dcl and contrastive with use_labels=false, moco with supervised=false)")
