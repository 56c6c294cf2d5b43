"""Built-in chest images: a deterministic set of labelled findings with radiology-style reports.

Eight classes, the kind of finding (``CLASSES``). Every image is a frontal
chest-like picture (2D) or a slab of axial-depth slices (3D, isotropic
voxels): a body ellipse, two dark lung fields, a heart shadow, curved rib
bands, a smooth field, gamma and noise, all drawn at random, so global
brightness and texture statistics carry no class information. A finding is
drawn into one lung at a random side, zone, size and contrast:

    no finding, nodule (one round lesion), multiple nodules (3-7 small), mass
    (large, lobulated), linear opacity (a thin band), ring lesion (lucent
    centre), effusion (fluid with a meniscus at the lung base), calcification
    (1-3 tiny very bright spots)

Sides follow the radiological convention: the patient's right lung is on the
image's left (x < 0.5). The field of view is ``FOV_MM`` across, so a
64-pixel image has 4 mm pixels. Reports are written from the drawn findings
by ``datasets.write_report``. Everything is a function of (seed, split).
"""
from __future__ import annotations

import numpy as np

CLASSES = ("no finding", "nodule", "multiple nodules", "mass", "linear opacity", "ring lesion", "effusion",
           "calcification")
SPLITS = {"train": 0, "val": 1, "test": 2}
FOV_MM = 256.0
# Per item; NaN where the finding has none (no finding). side: 0 = patient's right, 1 = left;
# zone: 0 = upper, 1 = lower; x, y (, z): finding centre as fractions of width, height (depth);
# intensity: added brightness before gamma and scaling. The last four are nuisances.
ATTRIBUTES = ("count", "size_mm", "side", "zone", "x", "y", "z", "intensity",
              "tissue", "lung_contrast", "noise", "gamma")


def _grid(size: int, depth: int):
    """Normalized coordinates (z, y, x), each (D, H, W); x, y span [-1, 1], voxels are isotropic."""
    pitch = 2.0 / size
    lin = (np.arange(size) + 0.5) * pitch - 1.0
    zs = (np.arange(depth) + 0.5 - depth / 2) * pitch
    return np.meshgrid(zs, lin, lin, indexing="ij"), pitch


def _inside(dist: np.ndarray, radius, soft: float) -> np.ndarray:
    """Soft indicator of dist < radius with a ramp one ``soft`` wide."""
    return np.clip((radius - dist) / soft + 0.5, 0.0, 1.0)


class _Lung:
    """An ellipsoidal lung field: centre (cx, cy), semi-axes (ax, ay, az)."""

    def __init__(self, rng, side: int, shift):
        sign = -1.0 if side == 0 else 1.0  # patient's right lung on the image's left
        self.side, self.sign = side, sign
        self.cx = sign * rng.uniform(0.36, 0.48) + shift[0]
        self.cy = rng.uniform(-0.12, 0.0) + shift[1]
        self.ax, self.ay, self.az = rng.uniform(0.24, 0.32), rng.uniform(0.48, 0.62), rng.uniform(0.6, 0.9)

    def mask(self, z, y, x, soft):
        r = np.sqrt(((x - self.cx) / self.ax) ** 2 + ((y - self.cy) / self.ay) ** 2 + (z / self.az) ** 2)
        return _inside(r * self.ax, self.ax, soft)

    def point(self, rng, zone: int, margin: float, z_span: float):
        """A random point (x, y, z) of ``zone`` at least ~``margin`` inside the lung outline."""
        frac = rng.uniform(-0.7, -0.15) if zone == 0 else rng.uniform(0.15, 0.6)
        y = self.cy + frac * self.ay
        half = max(self.ax * np.sqrt(1.0 - frac ** 2) - margin, 0.02)
        return self.cx + rng.uniform(-half, half) * 0.8, y, rng.uniform(-z_span, z_span)


