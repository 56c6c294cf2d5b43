"""The non-contrastive losses: no negatives; collapse is prevented by variance and covariance
terms (VICReg), a predictor and a stop-gradient or momentum target (BYOL, SimSiam),
decorrelation (Barlow Twins) or centering and sharpening (DINO).

Each docstring gives the paper, the shapes, what is normalized and how the
result is reduced. Tests check each one against an independent formulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from objectives.distributed import gather_with_grad
from objectives.functional.contrastive import check_pairs


def vicreg_loss(a: torch.Tensor, b: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg (Bardes, Ponce & LeCun 2022), as in the authors' code.

    sim_weight * MSE(a, b)
    + var_weight * mean over both branches of mean_d max(0, 1 - sqrt(Var(x_d) + eps))
    + cov_weight * sum over both branches of sum_{d != e} C(x)_de^2 / D,
    with unbiased variance/covariance over the batch. Shapes: a, b (N, D),
    N >= 2, not normalized. Returns a float32 scalar.

    Raises:
        ValueError: shapes differ, not 2-D, or N < 2.
    """
    check_pairs(a, b, "vicreg_loss")
    if a.shape[0] < 2:
        raise ValueError("vicreg_loss needs at least 2 rows for the variance and covariance terms")
    a, b = a.float(), b.float()
    n, dim = a.shape
    invariance = F.mse_loss(a, b)
    variance = covariance = a.new_zeros(())
    off_diagonal = ~torch.eye(dim, dtype=torch.bool, device=a.device)
    for x in (a, b):
        x = x - x.mean(dim=0)
        variance = variance + F.relu(1 - torch.sqrt(x.var(dim=0) + eps)).mean() / 2
        cov = (x.T @ x) / (n - 1)
        covariance = covariance + cov[off_diagonal].pow(2).sum() / dim
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def _views_pair(predictions: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if predictions.dim() != 3 or predictions.shape[1] != 2 or predictions.shape != targets.shape:
        raise ValueError(f"{name}: expected predictions and targets of equal shape (B, 2, D), got "
                         f"{tuple(predictions.shape)} and {tuple(targets.shape)}")


def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL (Grill et al. 2020, eq. 2, symmetrized): mean over the batch of
    (2 - 2 cos(q_1, z'_2)) + (2 - 2 cos(q_2, z'_1)), the **sum** of the two directions.

    predictions: (B, 2, D) the online predictor's outputs q for view 1 and view 2;
    targets: (B, 2, D) the target network's projections z' (detached here: no gradient
    reaches the target). Normalized in float32. Returns a float32 scalar in [0, 8].

    Raises:
        ValueError: shapes other than two equal (B, 2, D).
    """
    _views_pair(predictions, targets, "byol_loss")
    q = F.normalize(predictions.float(), dim=-1)
    z = F.normalize(targets.detach().float(), dim=-1)
    return (2 - 2 * (q[:, 0] * z[:, 1]).sum(-1) + 2 - 2 * (q[:, 1] * z[:, 0]).sum(-1)).mean()


def simsiam_loss(predictions: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """SimSiam (Chen & He 2021, eq. 2 with eq. 3's stop-gradient):
    D(p_1, sg(z_2)) / 2 + D(p_2, sg(z_1)) / 2, D = negative cosine similarity, averaged over the batch.

    predictions: (B, 2, D) the predictor's outputs p; projections: (B, 2, D) the projector's
    outputs z (detached here). float32. Returns a scalar in [-1, 1]; -1 = every pair aligned.

    Raises:
        ValueError: shapes other than two equal (B, 2, D).
    """
    _views_pair(predictions, projections, "simsiam_loss")
    p = F.normalize(predictions.float(), dim=-1)
    z = F.normalize(projections.detach().float(), dim=-1)
    return -((p[:, 0] * z[:, 1]).sum(-1) + (p[:, 1] * z[:, 0]).sum(-1)).mean() / 2


def barlow_twins_loss(a: torch.Tensor, b: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1): sum_i (1 - C_ii)^2 + lambd sum_i sum_{j != i} C_ij^2.

    C = a_n^T b_n / N (D, D), where each column of a and b (N, D) is standardized over the batch
    (mean 0, biased variance 1 + eps in the denominator: batch norm without affine, as the
    reference code). Under torch.distributed the rows of every rank are gathered with gradient
    and every rank computes the loss of the global batch (statistics and C over all N rows), so
    the mean of the ranks' gradients is the one-process gradient. float32; returns a scalar.

    Raises:
        ValueError: shapes differ, not 2-D, or fewer than 2 rows in all.
    """
    check_pairs(a, b, "barlow_twins_loss")
    a, b = gather_with_grad(a.float()), gather_with_grad(b.float())
    n = a.shape[0]
    if n < 2:
        raise ValueError("barlow_twins_loss needs at least 2 rows to standardize over the batch")

    def standardize(x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)

    c = standardize(a).T @ standardize(b) / n
    on_diagonal = (1 - torch.diagonal(c)).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal
