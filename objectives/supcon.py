"""Supervised contrastive objective (SupCon)."""
from __future__ import annotations

from torch import nn

from objectives.functional import decoupled_loss, supcon_loss
from objectives.parts import mlp, pair_stats, project_views
from core.errors import UserError
from core.registry import register


@register("objective", "supcon", needs=("views", "label", "embedding"))
class SupCon(nn.Module):
    """Supervised Contrastive Learning (Khosla et al. 2020, arXiv 2004.11362).

    Every view of ``batch["views"]`` (B, V, ...) is encoded, projected by a
    two-layer MLP (hidden = embedding dim) to ``proj_dim`` and scored with
    ``functional.supcon_loss`` (L_out, positives = other rows with the same
    ``batch["label"]`` (B,), normalized, gathered across ranks). Multi-hot labels (B, K):
    positives = the sample's other views and every row sharing any label with it
    (``functional.multilabel_supcon_loss``, dense logits).

    ``head_batch_norm`` puts a BatchNorm1d in the head's hidden layer (SupContrast's
    head has none); the head sees (B * V, D) rows, so its statistics span every view.

    ``decoupled`` (Yeh et al. 2022, arXiv 2110.06848): the positives are removed from the
    denominator (``functional.decoupled_loss``, dense logits only); ``decoupled_weight_sigma``
    (None or 0: DCL; the paper's DCLW uses 0.5) weights the positive terms. With
    ``decoupled=False`` the loss is supcon_loss's, unchanged.

    Logs ``temperature`` and, between the first and last view of each sample,
    ``pos_sim``, ``neg_sim`` and ``retrieval_acc``.

    Raises:
        UserError: ``decoupled_weight_sigma`` without ``decoupled``, or ``decoupled`` with
            ``tiled=True``.
        ValueError (in forward): no anchor has a positive (with ``decoupled``, a positive and a
            negative).
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, temperature: float = 0.1,
                 head_batch_norm: bool = False, tiled: bool | None = None, decoupled: bool = False,
                 decoupled_weight_sigma: float | None = None):
        super().__init__()
        if decoupled_weight_sigma and not decoupled:
            raise UserError("decoupled_weight_sigma weights the decoupled loss: set objective.decoupled=true "
                             "or objective.decoupled_weight_sigma=null")
        if decoupled and tiled:
            raise UserError("the decoupled loss has no tiled path: set objective.tiled=null or false")
        self.tiled, self.decoupled, self.decoupled_weight_sigma = tiled, decoupled, decoupled_weight_sigma
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim, batch_norm=head_batch_norm)
        self.temperature = temperature

    @property
    def label_mode(self) -> str:
        """"multi": class labels or multi-hot ones; "single" with ``decoupled`` or ``tiled=True``
        (those paths take one class per item; ``objectives.labels``)."""
        return "single" if self.decoupled or self.tiled else "multi"

    def positives(self, batch: dict):
        """Labels (B,) or multi-hot (B, K) that define positives; SimCLR overrides this with None."""
        return batch["label"]

    def represent(self, encoders: dict, batch: dict) -> dict:
        """{"z": (B, V, proj_dim)}: every view encoded and projected, per sample."""
        return {"z": project_views(encoders["x"], self.head, batch)}

    def loss_from(self, reps: dict, batch: dict) -> dict:
        """The in-batch SupCon (or decoupled) loss over every row of ``reps["z"]`` (gathered across ranks)."""
        z = reps["z"]
        if self.decoupled:
            loss = decoupled_loss(z, self.positives(batch), self.temperature, self.decoupled_weight_sigma)
        else:
            loss = supcon_loss(z, self.positives(batch), self.temperature, tiled=self.tiled)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(z[:, 0], z[:, -1])}

    def forward(self, encoders: dict, batch: dict) -> dict:
        return self.loss_from(self.represent(encoders, batch), batch)
