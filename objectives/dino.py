"""DINO: a student matches a momentum teacher's centered, sharpened distribution over prototypes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import register
from objectives.functional import dino_center, dino_loss, teacher_probabilities, teacher_temperature
from objectives.momentum import ema_update, frozen_copy, momentum_at
from objectives.parts import encode_views, mlp, normalized_std


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, section 3.1 and the reference ``DINOHead``).

    Linear-GELU-Linear-GELU-Linear to ``bottleneck_dim`` (with ``batch_norm``, a BatchNorm1d after
    each hidden Linear: the reference's ``use_bn``), L2 normalization, then a
    weight-normalized linear layer without bias to ``out_dim`` whose weight norm is fixed to 1
    (the reference's ``norm_last_layer=True``): each logit is the cosine of the bottleneck with a
    prototype row, in [-1, 1]. Linear weights start from a truncated normal of std 0.02, as the
    reference. Shapes: (..., in_dim) -> bottleneck (..., bottleneck_dim) (before normalization),
    logits (..., out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, batch_norm: bool = False):
        super().__init__()
        self.mlp = mlp(in_dim, hidden_dim, bottleneck_dim, n_layers=3, batch_norm=batch_norm, activation=nn.GELU)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.kaiming_uniform_(self.prototypes, a=math.sqrt(5))  # nn.Linear's default, as the reference's

    def forward(self, h: torch.Tensor, freeze_prototypes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        bottleneck = self.mlp(h.flatten(0, -2)).unflatten(0, h.shape[:-1])  # BatchNorm1d takes (N, D) only
        # Frozen: no gradient reaches the prototypes, so the optimizer skips them (the reference
        # sets their gradient to None in its first epoch).
        weight = self.prototypes.detach() if freeze_prototypes else self.prototypes
        return bottleneck, F.linear(F.normalize(bottleneck, dim=-1), F.normalize(weight, dim=-1))


@register("objective", "dino", needs=("views", "embedding"))
class DINO(nn.Module):
    """DINO (Caron et al. 2021, arXiv 2104.14294): self-distillation with no labels.

    Student: the encoder + ``DINOHead``. Teacher: frozen copies of both (``objectives.momentum``),
    moved toward the student after every step with tau rising from ``momentum`` to 1 (cosine).
    The teacher sees the global views ``batch["views"]`` (B, V, ...), V >= 2; the student sees
    them and, when the batch has them, the local views ``batch["local_views"]`` (B, L, ...smaller:
    multi-crop, ``modalities/crops.py``), encoded in a call of their own. Loss:
    ``functional.dino_loss`` with the teacher's temperature warmed up linearly from
    ``warmup_teacher_temp`` to ``teacher_temp`` over ``warmup_teacher_temp_steps``. After each
    training forward the center moves toward the global batch's mean teacher output
    (``functional.dino_center``, momentum ``center_momentum``). For the first
    ``freeze_last_layer_steps`` steps the prototypes take no gradient (the paper: epoch 1).

    Logs ``teacher_temp``, ``momentum`` (tau of the last update), ``output_std``
    (``parts.normalized_std`` of the student's bottleneck of global view 1; 0 at collapse),
    ``teacher_entropy`` (mean entropy of the teacher's per-sample distributions, nats: log K
    at uniform collapse, 0 when one-hot), ``teacher_marginal_entropy`` (entropy of their batch
    mean: 0 when every sample picks the same prototype) and ``center_norm``.

    Raises (in forward):
        ValueError: fewer than 2 global views, or local views in a batch with a padding mask.
    """

    def __init__(self, encoders: dict, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_steps: int = 30, center_momentum: float = 0.9, momentum: float = 0.99,
                 momentum_schedule: str = "cosine", freeze_last_layer_steps: int = 0, head_batch_norm: bool = True):
        super().__init__()
        momentum_at(momentum, 0, 1, momentum_schedule)  # bad settings fail here, not at step 1
        teacher_temperature(0, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_steps)
        if student_temp <= 0 or not 0 <= center_momentum <= 1 or freeze_last_layer_steps < 0:
            raise ValueError(f"need student_temp > 0, 0 <= center_momentum <= 1 and freeze_last_layer_steps >= 0, "
                             f"got {student_temp}, {center_momentum}, {freeze_last_layer_steps}")
        self.head = DINOHead(encoders["x"].dims["embedding"], hidden_dim, bottleneck_dim, out_dim, head_batch_norm)
        self.teacher_encoder = frozen_copy(encoders["x"])
        self.teacher_head = frozen_copy(self.head)
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.temps = (warmup_teacher_temp, teacher_temp, warmup_teacher_temp_steps)
        self.momentum, self.momentum_schedule = momentum, momentum_schedule
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("last_momentum", torch.tensor(float(momentum)))
        self.register_buffer("steps_done", torch.tensor(0))  # in the checkpoint: the schedules resume

    def forward(self, encoders: dict, batch: dict) -> dict:
        if batch["views"].shape[1] < 2:
            raise ValueError(f"dino needs at least 2 global views per sample, got {batch['views'].shape[1]}")
        h = encode_views(encoders["x"], batch)  # (B, V, D)
        if "local_views" in batch:
            if "mask" in batch:
                raise ValueError("dino: local views of a padded batch (with a mask) are not supported")
            h = torch.cat([h, encode_views(encoders["x"], {"views": batch["local_views"]})], dim=1)
        steps = int(self.steps_done)
        bottleneck, student = self.head(h, freeze_prototypes=self.training and steps < self.freeze_last_layer_steps)
        with torch.no_grad():
            _, teacher = self.teacher_head(encode_views(self.teacher_encoder, batch))
        temp = teacher_temperature(steps, *self.temps)
        loss = dino_loss(student, teacher, self.center, self.student_temp, temp)
        stats = teacher_stats(teacher_probabilities(teacher, self.center, temp))
        if self.training:
            self.center.copy_(dino_center(self.center, teacher, self.center_momentum))
        return {"loss": loss, "teacher_temp": loss.new_tensor(temp), "momentum": self.last_momentum.clone(),
                "output_std": normalized_std(bottleneck[:, 0]), **stats, "center_norm": self.center.norm()}

    def on_step_end(self, encoders: dict, step: int, total_steps: int) -> None:
        """Momentum update of the teacher encoder and head after optimizer step ``step``."""
        momentum = momentum_at(self.momentum, step, total_steps, self.momentum_schedule)
        ema_update(self.teacher_encoder, encoders["x"], momentum)
        ema_update(self.teacher_head, self.head, momentum)
        self.last_momentum.fill_(momentum)
        self.steps_done.fill_(step)


@torch.no_grad()
def teacher_stats(probabilities: torch.Tensor) -> dict:
    """Collapse monitors of the teacher's distributions P (B, V, K) (paper Fig. 7, section 5.3)."""
    marginal = probabilities.flatten(0, -2).mean(0)
    return {"teacher_entropy": torch.special.entr(probabilities).sum(-1).mean(),
            "teacher_marginal_entropy": torch.special.entr(marginal).sum()}
