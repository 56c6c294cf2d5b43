"""The contrastive losses: InfoNCE in its forms (CPC, SupCon/NT-Xent, CLIP, ConVIRT, SimCSE), SigLIP's
sigmoid loss, the triplet and Siamese margin losses.

Each docstring gives the paper, the shapes, what is normalized and how the
result is reduced. Tests check each one against an independent formulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from objectives.distributed import gather_no_grad, gather_with_grad
from objectives.functional.multi_label import multilabel_supcon_loss
from objectives.tiled import diagonal_cross_entropy, supcon_rows, use_tiled
from core.process_group import rank, world_size


def cpc_infonce(context: torch.Tensor, latents: torch.Tensor, weights: torch.Tensor,
                negative_index: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CPC's InfoNCE over future steps (van den Oord et al. 2018, Eq. 4).

    For step k = 1..K and position t < T - k the score of a candidate z is
    z^T W_k c_t; the positive is z_{t+k} of the same sequence and the
    negatives are the latents at ``negative_index`` (flat indices into the
    B*T latents of the batch, so other time steps and other sequences),
    shared across positions of one sequence and across k. Scores are gathered
    per sequence, never as a (B, negatives, T, D) tensor.

    Args:
        context: (B, T, Dc) context vectors c_t.
        latents: (B, T, Dz) latent vectors z_t.
        weights: (K, Dz, Dc), the per-step linear predictors W_k (no bias).
        negative_index: (B, N) long, values in [0, B*T) (draw them from valid steps).
        valid: optional (B, T) bool, False on padding; a position (t, k) counts
            only when both t and t + k are valid.

    Returns:
        loss: scalar, cross-entropy averaged over (valid) positions and summed
            over k (as in CPC_audio); computed in float32.
        accuracy: (K,), per step the fraction of positions whose positive
            outscores every negative.

    Raises:
        ValueError: K >= T (no position has a k-step future).
    """
    batch, steps, _ = latents.shape
    n_pred = weights.shape[0]
    if n_pred >= steps:
        raise ValueError(f"CPC predicts {n_pred} steps ahead but sequences have only {steps} steps")
    context, latents, weights = context.float(), latents.float(), weights.float()
    negatives = latents.reshape(batch * steps, -1)[negative_index]  # (B, N, Dz)
    total, accuracy = latents.new_zeros(()), []
    for k in range(1, n_pred + 1):
        prediction = context[:, : steps - k] @ weights[k - 1].T  # (B, T-k, Dz)
        positive = (prediction * latents[:, k:]).sum(-1, keepdim=True)  # (B, T-k, 1)
        negative = torch.einsum("btd,bnd->btn", prediction, negatives)  # (B, T-k, N)
        logits = torch.cat([positive, negative], dim=-1)
        loss_k = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # (B, T-k)
        hit = (logits.argmax(dim=-1) == 0).float()
        if valid is None:
            total = total + loss_k.mean()
            accuracy.append(hit.mean())
        else:
            pairs = (valid[:, : steps - k] & valid[:, k:]).float()
            count = pairs.sum().clamp_min(1.0)
            total = total + (loss_k * pairs).sum() / count
            accuracy.append((hit * pairs).sum() / count)
    return total, torch.stack(accuracy).detach()


def _scale(logit_scale, device) -> torch.Tensor:
    return torch.as_tensor(logit_scale, device=device).float()


