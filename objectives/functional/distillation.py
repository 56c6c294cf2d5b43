"""Self-distillation without labels: DINO (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", arXiv 2104.14294).

A student's distribution over K prototypes is trained to match a momentum teacher's. The
teacher's outputs are centered (``dino_center``: a running mean over the global batch) and
sharpened (a low temperature, warmed up by ``teacher_temperature``): centering alone drives
toward the uniform distribution, sharpening alone toward one-hot; together they avoid both
collapses (paper section 5.3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from objectives.distributed import sum_over_ranks


def teacher_temperature(step: int, warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.07,
                        warmup_steps: int = 0) -> float:
    """tau_t after ``step`` optimizer steps: linear from ``warmup_teacher_temp`` at step 0 to
    ``teacher_temp`` at ``warmup_steps``, constant after (the paper warms up over 30 epochs).

    Raises:
        ValueError: a temperature <= 0 or warmup_steps < 0.
    """
    if warmup_teacher_temp <= 0 or teacher_temp <= 0 or warmup_steps < 0:
        raise ValueError(f"teacher temperatures must be > 0 and warmup steps >= 0, got {warmup_teacher_temp}, "
                         f"{teacher_temp}, {warmup_steps}")
    if step >= warmup_steps:
        return teacher_temp
    return warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * max(step, 0) / warmup_steps


def teacher_probabilities(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """P_t = softmax((t - c) / tau_t) over the last axis, float32, detached. (..., K) -> (..., K)."""
    return F.softmax((teacher_logits.detach().float() - center.float()) / teacher_temp, dim=-1)


def dino_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO's cross-entropy over view pairs (paper eq. 3 and Algorithm 1), as the reference code.

    P_t = softmax((t - c) / teacher_temp), no gradient to the teacher; log P_s =
    log_softmax(s / student_temp). For every pair (teacher view i, student view v != i):
    the batch mean of -sum_k P_t[i, k] log P_s[v, k]; the loss is the mean over the pairs.

    Shapes: student_logits (B, Vs, K), teacher_logits (B, Vt, K), center (K,). The first Vt
    student views are the teacher's views in the same order (the global views), the rest the
    local views, which only the student sees. Computed in float32. Returns a scalar.

    Raises:
        ValueError: not 3-D, B or K differ, Vt < 1 or Vt > Vs, no pair (Vs < 2), a center not of
            shape (K,), or a temperature <= 0.
    """
    if student_logits.dim() != 3 or teacher_logits.dim() != 3:
        raise ValueError(f"dino_loss: expected (B, V, K) logits, got {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}")
    (b, n_student, k), (bt, n_teacher, kt) = student_logits.shape, teacher_logits.shape
    if (b, k) != (bt, kt) or not 1 <= n_teacher <= n_student or n_student < 2:
        raise ValueError(f"dino_loss: student (B, Vs, K) = {(b, n_student, k)} and teacher (B, Vt, K) = "
                         f"{(bt, n_teacher, kt)} need equal B and K, 1 <= Vt <= Vs and Vs >= 2")
    if center.shape != (k,):
        raise ValueError(f"dino_loss: center must have shape ({k},), got {tuple(center.shape)}")
    if student_temp <= 0 or teacher_temp <= 0:
        raise ValueError(f"dino_loss: temperatures must be > 0, got {student_temp} and {teacher_temp}")
    targets = teacher_probabilities(teacher_logits, center, teacher_temp)
    log_student = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    cross = -torch.einsum("bik,bvk->iv", targets, log_student) / b  # (Vt, Vs): batch mean per pair
    same_view = torch.eye(n_teacher, n_student, dtype=torch.bool, device=cross.device)
    return cross.masked_fill(same_view, 0.0).sum() / (n_teacher * n_student - n_teacher)


@torch.no_grad()
def dino_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """The center's update (paper eq. 4): m c + (1 - m) mean of the teacher's outputs.

    The mean is over every teacher view of every sample of the global batch: under
    torch.distributed the sums and row counts of all ranks are added (one all_reduce), so every
    rank gets the same center, whatever its share of the batch. Shapes: center (K,),
    teacher_logits (B, Vt, K). float32, no gradient; returns a new (K,) tensor.

    Raises:
        ValueError: teacher_logits not (B, Vt, K) with K = len(center), or momentum outside [0, 1].
    """
    if teacher_logits.dim() != 3 or center.shape != teacher_logits.shape[-1:]:
        raise ValueError(f"dino_center: expected teacher logits (B, Vt, {center.shape[-1]}), got "
                         f"{tuple(teacher_logits.shape)}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"dino_center: momentum must lie in [0, 1], got {momentum}")
    flat = teacher_logits.detach().float().flatten(0, 1)
    count = torch.tensor([float(len(flat))], device=flat.device)
    totals = sum_over_ranks(torch.cat([flat.sum(0), count]))
    return momentum * center.float() + (1 - momentum) * totals[:-1] / totals[-1]