def _scattered(rng, multiple: bool, lung, zone: int, dist, add, soft: float, z_span: float):
    """Several small blobs: multiple nodules anywhere in the lung, or a calcification cluster
    within ~15 mm of an anchor. Returns (image, count, size_mm, zone, intensity, centres)."""
    mm = 2.0 / FOV_MM
    count = int(rng.integers(3, 8)) if multiple else int(rng.integers(1, 4))
    intensity = rng.uniform(0.18, 0.3) if multiple else rng.uniform(0.5, 0.8)
    anchor = lung.point(rng, zone, 0.05, z_span)
    sizes = rng.uniform(8, 12, count) if multiple else rng.uniform(5, 8, count)
    centres = []
    for s in sizes:
        if multiple:  # anywhere in the lung, either zone
            c = lung.point(rng, int(rng.integers(2)), 0.05, z_span)
        else:  # a cluster within ~15 mm of the anchor
            c = tuple(np.asarray(anchor) + rng.uniform(-15, 15, 3) * mm * np.array([1, 1, z_span > 0]))
        centres.append(c)
        add = np.maximum(add, intensity * _inside(dist(c), s * mm / 2, soft))
    if multiple:
        zone = int(np.mean([c[1] for c in centres]) > lung.cy)
    return add, count, float(sizes.max()), zone, intensity, centres


def _linear_opacity(rng, lung, zone: int, grid, soft: float, z_span: float):
    """A thin line segment inside the lung. Returns (image term, size_mm, intensity, centre)."""
    z, y, x = grid
    mm = 2.0 / FOV_MM
    size = rng.uniform(40, 80)
    c = lung.point(rng, zone, 0.1, z_span)
    angle = rng.uniform(-0.6, 0.6)
    direction = np.array([np.cos(angle), np.sin(angle)])
    along = np.clip((x - c[0]) * direction[0] + (y - c[1]) * direction[1], -size * mm / 2, size * mm / 2)
    d = np.sqrt((x - c[0] - along * direction[0]) ** 2 + (y - c[1] - along * direction[1]) ** 2 + (z - c[2]) ** 2)
    intensity = rng.uniform(0.2, 0.35)
    return intensity * _inside(d, rng.uniform(2.5, 4.0) * mm, soft) * lung.mask(z, y, x, soft), size, intensity, c


def _finding(rng, label: int, lungs, grid, soft: float, z_span: float):
    """The added image of one finding and its attributes (count, size_mm, side, zone, x, y, z, intensity)."""
    z, y, x = grid
    add = np.zeros_like(x)
    nan = float("nan")
    if CLASSES[label] == "no finding":
        return add, (0, nan, nan, nan, nan, nan, nan, nan)
    lung = lungs[int(rng.integers(2))]
    zone = 1 if CLASSES[label] == "effusion" else int(rng.integers(2))
    mm = 2.0 / FOV_MM  # normalized units per mm
    name = CLASSES[label]

    def dist(c):
        return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)

    if name in ("nodule", "mass", "ring lesion"):
        size = rng.uniform(*{"nodule": (14, 26), "mass": (40, 64), "ring lesion": (26, 44)}[name])
        c = lung.point(rng, zone, 0.3 * size * mm, z_span)
        intensity = rng.uniform(0.18, 0.35)
        r = size * mm / 2
        if name == "mass":  # lobulated outline
            r = r * (1 + 0.12 * np.cos(3 * np.arctan2(y - c[1], x - c[0]) + rng.uniform(0, 2 * np.pi)))
        shape = _inside(dist(c), r, soft)
        if name == "ring lesion":
            shape = shape - _inside(dist(c), r * rng.uniform(0.4, 0.55), soft)
        add += intensity * shape
        count, centres = 1, [c]
    elif name in ("multiple nodules", "calcification"):
        add, count, size, zone, intensity, centres = _scattered(rng, name == "multiple nodules", lung, zone, dist,
                                                                add, soft, z_span)
    elif name == "linear opacity":
        term, size, intensity, c = _linear_opacity(rng, lung, zone, grid, soft, z_span)
        add += term
        count, centres = 1, [c]
    else:  # effusion: fluid up to a meniscus that climbs toward the lateral wall
        size = rng.uniform(25, 70)
        level = lung.cy + lung.ay - size * mm
        lateral = np.clip((x - lung.cx) * lung.sign / lung.ax, -1, 1)
        line = level - 0.35 * size * mm * (lateral + 1) / 2
        intensity = rng.uniform(0.2, 0.35)
        add += intensity * _inside(line - y, 0.0, soft) * lung.mask(z, y, x, soft)
        count, centres = 1, [(lung.cx, level + size * mm / 2, 0.0)]
    cx, cy, cz = np.mean(np.asarray(centres, dtype=float), axis=0)
    return add, (count, size, lung.side, zone, (cx + 1) / 2, (cy + 1) / 2, cz, intensity)