def supcon_loss(features: torch.Tensor, labels: torch.Tensor | None = None,
                temperature: float = 0.1, tiled: bool | None = None) -> torch.Tensor:
    """Supervised contrastive loss L_out (Khosla et al. 2020, Eq. 2).

    Every one of the B*V rows is an anchor. For anchor i the softmax runs over
    all other rows (every view, positives included, i itself excluded) and
    loss_i = -1/|P(i)| sum_{p in P(i)} log softmax_i(p), P(i) = the other rows
    with i's label. The loss is the mean of loss_i over anchors that have a
    positive; anchors without one are left out. No t / base_t factor.
    labels=None gives SimCLR's NT-Xent: a sample's other views are its only
    positives.

    Under torch.distributed the rows of all ranks are gathered (with gradient)
    and each rank scores its own anchors against all rows; the rank's loss is
    its anchors' sum times world_size / (anchors with a positive, all ranks),
    so the average over ranks, and DDP's averaged gradient, equal the
    one-process loss on the whole batch. Ranks must hold equal batch sizes.

    Args:
        features: (B, V, D) any float dtype; L2-normalized over D in float32.
        labels: (B,) integer classes, (B, K) multi-hot labels (positives: rows sharing any
            label, ``functional.multi_label.multilabel_supcon_loss``, dense only), or None.
        temperature: t; logits are cosine similarity / t.
        tiled: True: tiled log-sum-exp (O(N D) memory, see objectives.tiled);
            False: dense (N, N) logits; None: tiled when the gathered rows
            exceed objectives.tiled.TILE_THRESHOLD (multi-hot labels: always dense).

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: features not 3-D, labels not of shape (B,) or (B, K), tiled=True with
            multi-hot labels, or no anchor has a positive (e.g. V=1 with all labels distinct).
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (batch, views, dim), got shape {tuple(features.shape)}")
    if labels is not None and labels.dim() == 2:
        if tiled:
            raise ValueError("supcon_loss: the tiled path takes one class per row; multi-hot labels need tiled=False")
        return multilabel_supcon_loss(features, labels, temperature)
    batch, views, _ = features.shape
    if labels is None:
        ids = torch.arange(batch, device=features.device) + rank() * batch
    elif labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    else:
        ids = labels.long()
    z = rearrange(F.normalize(features.float(), dim=-1), "b v d -> (b v) d")
    ids = ids.repeat_interleave(views)
    z_all, ids_all = gather_with_grad(z), gather_no_grad(ids)
    _, class_all, counts = torch.unique(ids_all, return_inverse=True, return_counts=True)
    n_valid = int((counts[class_all] > 1).sum())
    if n_valid == 0:
        raise ValueError("supcon_loss: no anchor has a positive (every label occurs in a single row); "
                         "use V >= 2 views or labels shared by several samples")
    loss, _ = supcon_rows(z, z_all, ids, ids_all, rank() * z.shape[0], temperature,
                          use_tiled(tiled, z_all.shape[0]))
    return loss.sum() * world_size() / n_valid


def nt_xent_loss(features: torch.Tensor, temperature: float = 0.1, tiled: bool | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020): ``supcon_loss(features, None, temperature)``.

    features (B, V, D), usually V = 2: each row's positives are the other
    views of its sample; the denominator has the B*V - 1 other rows.
    """
    return supcon_loss(features, None, temperature, tiled)


def check_pairs(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{name}: expected two (N, D) tensors of equal shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, tiled: bool | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021), also CLAP's.

    Mean of CE(s A B^T, diag) and CE(s B A^T, diag), each averaged over rows.
    a, b: (N, D), row i of a pairs with row i of b; L2-normalized in float32.
    logit_scale: s, the multiplier (= 1 / temperature, exp of CLIP's learnt
    parameter; clamping it is the caller's job); float or tensor, gets a
    gradient if it is one. Under torch.distributed each rank scores its rows
    against the gathered rows of both sides (see supcon_loss). ``tiled`` as
    in supcon_loss. Returns a float32 scalar.

    Raises:
        ValueError: a and b not both (N, D) with equal shapes.
    """
    return _bidirectional_infonce(a, b, logit_scale, 0.5, tiled, "clip_loss")


def infonce_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05,
                 tiled: bool | None = None) -> torch.Tensor:
    """One-directional InfoNCE a -> b, SimCSE's loss (Gao et al. 2021, eq. 4).

    mean_i -log(exp(cos(a_i, b_i) / t) / sum_j exp(cos(a_i, b_j) / t)): row i of a against
    every row of b, its own pair the target; no a-a negatives. a, b: (N, D), L2-normalized in
    float32. Under torch.distributed b is gathered (with gradient) and each rank averages its
    own rows of a, so with equal batches the ranks' mean is the one-process loss. ``tiled`` as
    in supcon_loss. Returns a float32 scalar.

    Raises:
        ValueError: a and b not both (N, D) with equal shapes.
    """
    check_pairs(a, b, "infonce_loss")
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    b_all = gather_with_grad(b)
    return diagonal_cross_entropy(a / temperature, b_all, rank() * a.shape[0],
                                  use_tiled(tiled, b_all.shape[0])).mean()


def convirt_loss(image: torch.Tensor, text: torch.Tensor, temperature: float = 0.1, lam: float = 0.75,
                 tiled: bool | None = None) -> torch.Tensor:
    """ConVIRT's bidirectional loss (Zhang et al. 2020, Eqs. 2-4).

    mean_i [lam * l_i(image->text) + (1 - lam) * l_i(text->image)], where
    l_i is the cross-entropy of row i's cosine similarities / temperature
    against the other modality, target its own pair: only cross-modal
    negatives. lam = 0.5 and temperature = 1/s is clip_loss with scale s.
    image, text: (N, D), L2-normalized in float32. Distributed and ``tiled``
    as in supcon_loss. Returns a float32 scalar.

    Raises:
        ValueError: image and text not both (N, D) with equal shapes.
    """
    return _bidirectional_infonce(image, text, 1.0 / temperature, lam, tiled, "convirt_loss")


def _bidirectional_infonce(image, text, logit_scale, lam, tiled, name):
    check_pairs(image, text, name)
    scale = _scale(logit_scale, image.device)
    image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
    image_all, text_all = gather_with_grad(image), gather_with_grad(text)
    offset, dense_or_tiled = rank() * image.shape[0], use_tiled(tiled, image_all.shape[0])
    image_to_text = diagonal_cross_entropy(image * scale, text_all, offset, dense_or_tiled)
    text_to_image = diagonal_cross_entropy(text * scale, image_all, offset, dense_or_tiled)
    return (lam * image_to_text + (1 - lam) * text_to_image).mean()


def siglip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale, logit_bias, chunk: int = 4096) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023).

    -(1/N) sum_i sum_j log sigmoid(z_ij (s a_i . b_j + bias)), z_ij = +1 for
    i = j and -1 otherwise: a sum over all N^2 pairs divided by N. a, b:
    (N, D), L2-normalized in float32; logit_scale s and logit_bias: floats or
    tensors (they get gradients). Columns are processed ``chunk`` at a time,
    each chunk recomputed in backward (activation checkpointing), so memory
    is O(chunk * N). Under torch.distributed each rank takes its rows of a
    against the gathered b and divides by its own row count, so the average
    over ranks is the full-batch loss. Returns a float32 scalar.

    Raises:
        ValueError: a and b not both (N, D) with equal shapes.
    """
    check_pairs(a, b, "siglip_loss")
    scale, bias = _scale(logit_scale, a.device), _scale(logit_bias, a.device)
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    b_all = gather_with_grad(b)
    rows = torch.arange(a.shape[0], device=a.device) + rank() * a.shape[0]

    def chunk_loss(a, b_chunk, scale, bias, c0):
        logits = scale * (a @ b_chunk.T) + bias
        sign = (rows[:, None] == torch.arange(c0, c0 + b_chunk.shape[0], device=a.device)).float() * 2 - 1
        return -F.logsigmoid(sign * logits).sum()

    starts = range(0, b_all.shape[0], chunk)
    if len(starts) == 1:
        total = chunk_loss(a, b_all, scale, bias, 0)
    else:
        from torch.utils.checkpoint import checkpoint
        total = sum(checkpoint(chunk_loss, a, b_all[c0:c0 + chunk], scale, bias, c0, use_reentrant=False)
                    for c0 in starts)
    return total / a.shape[0]


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 0.2) -> torch.Tensor:
    """Triplet margin loss (Schroff et al. 2015, FaceNet) on normalized embeddings.

    mean_i max(0, d(a_i, p_i) - d(a_i, n_i) + margin) with d the Euclidean
    distance (not squared; FaceNet squares it) between L2-normalized rows, so
    d = sqrt(2 - 2 cos) lies in [0, 2] and the margin is in those units.
    Shapes: three (N, D) tensors. Returns a float32 scalar.

    Raises:
        ValueError: the three shapes differ or are not 2-D.
    """
    if anchor.dim() != 2 or not (anchor.shape == positive.shape == negative.shape):
        raise ValueError("triplet_loss: anchor, positive and negative must be (N, D) of equal shape")
    a, p, n = (F.normalize(x.float(), dim=-1) for x in (anchor, positive, negative))
    d_pos = torch.linalg.vector_norm(a - p, dim=-1)
    d_neg = torch.linalg.vector_norm(a - n, dim=-1)
    return F.relu(d_pos - d_neg + margin).mean()


def contrastive_pair_loss(x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor,
                          margin: float = 1.0) -> torch.Tensor:
    """Contrastive loss on pairs (Hadsell, Chopra & LeCun 2006, Eq. 4, without the 1/2).

    mean_i [y_i D_i^2 + (1 - y_i) max(0, margin - D_i)^2], D_i = ||x1_i - x2_i||_2,
    y_i = same_i (1 similar pair, 0 dissimilar). Embeddings are NOT
    normalized: the margin lives in the encoder's own scale.
    Shapes: x1, x2 (N, D); same (N,) bool or 0/1. Returns a float32 scalar.

    Raises:
        ValueError: x1, x2 shapes differ, or same is not (N,).
    """
    if x1.dim() != 2 or x1.shape != x2.shape or same.shape != x1.shape[:1]:
        raise ValueError("contrastive_pair_loss: x1, x2 must be (N, D) and same (N,)")
    y = same.float()
    dist = torch.linalg.vector_norm(x1.float() - x2.float(), dim=-1)
    return (y * dist.pow(2) + (1 - y) * F.relu(margin - dist).pow(2)).mean()
