"""Multi-crop's local views (Caron et al. 2021, arXiv 2104.14294, section 3.1), one rule for every modality.

A local view is an augmented view (the modality's own pipeline) from which a window of
``local_scale`` of every time or spatial extent is cut at a random position, without resizing:
a (C, T) series or clip gives (C, round(scale T)), a (C, H, W) image (C, round(scale H),
round(scale W)), a (C, D, H, W) volume likewise on all three axes. DINO's student sees these
smaller views; its teacher sees only the global ones. The paper's local crops (5-40% of the area,
resized to 96 pixels against the global views' 224) are about 0.43 of a global view's side, as a
``local_scale`` of 0.4 is here.
"""
from __future__ import annotations

import torch


def window_sizes(extent, scale: float) -> list[int]:
    """round(scale * e), at least 1, for every extent e."""
    return [max(1, round(scale * e)) for e in extent]


def random_windows(x: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """One window per row of x (N, C, *extent) -> (N, C, *window_sizes(extent, scale)).

    Each row's window starts at its own uniform random offset on every axis, drawn from
    ``generator`` (one draw of shape (N, axes), so the offsets of a row do not depend on the
    other rows' values). The window is a contiguous slice of the row.

    Raises:
        ValueError: x has no axis after (N, C), or scale is outside (0, 1].
    """
    if x.dim() < 3:
        raise ValueError(f"expected x of shape (N, C, ...) with at least one time or spatial axis, got {tuple(x.shape)}")
    if not 0 < scale <= 1:
        raise ValueError(f"local_scale must lie in (0, 1], got {scale}")
    n, extent = x.shape[0], x.shape[2:]
    sizes = window_sizes(extent, scale)
    u = torch.rand(n, len(extent), generator=generator, device=x.device)
    for axis, (e, w) in enumerate(zip(extent, sizes)):
        start = (u[:, axis] * (e - w + 1)).long().clamp(max=e - w)
        index = start[:, None] + torch.arange(w, device=x.device)  # (N, w)
        dim = axis + 2
        shape = [n] + [1] * (x.dim() - 1)
        shape[dim] = w
        x = torch.gather(x, dim, index.view(shape).expand(*x.shape[:dim], w, *x.shape[dim + 1:]))
    return x


class LocalCrops:
    """Mixin for a view transform whose ``forward(x, generator, n_views=None)`` gives (B, V, C, ...):
    adds ``local_views`` and ``local_scale`` (``init_local``) and ``local_crops``."""

    local_views: int = 0
    local_scale: float = 0.4

    def init_local(self, local_views: int, local_scale: float) -> None:
        """Raises: ValueError: local_views < 0 or local_scale outside (0, 1]."""
        if local_views < 0 or not 0 < local_scale <= 1:
            raise ValueError(f"need local_views >= 0 and 0 < local_scale <= 1, got local_views={local_views}, "
                             f"local_scale={local_scale}")
        self.local_views, self.local_scale = local_views, local_scale

    def local_crops(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``local_views`` augmented views of every sample, each cut to a random window:
        (B, C, *extent) -> (B, L, C, *window_sizes(extent, local_scale)).

        Raises:
            ValueError: local_views is 0, or x is not a shape the transform takes.
        """
        if not self.local_views:
            raise ValueError("local_crops needs local_views >= 1")
        views = self(x, generator, n_views=self.local_views)
        b, n_local = views.shape[:2]
        windows = random_windows(views.flatten(0, 1), self.local_scale, generator)
        return windows.unflatten(0, (b, n_local))
