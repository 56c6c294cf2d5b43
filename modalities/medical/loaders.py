"""Medical images with reports from a CSV manifest, loaded through a dictionary MONAI pipeline.

The manifest has columns ``path`` (relative to the CSV's folder, or absolute;
.png/.jpg/.bmp/.tif, .dcm, .nii, .nii.gz), ``report``, ``label`` and an
optional ``split`` (train / val / test) and ``group`` (or ``speaker``; e.g. a
patient id, kept inside one split). Each row travels as a dict
{"image": file, "report": ..., "label": ...} through

    LoadImaged(image_only, ensure_channel_first) -> channels -> Resized -> ScaleIntensityd(0, 1)

2D images come out (channels, rows, columns): PNG/JPEG and DICOM are read
rows-first (MONAI's default transposes them); NIfTI keeps its stored axis
order. ``spatial_dims: auto`` takes 2 or 3 from the first readable file of
the manifest (a NIfTI slice stored (H, W, 1) counts as 2-D); a file that
disagrees is an error naming it and the key. Labels and splits follow
``modalities/user_data.py``, as for every loader: labels map to 0..K-1 in
sorted order (numbers numerically, '1' and '1.0' one class); a ``split``
column is honoured (val carved from train when it names only train and test);
without one the rows are split per class, seeded. A bad file or row raises
``MedicalFileError`` naming the file and the manifest row (1-based, header
excluded); ``skip_bad=True`` skips it instead.

A ``label`` holding several labels joined by '|' (``effusion|nodule``) makes the manifest
multi-label (``modalities/multi_label.py``): items then carry a multi-hot label (K,) float32,
``classes`` names the K labels and ``multi_label`` is True.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.multi_label import check_labels_in_train, parse_labels
from modalities.user_data import DataError, group_column, manifest_splits, read_csv
from core.notes import say_once
from core.registry import register

if TYPE_CHECKING:
    from monai.transforms import Compose

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz")
SPATIAL_DIMS_KEY = "data.medical_manifest.spatial_dims"


class MedicalFileError(DataError):
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


def read_manifest(csv_file: Path) -> tuple[list[str], list[dict]]:
    """(columns, rows {'row', 'path', 'report', 'label', ...}) of a manifest.

    Raises:
        MedicalFileError: no such file, missing columns, an empty path or label, or no rows.
    """
    columns, rows = read_csv(csv_file, MedicalFileError)
    missing = [c for c in ("path", "report", "label") if c not in columns]
    if missing:
        raise MedicalFileError(f"'{csv_file}': missing column(s) {', '.join(missing)}; columns are {columns}")
    for row in rows:
        for column in ("path", "label"):
            if not row[column]:
                raise MedicalFileError(f"'{csv_file}', row {row['row']}: empty '{column}'")
    return columns, rows


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


def _image_loader(keys=None):
    """MONAI's LoadImage(d) over the NIfTI, DICOM and PIL readers, channel first."""
    # MONAI is imported where it is used: importing it takes seconds, which every run.py call
    # (any modality: the registry imports every modality) would otherwise pay.
    from monai.data import NibabelReader, PILReader, PydicomReader
    from monai.transforms import LoadImage, LoadImaged

    with _no_gpu_decoder_notice():
        readers = [NibabelReader(), PydicomReader(swap_ij=False), PILReader(reverse_indexing=False)]
        if keys is None:
            return LoadImage(reader=readers, image_only=True, ensure_channel_first=True)
        return LoadImaged(keys=keys, reader=readers, image_only=True, ensure_channel_first=True)


def _spatial_dims_of(img) -> int:
    """Spatial axes of a channel-first image, not counting trailing singleton axes past the second
    (a NIfTI slice stored (H, W, 1) is 2-D)."""
    dims = img.dim() - 1
    while dims > 2 and img.shape[dims] == 1:
        dims -= 1
    return dims


def pipeline(image_size, channels: int, spatial_dims: int, origin: str) -> Compose:
    """The MONAI dictionary pipeline: {'image': file, ...} -> {'image': (channels, *size) float32 in [0, 1], ...}.

    ``origin`` says where ``spatial_dims`` came from, for the error of a file that has other dimensions.
    """
    from monai.transforms import Compose

    return Compose([_image_loader("image"), *image_transforms(image_size, channels, spatial_dims, origin)])


def image_transforms(image_size, channels: int, spatial_dims: int, origin: str) -> list:
    """``pipeline`` after loading: dictionary transforms of {'image': (C, *spatial) channel-first array}
    to {'image': (channels, *size) float32 in [0, 1]}: channels converted, MONAI ``Resized`` (area),
    ``ScaleIntensityd`` min-max to [0, 1]. ``inference.preprocess`` runs these on arrays.
    A wrong shape raises ``_BadImage`` inside MONAI (wrapped in its RuntimeError)."""
    from monai.transforms import EnsureTyped, Lambdad, Resized, ScaleIntensityd

    def to_spatial_dims_and_channels(img):
        dims = _spatial_dims_of(img)
        if dims != spatial_dims:
            raise _BadImage(f"has {dims} spatial dimensions {tuple(img.shape[1:dims + 1])}, expected {spatial_dims} "
                            f"({origin}); make the files agree or set {SPATIAL_DIMS_KEY}")
        img = img.reshape(img.shape[:dims + 1])
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
    return [
        Lambdad(keys="image", func=to_spatial_dims_and_channels),
        Resized(keys="image", spatial_size=size),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]


def first_spatial_dims(files: list[Path]) -> tuple[int, Path]:
    """(2 or 3, the file) from the first of ``files`` that can be read (``spatial_dims: auto``).

    Raises:
        MedicalFileError: no file can be read, or the first readable one is neither 2-D nor 3-D.
    """
    load = _image_loader()
    for file in files:
        try:
            with _no_gpu_decoder_notice():
                dims = _spatial_dims_of(load(str(file)))
        except Exception:  # unreadable: the split that holds it reports it (or skips it with skip_bad)
            continue
        if dims not in (2, 3):
            raise MedicalFileError(f"'{file}': has {dims} spatial dimensions; images need 2, volumes 3")
        return dims, file
    raise MedicalFileError(f"none of the {len(files)} files of the manifest can be read as an image")


def failure_reason(err: BaseException) -> str:
    """Why a file or array failed in ``pipeline`` or ``image_transforms``, from the innermost cause
    (MONAI wraps transform errors), first line."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if isinstance(err, _BadImage) else f"cannot be read as an image ({text})"


def load_image(transform, file: Path, where: str, fields: dict | None = None) -> torch.Tensor:
    """(channels, *image_size) float32 of one file through ``transform`` (``pipeline``); ``fields`` travel
    beside 'image' in its dictionary.

    Raises:
        MedicalFileError: an unsupported suffix, no such file, or a file that cannot be read or
            converted, naming ``where``.
    """
    name = file.name.lower()
    if not any(name.endswith(s) for s in SUFFIXES):
        raise MedicalFileError(f"{where}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
    if not file.is_file():
        raise MedicalFileError(f"{where}: no such file")
    try:
        return transform({"image": str(file), **(fields or {})})["image"]
    except Exception as err:  # MONAI raises RuntimeError/ValueError/OSError for unreadable files
        raise MedicalFileError(f"{where}: {failure_reason(err)}") from err


@register("dataset", "medical_manifest", modality="medical", provides=("x", "label", "text"))
class ManifestImages(Dataset):
    """One split of the images and reports listed in a CSV manifest (see the module docstring).

    Args:
        split: "train", "val" or "test"; seed: seeds the split when the manifest has no split column.
        path: the manifest .csv, or a folder holding manifest.csv.
        image_size: every image is resized to this (an int for all axes, or one per spatial axis).
        channels: output channels (RGB -> gray by the channel mean; gray -> RGB by repetition).
        spatial_dims: 2 for images, 3 for volumes (NIfTI, multi-frame DICOM), "auto": from the first
            readable file of the manifest (say so in one line).
        val_fraction, test_fraction: per-class fractions held out (see ``modalities/user_data.py``).
        skip_bad: skip unreadable files (listed in ``self.skipped`` as (row, file, reason)) instead of failing.

    Attributes: x, labels, captions, classes, rows (each item's 1-based manifest row), files, skipped,
    groups (each item's ``group``/``speaker`` cell, None without that column), input_shape.

    Raises:
        ValueError: unknown split or fractions outside [0, 1) summing to 1 or more.
        MedicalFileError: the manifest, or a file of this split, is missing or unreadable, or has other
            spatial dimensions than ``spatial_dims`` (naming the key).
        DataError: a bad split name, a class of val or test that train lacks (multi-label: a label
            no train row has), or a multi-label text combining 'no finding' with a finding.
    """

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` is a manifest (used when data.format is auto)."""
        path = Path(path)
        return path.is_file() and path.suffix.lower() == ".csv" or (path / "manifest.csv").is_file()

    def __init__(self, split: str, seed: int, path: str, image_size=64, channels: int = 1, spatial_dims="auto",
                 val_fraction: float = 0.1, test_fraction: float = 0.2, skip_bad: bool = False):
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split '{split}'; splits are train, val, test")
        if spatial_dims not in (2, 3, "auto") or channels < 1:
            raise ValueError(f"need spatial_dims 2, 3 or 'auto' and channels >= 1, got {spatial_dims}, {channels}")
        csv_file = Path(path) / "manifest.csv" if Path(path).is_dir() else Path(path)
        columns, rows = read_manifest(csv_file)
        labels = parse_labels([r["label"] for r in rows], [f"'{csv_file}', row {r['row']}" for r in rows],
                              f"'{csv_file}'", MedicalFileError)
        self.classes, self.multi_label = labels.classes, labels.multi_label
        splits = manifest_splits(csv_file, columns, rows, labels.keys, seed=seed, val_fraction=val_fraction,
                                 test_fraction=test_fraction, error=MedicalFileError,
                                 check=check_labels_in_train if labels.multi_label else None)
        files = [Path(r["path"]) if Path(r["path"]).is_absolute() else csv_file.parent / r["path"] for r in rows]
        if spatial_dims == "auto":
            spatial_dims, first = first_spatial_dims(files)
            origin = f"{SPATIAL_DIMS_KEY}=auto took {spatial_dims} from the first readable file '{first}'"
            say_once(f"'{csv_file}': {spatial_dims}-D {'volumes' if spatial_dims == 3 else 'images'} "
                     f"({SPATIAL_DIMS_KEY}=auto, from '{first.name}')")
        else:
            origin = f"{SPATIAL_DIMS_KEY}={spatial_dims}"
        transform = pipeline(image_size, channels, spatial_dims, origin)
        images, kept, self.skipped = [], [], []
        for i in np.flatnonzero(splits == split):
            row, file = rows[i], files[i]
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
        self.labels = torch.from_numpy(labels.targets[kept])
        self.captions = [rows[i]["report"] for i in kept]
        self.rows = [rows[i]["row"] for i in kept]
        self.files = [files[i] for i in kept]
        by = group_column(columns)
        self.groups = [rows[i][by] or None for i in kept] if by else None
        self.attributes = {}

    @staticmethod
    def _load(transform, file: Path, row: dict) -> torch.Tensor:
        """(channels, *image_size) float32 of one manifest row. Raises MedicalFileError naming file and row."""
        return load_image(transform, file, f"'{file}' (manifest row {row['row']})",
                          {"report": row["report"], "label": row["label"]})

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "label": self.labels[i], "text": self.captions[i], "index": i}
