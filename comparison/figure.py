"""The comparison's heatmap, drawn with Pillow (no matplotlib): modalities as rows, objectives as
columns, the headline metric's mean in each cell (colour: 0 light to 1 dark), half its 95% interval
over seeds (two or more) and its floor in small text below. A pair below its floor gets a red frame; impossible and failed pairs are grey.

Image size: (LEFT + n_objectives * CELL_W + MARGIN) x (TOP + n_modalities * CELL_H + BOTTOM) pixels.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from core.palette import colour, font

CELL_W, CELL_H = 120, 64
LEFT, TOP, BOTTOM, MARGIN = 100, 64, 40, 12
GREY, RED, BLACK, WHITE = (215, 215, 215), (200, 30, 30), (20, 20, 20), (255, 255, 255)


def centred(draw: ImageDraw.ImageDraw, xy, text: str, fnt, fill) -> None:
    draw.text(xy, text, font=fnt, fill=fill, anchor="mm")


def draw_heatmap(path: Path, rows: list[dict], metric: str, label: str) -> None:
    """Write the PNG for ``rows`` (compare_report.summarize's dicts, ``best`` set) to ``path``."""
    modalities = list(dict.fromkeys(r["modality"] for r in rows))
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    size = (LEFT + len(objectives) * CELL_W + MARGIN, TOP + len(modalities) * CELL_H + BOTTOM)
    image = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(image)
    big, small, title = font(17), font(11), font(14)
    draw.text((MARGIN, 10), f"{label}, mean over seeds", font=title, fill=BLACK)
    for j, objective in enumerate(objectives):
        centred(draw, (LEFT + j * CELL_W + CELL_W / 2, TOP - 14), objective, title, BLACK)
    for i, modality in enumerate(modalities):
        centred(draw, (LEFT / 2, TOP + i * CELL_H + CELL_H / 2), modality, title, BLACK)
    for r in rows:
        i, j = modalities.index(r["modality"]), objectives.index(r["objective"])
        box = (LEFT + j * CELL_W, TOP + i * CELL_H, LEFT + (j + 1) * CELL_W - 1, TOP + (i + 1) * CELL_H - 1)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if metric not in r["metrics"]:
            draw.rectangle(box, fill=GREY, outline=WHITE)
            text = "n/a" if r["status"].startswith("impossible") else "failed"
            centred(draw, (cx, cy - 8), text, big, BLACK)
            centred(draw, (cx, cy + 14), r["status"].replace("impossible: ", "")[:22], small, BLACK)
            continue
        trained, base = r["metrics"][metric]
        mean, floor = trained.mean, base.mean
        fill = colour(mean)
        ink = WHITE if mean > 0.45 else BLACK
        draw.rectangle(box, fill=fill, outline=WHITE)
        if not r["beats_floor"]:
            draw.rectangle(box, outline=RED, width=4)
        value = f"{mean:.3f}" + ("*" if r["best"] else "") + ("~" if r.get("within_noise") else "")
        centred(draw, (cx, cy - 10), value, big, ink)
        spread = "" if trained.low is None else f"±{(trained.high - trained.low) / 2:.3f}  "
        centred(draw, (cx, cy + 14), spread + ("" if floor is None else f"floor {floor:.3f}"), small, ink)
    for k, note in enumerate(["floor: the random-init encoder, same protocol; ± half the 95% interval over seeds",
                              "* best of the row (~ within noise of the runner-up); red frame: does not beat its "
                              "floor; grey: impossible or failed"]):
        draw.text((MARGIN, size[1] - BOTTOM + 6 + 14 * k), note, font=small, fill=BLACK)
    image.save(path, format="PNG")
