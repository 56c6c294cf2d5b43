"""``comparison_fractions.png``: accuracy against label fraction, one line per objective, drawn with
Pillow (no matplotlib), like ``comparison/figure.py``.

One panel per (metric, modality): rows are the metrics with label fractions (linear probe, then
fine-tuning), columns the modalities. In a panel, x is the label fraction on a log scale from the
smallest fraction of the comparison (INSET pixels right of the plot area's left edge) to 1 (INSET
pixels left of its right edge); y is accuracy from 0 (bottom edge) to 1 (top edge). Each objective is a solid line through its mean over seeds, in its
colour (``COLOURS``, in the order of ``--objectives``), with a vertical bar over its 95% interval
where it has one; its floor (the random-init encoder, same protocol) is a dashed line in the same
colour. A legend of the objectives runs along the bottom.

Geometry, in pixels: panel (i, j) has its plot area at x in [LEFT + j PANEL_W, LEFT + j PANEL_W +
PLOT_W] and y in [TOP + i PANEL_H, TOP + i PANEL_H + PLOT_H]; image size (LEFT + columns x PANEL_W)
x (TOP + rows x PANEL_H + LEGEND + LEGEND_ROW x (legend rows - 1)), the legend taking
LEGEND_ITEM pixels per objective and wrapping at the image width.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from comparison.fractions import METRICS, fraction_keys
from core.palette import font

PANEL_W, PANEL_H, PLOT_W, PLOT_H, INSET = 300, 250, 250, 190, 12
LEFT, TOP, LEGEND, LEGEND_ROW, LEGEND_ITEM = 50, 60, 50, 16, 110
BLACK, GREY, WHITE = (20, 20, 20), (200, 200, 200), (255, 255, 255)
# Matplotlib's tab10 colours, one per objective in order (then again from the start).
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def to_pixel(origin: tuple[float, float], fraction: float, value: float, smallest: float) -> tuple[float, float]:
    """Pixel of (fraction, value) in the plot area whose top-left corner is ``origin``."""
    x0, y0 = origin
    span = math.log(1.0) - math.log(smallest)
    width = PLOT_W - 2 * INSET
    x = x0 + INSET + (width if span == 0 else width * (math.log(fraction) - math.log(smallest)) / span)
    return x, y0 + PLOT_H * (1 - min(max(value, 0.0), 1.0))


def dashed(draw: ImageDraw.ImageDraw, points, fill, dash: float = 6.0) -> None:
    """A polyline through ``points`` drawn as dashes of ``dash`` pixels with gaps as long."""
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        length = math.hypot(xb - xa, yb - ya)
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            t0, t1 = k / steps, min(1.0, (k + 1) / steps)
            draw.line([(xa + (xb - xa) * t0, ya + (yb - ya) * t0), (xa + (xb - xa) * t1, ya + (yb - ya) * t1)],
                      fill=fill, width=2)


def draw_axes(draw: ImageDraw.ImageDraw, origin, title: str, fractions: list[float], smallest: float, small) -> None:
    x0, y0 = origin
    draw.rectangle((x0, y0, x0 + PLOT_W, y0 + PLOT_H), outline=BLACK)
    draw.text((x0, y0 - 18), title, font=small, fill=BLACK)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y0 + PLOT_H * (1 - tick)
        draw.line((x0, y, x0 + PLOT_W, y), fill=GREY)
        draw.text((x0 - 6, y), f"{tick:.2f}", font=small, fill=BLACK, anchor="rm")
    for fraction in fractions:
        x, _ = to_pixel(origin, fraction, 0.0, smallest)
        draw.text((x, y0 + PLOT_H + 4), f"{fraction * 100:g}%", font=small, fill=BLACK, anchor="ma")


def draw_fractions(path: Path, rows: list[dict], split: str) -> bool:
    """Write the figure for ``rows`` (``report.summarize``'s dicts) to ``path``; False (nothing
    written) when no row has a label-fraction metric."""
    panels = [(metric, label, fraction_keys(rows, metric)) for metric, label in METRICS.items()]
    panels = [p for p in panels if p[2]]
    if not panels:
        return False
    modalities = list(dict.fromkeys(r["modality"] for r in rows))
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    smallest = min(f for _, _, keys in panels for f, _ in keys)
    per_row = max(1, len(modalities) * PANEL_W // LEGEND_ITEM)
    legend_rows = math.ceil(len(objectives) / per_row)
    size = (LEFT + len(modalities) * PANEL_W, TOP + len(panels) * PANEL_H + LEGEND + LEGEND_ROW * (legend_rows - 1))
    image = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(image)
    small, title = font(11), font(14)
    draw.text((10, 4), f"accuracy ({split}) against label fraction", font=title, fill=BLACK)
    draw.text((10, 21), "mean over seeds, bars: 95% interval, dashed: floor", font=small, fill=BLACK)
    for i, (metric, label, keys) in enumerate(panels):
        for j, modality in enumerate(modalities):
            origin = (LEFT + j * PANEL_W, TOP + i * PANEL_H)
            draw_axes(draw, origin, f"{modality}: {label}", [f for f, _ in keys], smallest, small)
            for r in (r for r in rows if r["modality"] == modality):
                colour = COLOURS[objectives.index(r["objective"]) % len(COLOURS)]
                present = [(f, r["metrics"][k]) for f, k in keys if k in r["metrics"]]
                line = [to_pixel(origin, f, trained.mean, smallest) for f, (trained, _) in present]
                floor = [to_pixel(origin, f, base.mean, smallest) for f, (_, base) in present if base.mean is not None]
                if len(floor) > 1:
                    dashed(draw, floor, colour)
                if len(line) > 1:
                    draw.line(line, fill=colour, width=2)
                for f, (trained, _) in present:
                    x, y = to_pixel(origin, f, trained.mean, smallest)
                    if trained.low is not None:
                        _, top = to_pixel(origin, f, trained.high, smallest)
                        _, bottom = to_pixel(origin, f, trained.low, smallest)
                        draw.line((x, top, x, bottom), fill=colour, width=1)
                    draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    for k, objective in enumerate(objectives):
        x = LEFT + (k % per_row) * LEGEND_ITEM
        legend_y = TOP + len(panels) * PANEL_H + 18 + LEGEND_ROW * (k // per_row)
        draw.rectangle((x, legend_y, x + 14, legend_y + 10), fill=COLOURS[k % len(COLOURS)])
        draw.text((x + 18, legend_y - 1), objective, font=small, fill=BLACK)
    image.save(path, format="PNG")
    return True
