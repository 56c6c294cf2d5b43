"""Medical images with reports from a CSV manifest, loaded through a dictionary MONAI pipeline.

The manifest has columns ``path`` (relative to the CSV's folder, or absolute;
.png/.jpg/.bmp/.tif, .dcm, .nii, .nii.gz), ``report``, ``label`` and an
optional ``split`` (train / val / test). Each row travels as a dict
{"image": file, "report": ..., "label": ...} through

    LoadImaged(image_only, ensure_channel_first) -> channels -> Resized -> ScaleIntensityd(0, 1)

2D images come out (channels, rows, columns): PNG/JPEG and DICOM are read
rows-first (MONAI's default transposes them); NIfTI keeps its stored axis
order. Labels (strings or numbers) map to 0..K-1 in sorted order (numbers
numerically). Without a ``split`` column the rows are split per class,
seeded. A bad file or row raises ``MedicalFileError`` naming the file and the
manifest row (1-based, header excluded); ``skip_bad=True`` skips it instead.
"""
from __future__ import annotations

import csv
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import Compose, EnsureTyped, Lambdad, LoadImaged, Resized, ScaleIntensityd
from torch.utils.data import Dataset

from errors import UserError
from registry import register

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class MedicalFileError(UserError, ValueError):
    """A manifest, image file or manifest row that is missing or cannot be read."""


class _BadImage(ValueError):
    """Raised inside the pipeline for an image whose shape cannot be used."""


def detect_format(path) -> str:
    """'medical_manifest' for a .csv file or a folder holding manifest.csv.

    Raises:
        MedicalFileError: anything else.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv" or (path / "manifest.csv").is_file():
        return "medical_manifest"
    raise MedicalFileError(f"'{path}': expected a .csv manifest or a folder holding manifest.csv")


def _label_map(values) -> tuple[dict, list]:
    """({label: 0..K-1}, class names): distinct labels sorted, numerically when all are numbers ('1.0' is '1')."""
    def number(v):
        try:
            return float(v)
        except ValueError:
            return None
    if all(number(v) is not None for v in values):
        canon = {v: str(int(number(v))) if number(v).is_integer() else str(number(v)) for v in values}
        order = sorted(set(canon.values()), key=float)
        return {v: order.index(c) for v, c in canon.items()}, order
    order = sorted(set(values))
    return {v: order.index(v) for v in values}, order


def read_manifest(csv_file: Path) -> list[dict]:
    """Rows {'row', 'path', 'report', 'label', 'split'?} of a manifest.

    Raises:
        MedicalFileError: no such file, missing columns, empty fields or no rows.
    """
    if not csv_file.is_file():
        raise MedicalFileError(f"'{csv_file}': no such manifest")
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as f:
            header, *raw = [line for line in csv.reader(f) if any(cell.strip() for cell in line)] or [[]]
        fields = [h.strip().lower() for h in header]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MedicalFileError(f"'{csv_file}': cannot be read as a UTF-8 CSV ({err})") from err
    missing = [c for c in ("path", "report", "label") if c not in fields]
    if missing:
        raise MedicalFileError(f"'{csv_file}': missing column(s) {', '.join(missing)}; columns are {fields}")
    rows = []
    for i, values in enumerate(raw, start=1):
        row = {k: values[j].strip() if j < len(values) else "" for j, k in enumerate(fields)}
        for column in ("path", "label") + (("split",) if "split" in fields else ()):
            if not row.get(column):
                raise MedicalFileError(f"'{csv_file}', row {i}: empty '{column}'")
        if "split" in row and row["split"].lower() not in SPLIT_NAMES:
            raise MedicalFileError(f"'{csv_file}', row {i}: split '{row['split']}' is not train, val or test")
        rows.append({**row, "row": i})
    if not rows:
        raise MedicalFileError(f"'{csv_file}': holds no rows")
    return rows


def stratified_split(labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """'train' / 'val' / 'test' per item: round(fraction * n_c) of every class, seeded, train never emptied."""
    rng = np.random.default_rng([seed, 2, 90_001])
    out = np.full(len(labels), "train", dtype=object)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(int(round(test_fraction * len(members))), len(members) - 1)
        n_val = min(int(round(val_fraction * len(members))), len(members) - 1 - n_test)
        out[members[:n_test]] = "test"
        out[members[n_test:n_test + n_val]] = "val"
    return out


@contextmanager
def _no_gpu_decoder_notice():
    """Silence MONAI's notice, printed for every LoadImage, that the optional nvImageCodec DICOM decoder is absent."""
    log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nvImageCodec")
            yield
    finally:
        log.setLevel(level)


