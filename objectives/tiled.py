"""Tiled InfoNCE pieces: log-sum-exp over columns without an M x N matrix.

``block_logsumexp(q, k)`` returns, per row of q, log sum_j exp(q_i . k_j)
(optionally skipping each row's own column). Forward walks over tiles of
``block_rows`` x ``block_cols`` keeping a running max and sum per row (the
online log-sum-exp); it saves only q, k and the (M,) result. Backward
recomputes each tile, turns it into softmax weights p_ij = exp(l_ij - lse_i)
and accumulates grad_q = (g p) k and grad_k = (g p)^T q. Peak memory is one
tile plus O((M + N) D), so it grows linearly with the batch (Inf-CL 2024 does
the same across GPUs).

Scales (1 / temperature, CLIP's logit scale) are applied to q before the call,
so their gradient is ordinary autograd.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Losses switch to the tiled path when tiled=None and the number of key rows
# (after gathering across ranks) exceeds this: at 4096 rows a dense float32
# similarity matrix is 64 MiB, and the dense losses keep several of them.
TILE_THRESHOLD = 4096
BLOCK_ROWS = 2048
BLOCK_COLS = 2048


def use_tiled(tiled: bool | None, n_rows: int) -> bool:
    """Resolve the ``tiled`` argument of a loss: explicit, or by TILE_THRESHOLD."""
    return n_rows > TILE_THRESHOLD if tiled is None else bool(tiled)


def _tile(q_blk, k, r0, c0, block_cols, self_offset, buffer):
    """Logits of one tile, with the anchors' own columns set to -inf.

    Written into ``buffer`` (reused across tiles: a fresh multi-MB tensor per
    tile costs page faults on every allocation).
    """
    k_blk = k[c0:c0 + block_cols]
    tile = buffer.view(-1)[: q_blk.shape[0] * k_blk.shape[0]].view(q_blk.shape[0], k_blk.shape[0])
    torch.mm(q_blk, k_blk.T, out=tile)
    if self_offset is not None:
        # Row r0 + i of q owns column self_offset + r0 + i of k.
        cols = torch.arange(tile.shape[0], device=tile.device) + (self_offset + r0 - c0)
        inside = (cols >= 0) & (cols < tile.shape[1])
        if inside.any():
            rows = torch.arange(tile.shape[0], device=tile.device)[inside]
            tile[rows, cols[inside]] = float("-inf")
    return tile, k_blk


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    # A row whose every column so far is excluded has max -inf; shifting by 0
    # instead keeps exp(-inf - 0) = 0 rather than exp(nan).
    return torch.where(torch.isinf(x), torch.zeros_like(x), x)


class _BlockLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, self_offset, block_rows, block_cols):
        lse = q.new_empty(q.shape[0])
        buffer = q.new_empty(min(block_rows, q.shape[0]) * min(block_cols, k.shape[0]))
        for r0 in range(0, q.shape[0], block_rows):
            q_blk = q[r0:r0 + block_rows]
            run_max = q.new_full((q_blk.shape[0],), float("-inf"))
            run_sum = q.new_zeros(q_blk.shape[0])
            for c0 in range(0, k.shape[0], block_cols):
                tile, _ = _tile(q_blk, k, r0, c0, block_cols, self_offset, buffer)
                new_max = torch.maximum(run_max, tile.amax(dim=1))
                shift = _finite_or_zero(new_max)
                run_sum = run_sum * torch.exp(run_max - shift) + tile.sub_(shift[:, None]).exp_().sum(dim=1)
                run_max = new_max
            lse[r0:r0 + block_rows] = _finite_or_zero(run_max) + run_sum.log()
        ctx.save_for_backward(q, k, lse)
        ctx.config = (self_offset, block_rows, block_cols)
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse):
        q, k, lse = ctx.saved_tensors
        self_offset, block_rows, block_cols = ctx.config
        grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
        lse = _finite_or_zero(lse)
        buffer = q.new_empty(min(block_rows, q.shape[0]) * min(block_cols, k.shape[0]))
        for r0 in range(0, q.shape[0], block_rows):
            q_blk = q[r0:r0 + block_rows]
            shift, g = lse[r0:r0 + block_rows, None], grad_lse[r0:r0 + block_rows, None]
            for c0 in range(0, k.shape[0], block_cols):
                tile, k_blk = _tile(q_blk, k, r0, c0, block_cols, self_offset, buffer)
                weights = tile.sub_(shift).exp_().mul_(g)  # g_i * softmax_ij
                grad_q[r0:r0 + block_rows].addmm_(weights, k_blk)
                grad_k[c0:c0 + block_cols].addmm_(weights.T, q_blk)
        return grad_q, grad_k, None, None, None


def block_logsumexp(q: torch.Tensor, k: torch.Tensor, self_offset: int | None = None,
                    block_rows: int | None = None, block_cols: int | None = None) -> torch.Tensor:
    """Per-row log sum_j exp(q_i . k_j), tiled, differentiable in q and k.

    Args:
        q: (M, D) anchors, already multiplied by the logit scale.
        k: (N, D) keys, same dtype and device.
        self_offset: if given, row i skips column ``self_offset + i`` (the
            anchor itself when q is a slice of k starting at that row).
        block_rows, block_cols: tile shape, default BLOCK_ROWS x BLOCK_COLS
            (read at call time); memory is O(block_rows * block_cols).

    Returns:
        (M,) log-sum-exp; -inf for a row whose only column was excluded.
    """
    return _BlockLogSumExp.apply(q, k, self_offset, block_rows or BLOCK_ROWS, block_cols or BLOCK_COLS)


def diagonal_cross_entropy(q: torch.Tensor, k: torch.Tensor, offset: int, tiled: bool) -> torch.Tensor:
    """Per-row cross-entropy of logits q k^T whose target for row i is column offset + i.

    Shapes: q (M, D) scaled anchors, k (N, D) keys with M <= N; returns (M,).
    The dense path builds the (M, N) logits; the tiled path never does.
    """
    target = torch.arange(q.shape[0], device=q.device) + offset
    if not tiled:
        return torch.nn.functional.cross_entropy(q @ k.T, target, reduction="none")
    positive = (q * k[offset:offset + q.shape[0]]).sum(dim=1)
    return block_logsumexp(q, k) - positive


def supcon_rows(z: torch.Tensor, z_all: torch.Tensor, ids: torch.Tensor, ids_all: torch.Tensor,
                offset: int, temperature: float, tiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """SupCon L_out terms of anchors z against all rows z_all (self excluded).

    Shapes: z (M, D) normalized anchors, equal to z_all[offset:offset + M];
    z_all (N, D); ids (M,), ids_all (N,) integer classes. Returns per-anchor
    loss (M,) (0 where there is no positive) and positive counts (M,).
    Dense: the (M, N) log-softmax and positive mask. Tiled: the tiled
    log-sum-exp, and the positive logits through per-class sums of keys,
    sum_{p in P(i)} z_i . z_p = z_i . (sum of class c_i - z_i): O(N D) memory.
    """
    rows = torch.arange(z.shape[0], device=z.device)
    if not tiled:
        logits = (z / temperature) @ z_all.T
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[rows, rows + offset] = True
        log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
        positive = (ids[:, None] == ids_all[None, :]) & ~self_mask
        count = positive.sum(dim=1)
        total = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        return -total / count.clamp(min=1), count
    lse = block_logsumexp(z / temperature, z_all, self_offset=offset)
    _, class_all = torch.unique(ids_all, return_inverse=True)
    class_sums = z_all.new_zeros(int(class_all.max()) + 1, z_all.shape[1]).index_add(0, class_all, z_all)
    class_local = class_all[offset:offset + z.shape[0]]
    count = torch.bincount(class_all)[class_local] - 1
    positive_logits = (z * (class_sums[class_local] - z)).sum(dim=1) / temperature
    loss = lse - positive_logits / count.clamp(min=1)
    return torch.where(count > 0, loss, torch.zeros_like(loss)), count