def render(rng, label: int, size: int = 64, depth: int = 1):
    """One image (D, H, W) float32 in [0, 1] with a finding of class ``label``, and its attributes."""
    grid, pitch = _grid(size, depth)
    z, y, x = grid
    soft = pitch
    shift = rng.uniform(-0.05, 0.05, 2)
    body_axes = rng.uniform(0.82, 0.95, 2)
    body = _inside(np.sqrt(((x - shift[0]) / body_axes[0]) ** 2 + ((y - 0.05 - shift[1]) / body_axes[1]) ** 2),
                   1.0, soft / body_axes.min())
    tissue, lung_contrast = rng.uniform(0.45, 0.7), rng.uniform(0.25, 0.42)
    img = 0.05 + (tissue - 0.05) * body
    lungs = [_Lung(rng, 0, shift), _Lung(rng, 1, shift)]
    lung_field = np.maximum(lungs[0].mask(z, y, x, soft), lungs[1].mask(z, y, x, soft))
    heart = _inside(np.sqrt(((x - 0.1 - shift[0]) / rng.uniform(0.22, 0.3)) ** 2
                            + ((y - 0.3 - shift[1]) / rng.uniform(0.18, 0.24)) ** 2), 1.0, soft * 4)
    img = img - lung_contrast * lung_field * (1 - 0.8 * heart)
    bent = y - rng.uniform(0.2, 0.45) * x ** 2  # ribs curve down laterally
    ribs = 0.5 * (1 + np.cos(2 * np.pi * (rng.uniform(4, 6) * bent + rng.uniform(0, 1))))
    img = img + rng.uniform(0.02, 0.06) * ribs * lung_field
    for _ in range(3):  # smooth nuisance field
        k = rng.normal(0, 2.0, 3)
        img = img + rng.uniform(0, 0.03) * np.cos(k[0] * x + k[1] * y + k[2] * z + rng.uniform(0, 2 * np.pi))
    gamma, noise = rng.uniform(0.7, 1.4), rng.uniform(0.01, 0.04)
    noise_field = rng.normal(0, noise, img.shape)
    # the finding is drawn last, so the same rng state gives the same anatomy with or without it
    add, attrs = _finding(rng, label, lungs, grid, soft, z_span=0.6 * abs(z).max())
    img = np.clip(img + add, 0.0, 1.0) ** gamma + noise_field
    img = (img - img.min()) / max(img.max() - img.min(), 1e-6)  # ScaleIntensity to [0, 1]
    if depth > 1:
        attrs = attrs[:6] + (attrs[6] / (2 * abs(z).max()) + 0.5,) + attrs[7:]
    return img.astype(np.float32), attrs + (tissue, lung_contrast, noise, gamma)


def generate(split: str, seed: int, per_class: int, size: int = 64, spatial_dims: int = 2, depth: int = 16):
    """``per_class`` images of every class, shuffled.

    Returns:
        x: (N, 1, H, W) or (N, 1, D, H, W) float32 in [0, 1]; labels: (N,) int64;
        attributes: dict name -> (N,) float64 (``ATTRIBUTES``; z is NaN in 2D).

    Raises:
        ValueError: unknown split, spatial_dims not 2 or 3, or a non-positive size.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")
    if spatial_dims not in (2, 3) or per_class < 1 or size < 8 or depth < 1:
        raise ValueError(f"need spatial_dims 2 or 3, per_class >= 1, size >= 8, depth >= 1; got "
                         f"{spatial_dims}, {per_class}, {size}, {depth}")
    rng = np.random.default_rng([seed, SPLITS[split], 60_311])
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class)).astype(np.int64)
    d = depth if spatial_dims == 3 else 1
    x = np.empty((len(labels), 1, d, size, size), dtype=np.float32)
    rows = []
    for i, label in enumerate(labels):
        x[i, 0], attrs = render(rng, int(label), size, d)
        rows.append(attrs)
    table = np.asarray(rows, dtype=np.float64)
    attributes = {name: table[:, j] for j, name in enumerate(ATTRIBUTES)}
    if spatial_dims == 2:
        attributes["z"] = np.full(len(labels), np.nan)
        x = x[:, :, 0]
    return x, labels, attributes