def pipeline(image_size, channels: int, spatial_dims: int) -> Compose:
    """The MONAI dictionary pipeline: {'image': file, ...} -> {'image': (channels, *size) float32 in [0, 1], ...}."""
    def to_spatial_dims_and_channels(img):
        # trailing singleton axes beyond spatial_dims (a NIfTI slice stored (H, W, 1)) are dropped
        while img.dim() - 1 > spatial_dims and img.shape[-1] == 1:
            img = img[..., 0]
        if img.dim() - 1 != spatial_dims:
            raise _BadImage(f"has {img.dim() - 1} spatial dimensions {tuple(img.shape[1:])}, expected {spatial_dims}")
        have = img.shape[0]
        if have == 4 and channels != 4:  # RGBA: drop alpha
            img, have = img[:3], 3
        if have == channels:
            return img
        if channels == 1 and have == 3:
            return img.mean(0, keepdim=True)
        if have == 1:
            return img.expand(channels, *img.shape[1:])
        raise _BadImage(f"has {have} channels; cannot convert to {channels}")

    size = [image_size] * spatial_dims if isinstance(image_size, int) else list(image_size)
    with _no_gpu_decoder_notice():
        readers = [NibabelReader(), PydicomReader(swap_ij=False), PILReader(reverse_indexing=False)]
        load = LoadImaged(keys="image", reader=readers, image_only=True, ensure_channel_first=True)
    return Compose([
        load,
        Lambdad(keys="image", func=to_spatial_dims_and_channels),
        Resized(keys="image", spatial_size=size),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ])


def _reason(err: BaseException) -> str:
    """Why a file failed, from the innermost cause (MONAI wraps transform errors), first line."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if isinstance(err, _BadImage) else f"cannot be read as an image ({text})"


@register("dataset", "medical_manifest", modality="medical", provides=("x", "label", "text"))
class ManifestImages(Dataset):
    """One split of the images and reports listed in a CSV manifest (see the module docstring).

    Args:
        split: "train", "val" or "test"; seed: seeds the split when the manifest has no split column.
        path: the manifest .csv, or a folder holding manifest.csv.
        image_size: every image is resized to this (an int for all axes, or one per spatial axis).
        channels: output channels (RGB -> gray by the channel mean; gray -> RGB by repetition).
        spatial_dims: 2 for images, 3 for volumes (NIfTI, multi-frame DICOM).
        val_fraction, test_fraction: per-class fractions held out when there is no split column.
        skip_bad: skip unreadable files (listed in ``self.skipped`` as (row, file, reason)) instead of failing.

    Raises:
        ValueError: unknown split or fractions outside [0, 1) summing to 1 or more.
        MedicalFileError: the manifest, or a file of this split, is missing or unreadable.
    """

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` is a manifest (used when data.format is auto)."""
        path = Path(path)
        return path.is_file() and path.suffix.lower() == ".csv" or (path / "manifest.csv").is_file()

    def __init__(self, split: str, seed: int, path: str, image_size=64, channels: int = 1, spatial_dims: int = 2,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, skip_bad: bool = False):
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split '{split}'; splits are train, val, test")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"need fractions in [0, 1) summing below 1, got {val_fraction}, {test_fraction}")
        if spatial_dims not in (2, 3) or channels < 1:
            raise ValueError(f"need spatial_dims 2 or 3 and channels >= 1, got {spatial_dims}, {channels}")
        csv_file = Path(path) / "manifest.csv" if Path(path).is_dir() else Path(path)
        rows = read_manifest(csv_file)
        mapping, self.classes = _label_map([r["label"] for r in rows])
        labels = np.array([mapping[r["label"]] for r in rows], dtype=np.int64)
        if "split" in rows[0]:
            splits = np.array([SPLIT_NAMES[r["split"].lower()] for r in rows], dtype=object)
        else:
            splits = stratified_split(labels, seed, val_fraction, test_fraction)
        transform = pipeline(image_size, channels, spatial_dims)
        images, kept, self.skipped = [], [], []
        for i in np.flatnonzero(splits == split):
            row = rows[i]
            file = Path(row["path"]) if Path(row["path"]).is_absolute() else csv_file.parent / row["path"]
            try:
                images.append(self._load(transform, file, row))
                kept.append(i)
            except MedicalFileError as err:
                if not skip_bad:
                    raise
                self.skipped.append((row["row"], str(file), str(err)))
        size = [image_size] * spatial_dims if isinstance(image_size, int) else list(image_size)
        self.input_shape = (channels, *size)
        self.x = torch.stack(images) if images else torch.zeros(0, *self.input_shape)
        self.labels = torch.from_numpy(labels[kept])
        self.captions = [rows[i]["report"] for i in kept]
        self.rows = [rows[i]["row"] for i in kept]
        self.attributes = {}

    @staticmethod
    def _load(transform, file: Path, row: dict) -> torch.Tensor:
        """(channels, *image_size) float32 of one manifest row. Raises MedicalFileError naming file and row."""
        where = f"'{file}' (manifest row {row['row']})"
        name = file.name.lower()
        if not any(name.endswith(s) for s in SUFFIXES):
            raise MedicalFileError(f"{where}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
        if not file.is_file():
            raise MedicalFileError(f"{where}: no such file")
        try:
            return transform({"image": str(file), "report": row["report"], "label": row["label"]})["image"]
        except Exception as err:  # MONAI raises RuntimeError/ValueError/OSError for unreadable files
            raise MedicalFileError(f"{where}: {_reason(err)}") from err

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "label": self.labels[i], "text": self.captions[i], "index": i}
