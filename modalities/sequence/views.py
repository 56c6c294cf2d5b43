"""Batched random views of (B, C, T) series, on x's device, all randomness from one generator.

Each augmentation is applied to each (sample, view) independently with its
own probability and its own random parameters (Um et al. 2017; Iwana &
Uchida 2021): window crop, time warp, magnitude warp, scaling, channel
dropout, segment permutation, jitter. The random draws have shapes that
depend only on (B, V, C, T), so a sample's view depends only on that sample
and the generator state: a batch gives the same views as its samples would
at the same positions of the random stream, whatever the other samples hold.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import register
from modalities.crops import LocalCrops


def resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of x (N, C, T) at fractional step positions (N, T') -> (N, C, T')."""
    t = x.shape[-1]
    positions = positions.clamp(0, t - 1)
    left = positions.floor().long().clamp(max=t - 1)
    right = (left + 1).clamp(max=t - 1)
    frac = (positions - left.to(positions.dtype)).unsqueeze(1).to(x.dtype)
    idx_l = left.unsqueeze(1).expand(-1, x.shape[1], -1)
    idx_r = right.unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, idx_l) * (1 - frac) + torch.gather(x, 2, idx_r) * frac


def smooth_curves(knots: torch.Tensor, length: int) -> torch.Tensor:
    """Bicubic interpolation of knot values (N, R, K) along the last axis -> (N, R, length)."""
    n, r, _ = knots.shape
    return F.interpolate(knots.unsqueeze(1), size=(r, length), mode="bicubic", align_corners=True).squeeze(1)


@register("views", "sequence_views", modality="sequence", provides=("views",))
class SequenceViews(LocalCrops, nn.Module):
    """``n_views`` augmented copies of every series: (B, C, T) -> (B, V, C, T).

    Args (each ``*_p`` is the per-view probability of that augmentation):
        crop_p, crop_min: crop a window of a random fraction in [crop_min, 1] of T,
            resampled back to T steps.
        time_warp_p, time_warp_strength: resample along a smooth random monotone time map
            whose local speed is exp(strength * N(0, 1)) at ``warp_knots`` knots.
        magnitude_warp_p, magnitude_warp_std: multiply each channel by a smooth curve N(1, std) at the knots.
        scaling_p, scaling_std: multiply each channel by one factor N(1, std).
        channel_dropout_p, channel_drop_rate: zero each channel with ``channel_drop_rate``
            (never all channels of a series).
        permute_p, permute_segments: cut into equal segments and shuffle them.
        jitter_p, jitter_std: add Gaussian noise of ``jitter_std`` times the series' own std.
        local_views, local_scale: multi-crop (``modalities/crops.py``): ``local_crops(x, generator)`` makes
            ``local_views`` more views, each cut to a random window of ``local_scale`` of every extent.
    """

    def __init__(self, n_views: int = 2, crop_p: float = 0.5, crop_min: float = 0.6,
                 time_warp_p: float = 0.5, time_warp_strength: float = 0.3, warp_knots: int = 4,
                 magnitude_warp_p: float = 0.5, magnitude_warp_std: float = 0.2,
                 scaling_p: float = 0.5, scaling_std: float = 0.2,
                 channel_dropout_p: float = 0.2, channel_drop_rate: float = 0.3,
                 permute_p: float = 0.1, permute_segments: int = 4,
                 jitter_p: float = 0.8, jitter_std: float = 0.05,
                 local_views: int = 0, local_scale: float = 0.4):
        super().__init__()
        if n_views < 1 or not 0 < crop_min <= 1 or warp_knots < 2 or permute_segments < 1:
            raise ValueError("need n_views >= 1, 0 < crop_min <= 1, warp_knots >= 2 and permute_segments >= 1")
        probs = dict(crop_p=crop_p, time_warp_p=time_warp_p, magnitude_warp_p=magnitude_warp_p, scaling_p=scaling_p,
                     channel_dropout_p=channel_dropout_p, permute_p=permute_p, jitter_p=jitter_p,
                     channel_drop_rate=channel_drop_rate)
        bad = {k: v for k, v in probs.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"probabilities must lie in [0, 1], got {bad}")
        self.n_views, self.crop_min, self.knots, self.segments = n_views, crop_min, warp_knots, permute_segments
        self.p = probs
        self.time_warp_strength, self.magnitude_warp_std = time_warp_strength, magnitude_warp_std
        self.scaling_std, self.jitter_std = scaling_std, jitter_std
        self.init_local(local_views, local_scale)

    def forward(self, x: torch.Tensor, generator: torch.Generator, n_views: int | None = None) -> torch.Tensor:
        n_views = self.n_views if n_views is None else n_views  # local_crops asks for local_views
        if x.dim() != 3:
            raise ValueError(f"expected x of shape (B, C, T), got {tuple(x.shape)}")
        b, c, t = x.shape
        v = x.unsqueeze(1).expand(b, n_views, c, t).reshape(b * n_views, c, t)
        n, dev = v.shape[0], x.device

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=dev)

        def chosen(key):  # (N, 1, 1) bool: which views get augmentation ``key``
            return (rand(n) < self.p[key]).view(n, 1, 1)

        grid = torch.linspace(0, 1, t, device=dev)
        # window crop, resampled back to T
        on = chosen("crop_p")
        width = self.crop_min + (1 - self.crop_min) * rand(n, 1)
        start = (1 - width) * rand(n, 1)
        v = torch.where(on, resample(v, (start + width * grid) * (t - 1)), v)
        # time warp: cumulative smooth positive speed, rescaled to span [0, T-1]
        on = chosen("time_warp_p")
        speed = smooth_curves(torch.exp(self.time_warp_strength * randn(n, 1, self.knots)), t).squeeze(1)
        cum = torch.cumsum(speed.clamp_min(1e-3), dim=1)
        cum = (cum - cum[:, :1]) / (cum[:, -1:] - cum[:, :1]).clamp_min(1e-6)
        v = torch.where(on, resample(v, cum * (t - 1)), v)
        # magnitude warp and scaling
        on = chosen("magnitude_warp_p")
        curve = smooth_curves(1 + self.magnitude_warp_std * randn(n, c, self.knots), t)
        v = torch.where(on, v * curve, v)
        on = chosen("scaling_p")
        v = torch.where(on, v * (1 + self.scaling_std * randn(n, c, 1)), v)
        # channel dropout, keeping every series at least one channel
        on = chosen("channel_dropout_p")
        keep = rand(n, c, 1) >= self.p["channel_drop_rate"]
        keep = keep | ~keep.any(dim=1, keepdim=True)
        v = torch.where(on & ~keep, torch.zeros_like(v), v)
        # segment permutation (a tail of T mod segments steps stays in place)
        on = chosen("permute_p")
        seg = t // self.segments
        order = torch.argsort(rand(n, self.segments), dim=1)
        steps = torch.arange(t, device=dev)
        source = torch.where(steps < seg * self.segments,
                             order.gather(1, (steps // max(seg, 1)).clamp(max=self.segments - 1).expand(n, t)) * seg
                             + steps % max(seg, 1), steps)
        v = torch.where(on, torch.gather(v, 2, source.unsqueeze(1).expand(n, c, t)), v)
        # jitter relative to each series' own scale
        on = chosen("jitter_p")
        scale = v.std(dim=2, keepdim=True) if t > 1 else torch.ones_like(v[..., :1])
        v = torch.where(on, v + self.jitter_std * scale * randn(n, c, t), v)
        return v.reshape(b, n_views, c, t)
