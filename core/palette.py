"""The colour ramp and font of the project's figures (comparison.png, the confusion-matrix image)."""
from __future__ import annotations

from PIL import ImageFont

# Viridis at 0, 0.25, 0.5, 0.75, 1 reversed, so that higher is darker.
RAMP = [(253, 231, 37), (94, 201, 98), (33, 145, 140), (59, 82, 139), (68, 1, 84)]


def colour(value: float) -> tuple[int, int, int]:
    """Linear interpolation along RAMP for ``value`` clipped to [0, 1]."""
    x = min(max(value, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(x), len(RAMP) - 2)
    t = x - i
    return tuple(round(a + (b - a) * t) for a, b in zip(RAMP[i], RAMP[i + 1]))


def font(size: int):
    """Pillow's default font at ``size`` pixels (its one bitmap size before Pillow 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()
