"""TS2Vec's encoder (Yue et al. 2022, AAAI, arXiv 2106.10466): timestamp masking and dilated convolutions.

Unlike the encoders of ``encoders.py`` its ``sequence`` is not causal: the convolutions are
'same'-padded, so step t sees the steps after it too. That is the paper's design (its views
and losses need no causality); CPC on this encoder would predict a future it already sees,
so train CPC with ``tcn``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core.registry import register
from modalities.sequence.encoders import check_mask


class SamePadConv(nn.Conv1d):
    """Conv1d whose output has the input's length, padded on both sides (TS2Vec's SamePadConv).

    (B, Cin, T) -> (B, Cout, T); an even receptive field drops its last output step, as the reference."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        field = (kernel_size - 1) * dilation + 1
        super().__init__(in_channels, out_channels, kernel_size, padding=field // 2, dilation=dilation)
        self.remove = 1 - field % 2

    def forward(self, x):
        out = super().forward(x)
        return out[..., : out.shape[-1] - self.remove]


class DilatedBlock(nn.Module):
    """GELU -> dilated conv -> GELU -> dilated conv, plus the residual (TS2Vec's ConvBlock).

    The residual goes through a 1x1 convolution when the channels change or on the final
    block. ``keep`` (B, 1, T) zeroes padded steps after every convolution, so that they act as
    the convolution's zero padding: a series padded at its end gives the outputs it gives alone.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, final: bool):
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, 3, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, 3, dilation)
        self.project = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels or final else None

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        residual = x if self.project is None else self.project(x)
        h = self.conv1(F.gelu(x))
        h = h if keep is None else h * keep
        out = self.conv2(F.gelu(h)) + residual
        return out if keep is None else out * keep


def masked_max(seq: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Max of seq (B, T, D) over steps where mask (B, T) is True -> (B, D); 0 for a series without one."""
    if mask is None:
        return seq.amax(dim=1)
    pooled = seq.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    return torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))


@register("encoder", "ts2vec", modality="sequence", outputs=("embedding", "sequence"))
class TS2VecEncoder(nn.Module):
    """TS2Vec's encoder (Yue et al. 2022, Sec. 3.2; the reference code's TSEncoder).

    Per-timestamp Linear(in_channels, hidden) -> timestamp masking (in training only, each step's
    latent vector zeroed with probability ``mask_p``; the paper's binomial mask, p = 0.5) ->
    ``depth`` residual blocks of two dilated 'same'-padded convolutions (kernel 3, dilation 2^l,
    GELU before each) at ``hidden`` channels, then one final block (dilation 2^depth) to
    ``out_dim``, as the reference's ``[hidden] * depth + [out_dim]`` -> dropout ``dropout`` on
    the representation (the reference's repr_dropout, 0.1). Receptive field 1 + 4 (2^(depth+1) - 1)
    steps (509 at depth 6).

    Defaults are scaled down for CPU runs from the paper's hidden 64, out_dim 320, depth 10: on
    32 series of 128 steps a forward and backward take ~1.5x the default ``tcn``'s (paper sizes
    hidden 64 and depth 10, with out_dim 128: ~5x).

    A padding ``mask`` (B, T) (True = real step) zeroes padded steps after the projection and
    after every convolution (the reference zeroes its missing steps at the input only), and they
    are left out of the max-pool.

    Input:  x (B, in_channels, T), mask (B, T) bool or None.
    Output: "sequence" (B, T, out_dim) at the input's time resolution (0 at padded steps);
            "embedding" (B, out_dim), its max over real steps (the paper's instance representation).

    Raises:
        ValueError: depth < 0, mask_p outside [0, 1); in forward, what ``check_mask`` raises.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 32, out_dim: int = 128, depth: int = 6,
                 mask_p: float = 0.5, dropout: float = 0.1):
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if not 0.0 <= mask_p < 1.0:
            raise ValueError(f"mask_p must be in [0, 1), got {mask_p}")
        self.mask_p = mask_p
        self.input_fc = nn.Linear(in_channels, hidden)
        widths = [hidden] * depth + [out_dim]
        self.blocks = nn.ModuleList([DilatedBlock(hidden if i == 0 else widths[i - 1], width, 2 ** i,
                                                  final=i == len(widths) - 1) for i, width in enumerate(widths)])
        self.dropout = nn.Dropout(dropout)
        self.dims = {"embedding": out_dim, "sequence": out_dim}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mask = check_mask(x, mask)
        h = self.input_fc(rearrange(x, "b c t -> b t c"))
        keep = mask
        if self.training and self.mask_p > 0:
            drawn = torch.rand(h.shape[:2], device=h.device) >= self.mask_p
            keep = drawn if keep is None else keep & drawn
        if keep is not None:
            h = h * keep.unsqueeze(-1).to(h.dtype)
        h = rearrange(h, "b t c -> b c t")
        pad = None if mask is None else mask.unsqueeze(1).to(h.dtype)
        for block in self.blocks:
            h = block(h, pad)
        seq = self.dropout(rearrange(h, "b c t -> b t c"))
        return {"sequence": seq, "embedding": masked_max(seq, mask)}
