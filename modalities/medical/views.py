"""Batched random views of (B, C, H, W) images or (B, C, D, H, W) volumes, on x's device.

MONAI's array transforms act on one sample at a time and draw from NumPy's
RNG; these are batched torch equivalents that draw every parameter from the
caller's ``torch.Generator``, so a training step's views are reproducible and
run on the GPU. Each (sample, view) gets its own parameters. What each
mirrors:

* random resized crop: ``RandSpatialCrop(random_size=True)`` + ``Resize`` back
  to the input size (torchvision's RandomResizedCrop, SimCLR's main view);
* random affine: ``RandAffine`` (rotate_range, scale_range, translate_range);
* horizontal flip: ``RandFlip(spatial_axis=-1)`` (width only: anatomy is never upside down);
* intensity: ``RandScaleIntensity`` then ``RandShiftIntensity``;
* noise: ``RandGaussianNoise(sample_std=True)``;
* gamma: ``RandAdjustContrast`` (off by default): each view's intensities, rescaled to [0, 1]
  between its own minimum and maximum, raised to a log-uniform gamma in [1/gamma_max, gamma_max].

Crop, affine and flip compose into one sampling grid, so each view is
resampled once (bilinear, zeros outside). The random draws have shapes that
depend only on the batch shape, so a sample's views depend only on it and the
generator state.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import register
from modalities.crops import LocalCrops


def _matrix(rows) -> torch.Tensor:
    """Nested lists of (N,) tensors -> (N, R, C)."""
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def rotations(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from angles in radians: (N, 1) -> (N, 2, 2); (N, 3) about axes 0, 1, 2 -> (N, 3, 3)."""
    cos, sin = angles.cos().unbind(1), angles.sin().unbind(1)
    if angles.shape[1] == 1:
        return _matrix([[cos[0], -sin[0]], [sin[0], cos[0]]])
    one, zero = torch.ones_like(cos[0]), torch.zeros_like(cos[0])
    r0 = _matrix([[one, zero, zero], [zero, cos[0], -sin[0]], [zero, sin[0], cos[0]]])
    r1 = _matrix([[cos[1], zero, sin[1]], [zero, one, zero], [-sin[1], zero, cos[1]]])
    r2 = _matrix([[cos[2], -sin[2], zero], [sin[2], cos[2], zero], [zero, zero, one]])
    return r2 @ r1 @ r0


