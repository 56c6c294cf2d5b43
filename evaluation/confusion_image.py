"""The linear probe's confusion matrix as an RGB image for TensorBoard, drawn with Pillow.

Rows are the true classes (numbered, with their names on the left), columns the predicted
ones (numbered on top); each cell shows its count and is coloured by the fraction of its row
(0 light to 1 dark, viridis reversed), so a dark diagonal is a probe that gets every class right.

Image size: max(MIN_WIDTH, LEFT + C * cell + MARGIN) x (TOP + C * cell + MARGIN) pixels, cell =
MAX_SIDE // C clamped to CELL_RANGE.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from core.palette import colour, font

CELL_RANGE = (14, 40)   # smallest and largest cell side, pixels
MAX_SIDE = 640          # the matrix part stays about this wide when cells are at their smallest
LEFT, TOP, MARGIN, MIN_WIDTH = 150, 44, 8, 320
WHITE, BLACK = (255, 255, 255), (20, 20, 20)


def row_fractions(counts: np.ndarray) -> np.ndarray:
    """(C, C) float: each row of ``counts`` over its sum (0 for a class without items)."""
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)


def confusion_image(counts: np.ndarray, classes) -> np.ndarray:
    """(H, W, 3) uint8 picture of ``counts`` (C, C), entry [i, j] = items of class i predicted as j.

    ``classes``: the C names, indexed by class (names past its end are the index).
    """
    n = counts.shape[0]
    cell = int(np.clip(MAX_SIDE // max(n, 1), *CELL_RANGE))
    image = Image.new("RGB", (max(MIN_WIDTH, LEFT + n * cell + MARGIN), TOP + n * cell + MARGIN), WHITE)
    draw = ImageDraw.Draw(image)
    small, title = font(max(8, cell // 3)), font(12)
    draw.text((MARGIN, 4), "rows: true class; columns: predicted class", font=title, fill=BLACK)
    fractions = row_fractions(counts)
    for i in range(n):
        name = str(classes[i]) if i < len(classes) else str(i)
        draw.text((MARGIN, TOP + i * cell + cell / 2), f"{i} {name}"[:24], font=title, fill=BLACK, anchor="lm")
        draw.text((LEFT + i * cell + cell / 2, TOP - 4), str(i), font=small, fill=BLACK, anchor="mb")
        for j in range(n):
            box = (LEFT + j * cell, TOP + i * cell, LEFT + (j + 1) * cell - 1, TOP + (i + 1) * cell - 1)
            draw.rectangle(box, fill=colour(fractions[i, j]))
            ink = WHITE if fractions[i, j] > 0.5 else BLACK
            draw.text((box[0] + cell / 2, box[1] + cell / 2), str(int(counts[i, j])), font=small, fill=ink,
                      anchor="mm")
    return np.asarray(image)
