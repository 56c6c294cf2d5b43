"""ConVIRT: asymmetric bidirectional contrastive objective between a signal and its report."""
from __future__ import annotations

from objectives.functional import convirt_loss
from objectives.parts import mlp, pair_stats
from objectives.paired import PairedObjective
from core.registry import register


@register("objective", "convirt", needs=("text", "embedding"))
class ConVIRT(PairedObjective):
    """ConVIRT (Zhang et al. 2020, arXiv 2010.00747).

    The signal embedding (``encoders["x"]``) and the text embedding
    (``encoders["text"](batch["text"])``, B strings) each go through a
    non-linear projection (Linear-ReLU-Linear, hidden = its input dim) to
    ``proj_dim`` and are scored with ``functional.convirt_loss``:
    lam * signal->text + (1 - lam) * text->signal, cosine / temperature.
    Both sides are trained: the reference code's text side under no_grad is
    not reproduced.

    Logs ``temperature``, ``pos_sim``, ``neg_sim`` and ``retrieval_acc``
    (signal -> text, this rank's batch).
    """

    def __init__(self, encoders: dict, augment_x: bool = False, proj_dim: int = 512, temperature: float = 0.1,
                 lam: float = 0.75, tiled: bool | None = None):
        super().__init__(augment_x)
        self.tiled = tiled
        x_dim, text_dim = encoders["x"].dims["embedding"], encoders["text"].dims["embedding"]
        self.x_head = mlp(x_dim, x_dim, proj_dim)
        self.text_head = mlp(text_dim, text_dim, proj_dim)
        self.temperature, self.lam = temperature, lam

    def loss_from(self, reps: dict, batch: dict) -> dict:
        a, b = reps["x"], reps["text"]
        loss = convirt_loss(a, b, self.temperature, self.lam, tiled=self.tiled)
        return {"loss": loss, "temperature": self.temperature, **pair_stats(a, b)}
