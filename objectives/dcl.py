"""Debiased and hard-negative contrast: SimCLR's objective with the false-negative remedies."""
from __future__ import annotations

from core.registry import register
from objectives.functional import debiased_loss
from objectives.parts import pair_stats
from objectives.supcon import SupCon


@register("objective", "dcl", needs=("views", "embedding"))
class DebiasedContrast(SupCon):
    """Debiased (Chuang et al. 2020, arXiv 2007.00224) and hard-negative (Robinson et al. 2021,
    arXiv 2010.04592) contrastive learning.

    SimCLR's encoder, head and views (views 0 and 1), scored with ``functional.debiased_loss``:
    the negatives' sum is corrected for the positive-class prior ``tau_plus`` and reweighted
    toward hard negatives by ``beta``. ``tau_plus = 0, beta = 0`` is SimCLR exactly (same head,
    same initialization). ``use_labels``: rows sharing the anchor's label are left out of its
    negatives (the batch needs labels).

    Logs ``temperature``, ``tau_plus``, ``beta``, ``pos_sim``, ``neg_sim``, ``retrieval_acc``.

    Raises (in forward):
        ValueError: fewer than 2 views; ``use_labels`` and a batch without labels.
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, temperature: float = 0.5, tau_plus: float = 0.1,
                 beta: float = 1.0, use_labels: bool = False, head_batch_norm: bool = False):
        super().__init__(encoders, proj_dim, temperature, head_batch_norm)
        self.tau_plus, self.beta, self.use_labels = tau_plus, beta, use_labels

    @property
    def label_mode(self) -> str | None:
        """"single" with ``use_labels`` (one class per item), else None (``objectives.labels``)."""
        return "single" if self.use_labels else None

    def loss_from(self, reps: dict, batch: dict) -> dict:
        z = reps["z"][:, :2]
        if z.shape[1] < 2:
            raise ValueError(f"dcl needs at least 2 views per sample, got {z.shape[1]}")
        if self.use_labels and "label" not in batch:
            raise ValueError("dcl with use_labels=true needs labels, but the batch has no 'label' field; "
                             "use a labelled dataset or set objective.use_labels=false")
        labels = batch["label"] if self.use_labels else None
        loss = debiased_loss(z, self.temperature, self.tau_plus, self.beta, labels)
        return {"loss": loss, "temperature": self.temperature, "tau_plus": self.tau_plus, "beta": self.beta,
                **pair_stats(z[:, 0], z[:, 1])}
