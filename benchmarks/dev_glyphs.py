"""The noto_glyphs dev set: Unicode letters and digits rendered from Noto fonts, captioned with their names
(described in ``dev_sets.py``, which builds it through ``build_glyphs``)."""
from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np

NOTO = Path("/usr/share/fonts/truetype/noto")
# label: code point ranges, font file prefixes under NOTO (every weight of each). A label is the script's word in
# the Unicode names the captions carry ("latin capital letter a"), so a zero-shot prompt of it is a caption's word.
BLOCKS = {
    "latin": ([(0x41, 0x5A), (0x61, 0x7A)], ["NotoSans-", "NotoSerif-", "NotoSansDisplay-", "NotoSerifDisplay-"]),
    "greek": ([(0x370, 0x3FF)], ["NotoSans-", "NotoSerif-", "NotoSansDisplay-", "NotoSerifDisplay-"]),
    "cyrillic": ([(0x400, 0x4FF)], ["NotoSans-", "NotoSerif-", "NotoSansDisplay-", "NotoSerifDisplay-"]),
    "armenian": ([(0x530, 0x58F)], ["NotoSansArmenian-", "NotoSerifArmenian-"]),
    "arabic": ([(0x600, 0x6FF)], ["NotoNaskhArabic-", "NotoKufiArabic-", "NotoSansArabic-"]),
    "devanagari": ([(0x900, 0x97F)], ["NotoSansDevanagari-", "NotoSerifDevanagari-"]),
    "georgian": ([(0x10A0, 0x10FF)], ["NotoSansGeorgian-", "NotoSerifGeorgian-"]),
    "thai": ([(0xE00, 0xE7F)], ["NotoSansThai-", "NotoSerifThai-", "NotoLoopedThai-"]),
}
GLYPHS_PER_BLOCK, TEST_CHAR_FRACTION, IMAGE = 256, 0.25, 64


def face(font_file: Path) -> str:
    """'serif display bold italic' from 'NotoSerifDisplay-BoldItalic.ttf' (script names left out)."""
    family, weight = font_file.stem.removeprefix("Noto").split("-")
    words = "".join(" " + c if c.isupper() else c for c in family + weight).lower().split()
    scripts = {"arabic", "armenian", "devanagari", "georgian", "thai"}
    return " ".join(w for w in words if w not in scripts)


def render(font, char: str, offset=(0, 0)):
    """A 64x64 grayscale PIL image of ``char`` in ``font``, white on black, its box centered plus ``offset``."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(char)
    image = Image.new("L", (IMAGE, IMAGE), 0)
    ImageDraw.Draw(image).text(((IMAGE - right - left) / 2 + offset[0], (IMAGE - bottom - top) / 2 + offset[1]),
                               char, fill=255, font=font)
    return image


def build_glyphs(out: Path, seed: int = 0) -> None:
    """``out/manifest.csv`` and ``out/images/`` (see the module docstring).

    Raises:
        FileNotFoundError: a block has no font file under /usr/share/fonts/truetype/noto.
    """
    from PIL import ImageFont

    rng = np.random.default_rng([seed, 6464])
    (out / "images").mkdir(parents=True)
    rows = []
    for block, (ranges, prefixes) in BLOCKS.items():
        fonts = sorted(f for prefix in prefixes for f in NOTO.glob(f"{prefix}*.ttf"))
        if not fonts:
            raise FileNotFoundError(f"no font for block {block} under {NOTO} ({', '.join(prefixes)}*.ttf)")
        chars = [chr(c) for lo, hi in ranges for c in range(lo, hi + 1)
                 if unicodedata.category(chr(c)) in ("Lu", "Ll", "Lo", "Nd")]
        pairs = []
        for file in fonts:
            probe = ImageFont.truetype(str(file), 40)
            missing = render(probe, "\U0010fffd").tobytes()
            pairs += [(c, file) for c in chars if render(probe, c).getbbox() is not None
                      and render(probe, c).tobytes() != missing]
        covered = sorted({c for c, _ in pairs})
        test_chars = set(rng.choice(covered, size=round(TEST_CHAR_FRACTION * len(covered)), replace=False))
        for k in rng.permutation(len(pairs))[:GLYPHS_PER_BLOCK]:
            char, file = pairs[k]
            font = ImageFont.truetype(str(file), int(rng.integers(30, 47)))
            image = render(font, char, rng.integers(-4, 5, size=2))
            path = f"images/{block}_{ord(char):05x}_{file.stem}.png"
            image.save(out / path)
            rows.append([path, f"{unicodedata.name(char).lower()}, {face(file)}", block, f"U+{ord(char):04X}",
                         "test" if char in test_chars else "train"])
    with open(out / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "report", "label", "group", "split"]] + rows)