@register("views", "medical_views", modality="medical", provides=("views",))
class MedicalViews(LocalCrops, nn.Module):
    """``n_views`` augmented copies: (B, C, H, W) -> (B, V, C, H, W), or 3D (B, C, D, H, W) -> (B, V, C, D, H, W).

    Args (each ``*_p`` is the per-view probability of that augmentation):
        crop_p, crop_min_area, crop_max_aspect: crop a box of a random fraction in
            [crop_min_area, 1] of the area (volume), aspect ratio within 1/max..max, resized back.
        affine_p, rotate_deg, scale, translate: rotate by up to ``rotate_deg`` degrees (about every
            axis in 3D), scale each axis by a factor in [1 - scale, 1 + scale], shift each axis by up
            to ``translate`` of the image's extent.
        flip_p: mirror left-right.
        intensity_p, intensity_scale, intensity_shift: x * (1 + U(-scale, scale)) + U(-shift, shift).
        noise_p, noise_std: add N(0, sigma^2) noise, sigma ~ U(0, noise_std) per view.
        gamma_p, gamma_max: contrast curve, last: (x - min) / (max - min) to the power g, g
            log-uniform in [1/gamma_max, gamma_max], mapped back to [min, max]; its random numbers
            are drawn only when gamma_p > 0, so the other augmentations do not change with it off.
        local_views, local_scale: multi-crop (``modalities/crops.py``): ``local_crops(x, generator)`` makes
            ``local_views`` more views, each cut to a random window of ``local_scale`` of every extent.

    Raises:
        ValueError: n_views < 1, a probability outside [0, 1], crop_min_area outside (0, 1],
            crop_max_aspect < 1, gamma_max < 1, or negative strengths.
    """

    def __init__(self, n_views: int = 2, crop_p: float = 0.8, crop_min_area: float = 0.4,
                 crop_max_aspect: float = 1.333, affine_p: float = 0.5, rotate_deg: float = 10.0,
                 scale: float = 0.1, translate: float = 0.05, flip_p: float = 0.5,
                 intensity_p: float = 0.8, intensity_scale: float = 0.2, intensity_shift: float = 0.1,
                 noise_p: float = 0.5, noise_std: float = 0.03, gamma_p: float = 0.0, gamma_max: float = 1.5,
                 local_views: int = 0, local_scale: float = 0.4):
        super().__init__()
        self.p = dict(crop_p=crop_p, affine_p=affine_p, flip_p=flip_p, intensity_p=intensity_p, noise_p=noise_p,
                      gamma_p=gamma_p)
        bad = {k: v for k, v in self.p.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"probabilities must lie in [0, 1], got {bad}")
        strengths = dict(rotate_deg=rotate_deg, scale=scale, translate=translate, intensity_scale=intensity_scale,
                         intensity_shift=intensity_shift, noise_std=noise_std)
        if (n_views < 1 or not 0 < crop_min_area <= 1 or crop_max_aspect < 1 or gamma_max < 1
                or min(strengths.values()) < 0):
            raise ValueError("need n_views >= 1, 0 < crop_min_area <= 1, crop_max_aspect >= 1, gamma_max >= 1 and "
                             f"non-negative strengths, got n_views={n_views}, crop_min_area={crop_min_area}, "
                             f"crop_max_aspect={crop_max_aspect}, gamma_max={gamma_max}, {strengths}")
        self.n_views, self.crop_min_area, self.crop_max_aspect = n_views, crop_min_area, crop_max_aspect
        self.rotate, self.scale, self.translate = math.radians(rotate_deg), scale, translate
        self.intensity_scale, self.intensity_shift, self.noise_std = intensity_scale, intensity_shift, noise_std
        self.gamma_max = gamma_max
        self.init_local(local_views, local_scale)

    def forward(self, x: torch.Tensor, generator: torch.Generator, n_views: int | None = None) -> torch.Tensor:
        n_views = self.n_views if n_views is None else n_views  # local_crops asks for local_views
        if x.dim() not in (4, 5):
            raise ValueError(f"expected x of shape (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}")
        b, c, *spatial = x.shape
        n, dims, dev = b * n_views, len(spatial), x.device
        v = x.unsqueeze(1).expand(b, n_views, *x.shape[1:]).reshape(n, c, *spatial)

        def rand(*shape):  # U(0, 1), float32 on x's device
            return torch.rand(*shape, generator=generator, device=dev)

        def sym(*shape):  # U(-1, 1)
            return 2 * rand(*shape) - 1

        def chosen(key):  # (N,) bool: which views get augmentation ``key``
            return rand(n) < self.p[key]

        # Geometry maps output coordinates u to input coordinates A u + t, both normalized to [-1, 1]
        # in grid_sample's axis order (W, H[, D]).
        extent = torch.tensor(spatial[::-1], device=dev, dtype=torch.float32)
        extent = extent / extent.max()
        eye = torch.eye(dims, device=dev).expand(n, dims, dims)
        crop, affine, flip = chosen("crop_p"), chosen("affine_p"), chosen("flip_p")
        log_aspect = math.log(self.crop_max_aspect) / 2 * sym(n, dims)
        area = self.crop_min_area + (1 - self.crop_min_area) * rand(n, 1)
        size = (area ** (1 / dims) * torch.exp(log_aspect - log_aspect.mean(1, keepdim=True))).clamp(max=1.0)
        centre = (1 - size) * sym(n, dims)
        size, centre = torch.where(crop[:, None], size, 1.0), torch.where(crop[:, None], centre, 0.0)
        rotation = rotations(self.rotate * sym(n, 1 if dims == 2 else 3))
        # rotate in physical (pixel) units, not in normalized units, so non-square images do not shear
        rotation = rotation * (extent[None, None, :] / extent[None, :, None])
        stretch = 1 + self.scale * sym(n, dims)
        matrix = torch.where(affine[:, None, None], rotation * stretch[:, None, :], eye)
        shift = torch.where(affine[:, None], 2 * self.translate * sym(n, dims), 0.0)
        mirror = torch.ones(n, dims, device=dev)
        mirror[:, 0] = torch.where(flip, -1.0, 1.0)
        theta = torch.cat([size[:, :, None] * matrix * mirror[:, None, :], (size * shift + centre)[:, :, None]], 2)
        grid = F.affine_grid(theta.to(x.dtype), list(v.shape), align_corners=False)
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        v = torch.where((crop | affine | flip).view(n, *[1] * (dims + 1)), sampled, v)
        ones = [1] * (dims + 1)
        on = chosen("intensity_p").view(n, *ones)
        factor = 1 + self.intensity_scale * sym(n, *ones)
        offset = self.intensity_shift * sym(n, *ones)
        v = torch.where(on, v * factor.to(v.dtype) + offset.to(v.dtype), v)
        on = chosen("noise_p").view(n, *ones)
        sigma = self.noise_std * rand(n, *ones)
        noise = torch.randn(v.shape, generator=generator, device=dev)
        v = torch.where(on, v + (sigma * noise).to(v.dtype), v)
        if self.p["gamma_p"] > 0:
            v = torch.where(chosen("gamma_p").view(n, *ones), self.contrast(v, sym(n, *ones)), v)
        return v.reshape(b, n_views, c, *spatial)

    def contrast(self, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) views with gamma gamma_max ** u, u (N, 1, ...) in [-1, 1], per view's own range."""
        axes = tuple(range(1, v.dim()))
        low, high = v.amin(axes, keepdim=True), v.amax(axes, keepdim=True)
        span = (high - low).clamp_min(1e-6)
        gamma = (self.gamma_max ** u).to(v.dtype)
        return ((v - low) / span).clamp(0, 1) ** gamma * span + low
