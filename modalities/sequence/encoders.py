"""Sequence encoders for (B, C, T) series with an optional (B, T) bool mask (True = real step).

Each returns {"embedding": (B, D), "sequence": (B, T', D_seq)}. Every
``sequence`` is causal (step t sees input steps <= t only), so CPC can predict
its future without the encoder leaking it, and norms act over channels, never
over time. The embedding is the mean of ``sequence`` over real steps, so
padded steps (mask False) do not change it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from modalities.layers import ChannelNorm
from core.registry import register


def check_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate x (B, C, T) and mask (B, T); returns the mask as bool.

    Raises:
        ValueError: x is not 3-D or the mask does not match its batch and length.
    """
    if x.dim() != 3:
        raise ValueError(f"expected x of shape (B, C, T), got {tuple(x.shape)}")
    if mask is None:
        return None
    if mask.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"mask must have shape (B, T) = {(x.shape[0], x.shape[2])}, got {tuple(mask.shape)}")
    return mask.bool()


def masked_mean(seq: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of seq (B, T, D) over steps where mask (B, T) is True -> (B, D)."""
    if mask is None:
        return seq.mean(dim=1)
    weight = mask.to(seq.dtype).unsqueeze(-1)
    return (seq * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


def pooled(seq: torch.Tensor, mask: torch.Tensor | None, pool: str) -> torch.Tensor:
    """seq (B, T, D) -> (B, D) over the steps where mask (B, T) is True: "mean", "max" (per
    channel), or "last" (the last real step: a causal encoder's context of the whole series).

    Raises:
        ValueError: an unknown ``pool``.
    """
    if pool == "mean":
        return masked_mean(seq, mask)
    if pool == "max":
        return seq.max(dim=1).values if mask is None else seq.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
    if pool == "last":
        if mask is None:
            return seq[:, -1]
        last = (mask.long() * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(1)
        return seq[torch.arange(len(seq), device=seq.device), last]
    raise ValueError(f"pool must be 'mean', 'max' or 'last', got '{pool}'")


def causal_standardize(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Standardize x (B, C, T) per series and channel with running statistics of steps <= t.

    Step t is (x_t - mean_{<=t}) / std_{<=t} over the real steps (mask True) so far,
    so the output stays causal; a series' amplitude and offset cannot tell it apart.
    Statistics are computed in float64 (the cumulative sums cancel); steps with no
    spread yet (the first one) map to 0.
    """
    xd = x.double()
    w = torch.ones_like(xd[:, :1]) if mask is None else mask.unsqueeze(1).to(xd.dtype)
    n = torch.cumsum(w, dim=-1).clamp_min(1.0)
    mean = torch.cumsum(xd * w, dim=-1) / n
    var = (torch.cumsum(xd.square() * w, dim=-1) / n - mean.square()).clamp_min(0.0)
    out = (xd - mean) / (var.sqrt() + 1e-6 * (mean.abs() + 1e-6))
    return (out * w).to(x.dtype)


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output t depends on inputs <= t. (B, Cin, T) -> (B, Cout, T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x):
        return super().forward(F.pad(x, (self.left, 0)))


class TemporalBlock(nn.Module):
    """Two dilated causal convolutions, each followed by ChannelNorm and GELU, plus a residual."""

    def __init__(self, in_channels: int, width: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            CausalConv1d(in_channels, width, kernel_size, dilation), ChannelNorm(width), nn.GELU(), nn.Dropout(dropout),
            CausalConv1d(width, width, kernel_size, dilation), ChannelNorm(width), nn.GELU(), nn.Dropout(dropout))
        self.skip = nn.Conv1d(in_channels, width, 1) if in_channels != width else nn.Identity()

    def forward(self, x):
        return self.net(x) + self.skip(x)


@register("encoder", "tcn", modality="sequence", outputs=("embedding", "sequence", "context"))
class TCN(nn.Module):
    """Temporal convolutional network (Bai et al. 2018): residual blocks of dilated causal convs.

    Dilations 1, 2, 4, ... over ``depth`` blocks; receptive field
    1 + 2 (kernel_size - 1)(2^depth - 1) steps (125 for the defaults).

    The first ``latent_depth`` blocks give local latents z ("sequence",
    receptive field 5 steps for the defaults); the remaining blocks turn them
    into a causal context c ("context"), as CPC's encoder/context split (van den
    Oord et al. 2018) without a recurrent network. The embedding pools c.

    ``normalize_input`` first standardizes each series and channel causally
    (running mean and std of steps <= t, see ``causal_standardize``), so gain,
    scale and offset of a channel do not reach the features.

    Input:  x (B, in_channels, T), mask (B, T) bool or None.
    Output: "sequence" z (B, T, width) and "context" c (B, T, width), each normalized over channels per step,
            "embedding" (B, width) c pooled over the real steps by ``pool`` (``pooled``: mean, max or last).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 5, kernel_size: int = 3,
                 dropout: float = 0.0, latent_depth: int = 1, normalize_input: bool = True, pool: str = "mean"):
        super().__init__()
        if not 1 <= latent_depth < depth:
            raise ValueError(f"need 1 <= latent_depth < depth, got latent_depth={latent_depth}, depth={depth}")
        if pool not in ("mean", "max", "last"):
            raise ValueError(f"pool must be 'mean', 'max' or 'last', got '{pool}'")
        self.normalize_input, self.pool = normalize_input, pool
        blocks = [TemporalBlock(in_channels if i == 0 else width, width, kernel_size, 2 ** i, dropout)
                  for i in range(depth)]
        self.latent_blocks = nn.Sequential(*blocks[:latent_depth])
        self.blocks = nn.Sequential(*blocks[latent_depth:])
        # The residual path carries the raw input scale; per-step norms bound the features. The
        # latents' norm has no affine parameters: objectives that ignore "sequence" leave none unused.
        self.norm = ChannelNorm(width)
        self.dims = {"embedding": width, "sequence": width, "context": width}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mask = check_mask(x, mask)
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)  # garbage in gaps between real steps is zeroed
        if self.normalize_input:
            x = causal_standardize(x, mask)
        h = self.latent_blocks(x)
        seq = F.layer_norm(rearrange(h, "b c t -> b t c"), (h.shape[1],))
        ctx = rearrange(self.norm(self.blocks(h)), "b c t -> b t c")
        return {"sequence": seq, "context": ctx, "embedding": pooled(ctx, mask, self.pool)}


@register("encoder", "gru", modality="sequence", outputs=("embedding", "sequence"))
class GRUEncoder(nn.Module):
    """A causal conv stem (kernel 5) with ChannelNorm and GELU, then a unidirectional GRU.

    Input:  x (B, in_channels, T), mask (B, T) bool or None.
    Output: "sequence" GRU states (B, T, hidden), "embedding" (B, hidden) their masked mean.

    ``dropout`` acts between GRU layers only (torch's GRU), so it needs ``layers`` >= 2.
    """

    enable_dropout = ("dropout=0.1", "layers=2")  # the settings that make it drop (objectives.simcse reads them)

    def __init__(self, in_channels: int = 1, hidden: int = 64, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(CausalConv1d(in_channels, hidden, 5), ChannelNorm(hidden), nn.GELU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dims = {"embedding": hidden, "sequence": hidden}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mask = check_mask(x, mask)
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)
        seq, _ = self.gru(rearrange(self.stem(x), "b c t -> b t c"))
        return {"sequence": seq, "embedding": masked_mean(seq, mask)}


def sinusoidal_positions(n: int, dim: int, device=None) -> torch.Tensor:
    """(n, dim) sine/cosine position codes (Vaswani et al. 2017)."""
    position = torch.arange(n, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(n, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x). attn_mask (B, 1, N, N) bool."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, attn_mask):
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


@register("encoder", "transformer", modality="sequence", outputs=("embedding", "sequence"))
class TransformerEncoder(nn.Module):
    """A small transformer over non-overlapping patches of ``patch_size`` steps (PatchTST-style tokens).

    The series is right-padded with zeros to a multiple of ``patch_size``; a
    patch is real when any of its steps is. With ``causal`` (default) token n
    attends to tokens <= n only, so ``sequence`` is safe for CPC.

    Input:  x (B, in_channels, T), mask (B, T) bool or None.
    Output: "sequence" (B, ceil(T / patch_size), dim), "embedding" (B, dim) masked mean over real patches.
    """

    def __init__(self, in_channels: int = 1, dim: int = 64, depth: int = 2, heads: int = 4, patch_size: int = 8,
                 mlp_ratio: int = 2, dropout: float = 0.0, causal: bool = True):
        super().__init__()
        if dim % heads or dim % 2:
            raise ValueError(f"dim ({dim}) must be even and divisible by heads ({heads})")
        self.patch_size, self.causal, self.dim = patch_size, causal, dim
        self.embed = nn.Linear(in_channels * patch_size, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.dims = {"embedding": dim, "sequence": dim}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mask = check_mask(x, mask)
        b, _, t = x.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        pad = -t % self.patch_size
        x = F.pad(x * mask.unsqueeze(1).to(x.dtype), (0, pad))
        tokens = self.embed(rearrange(x, "b c (n p) -> b n (p c)", p=self.patch_size))
        n = tokens.shape[1]
        tokens = tokens + sinusoidal_positions(n, self.dim, x.device).to(tokens.dtype)
        token_mask = rearrange(F.pad(mask, (0, pad)), "b (n p) -> b n p", p=self.patch_size).any(-1)
        allowed = token_mask[:, None, None, :].expand(b, 1, n, n)
        if self.causal:
            allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        # Every token may attend to itself, so a padded token's row is never empty (no NaN).
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=x.device)
        for block in self.blocks:
            tokens = block(tokens, allowed)
        seq = self.norm(tokens)
        return {"sequence": seq, "embedding": masked_mean(seq, token_mask)}
