"""SimCLR objective (NT-Xent over augmented views): SupCon without labels."""
from __future__ import annotations

from objectives.supcon import SupCon
from core.registry import register


@register("objective", "simclr", needs=("views", "embedding"))
class SimCLR(SupCon):
    """SimCLR (Chen et al. 2020, arXiv 2002.05709).

    The SupCon module with no labels: every view of ``batch["views"]``
    (B, V, ...) is encoded and projected by a two-layer MLP (hidden =
    embedding dim) to ``proj_dim``; a sample's other views are its only
    positives, every other row of the (gathered) batch a negative. That is
    NT-Xent, ``supcon_loss(z, None)`` = ``functional.nt_xent_loss(z)``.

    ``head_batch_norm`` puts a BatchNorm1d in the head's hidden layer
    (SimCLR's code uses it; off by default here since it leaves an encoder's
    final bias without gradient).

    ``decoupled`` / ``decoupled_weight_sigma``: DCL / DCLW (Yeh et al. 2022), NT-Xent without
    the positive in the denominator (see SupCon and ``functional.decoupled_loss``).

    Raises (in forward):
        ValueError: fewer than 2 views.
    """

    label_mode = None  # reads no labels (objectives.labels)

    def positives(self, batch: dict) -> None:
        return None
