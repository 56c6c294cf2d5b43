"""Audio files as datasets: a folder of class subfolders, or a CSV manifest.

* ``audio_folder``: ``root/<class>/*.wav|flac|ogg|aiff|aif``; the class is the
  folder name; captions read "a recording of <class>" (``_`` and ``-`` read as spaces).
* ``audio_manifest``: a CSV with a ``path`` column (relative to the CSV's
  folder, or absolute) and optional ``label``, ``caption``, ``speaker`` and
  ``split`` (train/val/test) columns. Without a ``label`` column every file is
  class 0, "unlabelled" (a linear probe on one class then measures nothing;
  add labels to evaluate). A missing or empty caption reads "a recording of <label>".

Files are read with soundfile (any rate and channel count), averaged to mono,
resampled with librosa to ``sample_rate`` and center-cropped (or zero-padded at
the end) to ``clip_samples``. Each split loads its own files into memory when
it is built, so a bad file fails at construction, naming the file and, for a
manifest, its data row ("row 1" is the first line after the header).

Splits and labels follow ``modalities/user_data.py``, as for every loader: a
``split`` column is honoured (val carved from train when it names only train
and test), without one all three are carved per class, seeded; a ``speaker``
(or ``group``) column keeps each speaker inside one split.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from modalities.user_data import (
    DataError,
    canonical_label,
    group_column,
    label_map,
    parse_split,
    assign_splits,
    read_csv,
)
from core.registry import register

SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
SPLITS = ("train", "val", "test")
UNLABELLED = "unlabelled"
log = logging.getLogger(__name__)


class AudioFileError(DataError):
    """An audio file or manifest that is missing or cannot be read."""


@dataclass
class Row:
    file: Path
    label: str
    caption: str
    speaker: str | None = None  # or any group kept inside one split (a 'speaker' or 'group' column)
    split: str | None = None  # 'train' | 'val' | 'test' when the manifest has a split column
    row: int | None = None  # 1-based data row of a manifest

    def where(self) -> str:
        return f"'{self.file}'" + (f" (manifest row {self.row})" if self.row is not None else "")


def read_audio(file: Path, sample_rate: int, clip_samples: int, where: str | None = None) -> tuple[np.ndarray, float]:
    """A mono float32 clip (clip_samples,) at ``sample_rate`` and the file's duration in seconds.

    ``where`` names the file in errors (default: its path).

    Raises:
        AudioFileError: the file is missing, unreadable, empty or holds non-finite samples.
    """
    where = where or f"'{file}'"
    if not file.is_file():
        raise AudioFileError(f"{where}: no such file")
    try:
        data, rate = sf.read(str(file), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types for damaged or unknown formats
        reason = f"{type(err).__name__}: {err}".split("\n")[0]
        raise AudioFileError(f"{where}: cannot be read as audio ({reason})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{where}: holds no samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioFileError(f"{where}: holds non-finite samples")
    return fit_clip(mono, rate, sample_rate, clip_samples), data.shape[0] / rate


def fit_clip(mono: np.ndarray, rate: int, sample_rate: int, clip_samples: int) -> np.ndarray:
    """A mono signal (T,) at ``rate`` as the model's clip: resampled with librosa to ``sample_rate``,
    center-cropped or zero-padded at the end to (clip_samples,) float32. What every audio loader
    (and ``inference.preprocess``) does after reading a file."""
    if rate != sample_rate:
        import librosa  # slow to import; only needed when rates differ
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate)
    if len(mono) >= clip_samples:
        start = (len(mono) - clip_samples) // 2
        mono = mono[start:start + clip_samples]
    else:
        mono = np.pad(mono, (0, clip_samples - len(mono)))
    return mono.astype(np.float32)


class AudioFiles(Dataset):
    """One split of a list of ``Row``s, loaded into memory. Items: x (1, clip_samples) float32,
    label int64, text str, index int. Attributes: classes, labels, captions, files, rows (each item's
    1-based manifest row, None for a folder), speakers,
    sample_rate, input_shape, attributes ({"duration_s"}), skipped (bad files left out).

    Raises:
        ValueError: unknown split, or fractions outside [0, 1) or summing to 1 or more.
        AudioFileError: a bad file (unless ``skip_bad``), or an empty train or test split, or a val split
            whose files are all unreadable.
    """

    def __init__(self, split: str, seed: int, rows: list[Row], source: str, sample_rate: int, clip_samples: int,
                 val_fraction: float, test_fraction: float, skip_bad: bool):
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")
        mapping = label_map(r.label for r in rows)
        given = [r.split for r in rows] if all(r.split is not None for r in rows) else None
        groups = [r.speaker for r in rows] if any(r.speaker is not None for r in rows) else None
        splits = assign_splits([canonical_label(r.label) for r in rows], given, groups, seed=seed,
                               val_fraction=val_fraction, test_fraction=test_fraction, source=source)
        mine = [r for r, s in zip(rows, splits) if s == split]
        waves, kept, durations, errors = [], [], [], []
        for r in mine:
            try:
                wave, duration = read_audio(r.file, sample_rate, clip_samples, r.where())
            except AudioFileError as err:
                if not skip_bad:
                    raise
                errors.append(str(err))
                continue
            waves.append(wave)
            kept.append(r)
            durations.append(duration)
        self.skipped = len(errors)
        if errors:
            log.warning("%s: skipped %d of %d unreadable audio files of the %s split (first: %s)",
                        source, len(errors), len(mine), split, errors[0])
        if not kept and (split != "val" or mine):  # an empty val split only skips validation
            raise AudioFileError(f"{source}: the {split} split holds no readable files (of {len(rows)} rows); "
                                 "add files, a 'split' column, or change val_fraction/test_fraction")
        self.waves = torch.from_numpy(np.stack(waves)).unsqueeze(1) if waves else torch.zeros(0, 1, clip_samples)
        self.labels = torch.tensor([mapping[canonical_label(r.label)] for r in kept], dtype=torch.long)
        self.captions = [r.caption for r in kept]
        self.files = [r.file for r in kept]
        self.rows = [r.row for r in kept]
        self.speakers = [r.speaker for r in kept] if any(r.speaker is not None for r in rows) else None
        self.classes = list(mapping)
        self.sample_rate = sample_rate
        self.input_shape = (1, clip_samples)
        self.attributes = {"duration_s": np.array(durations, dtype=np.float64)}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.waves[i], "label": self.labels[i], "text": self.captions[i], "index": i}


def _caption_of(label: str) -> str:
    return "a recording of " + " ".join(label.replace("_", " ").replace("-", " ").split())


def folder_rows(root: Path) -> list[Row]:
    """Rows of ``root/<class>/<file>`` (sorted), skipping non-audio files and classes without audio.

    Raises:
        AudioFileError: ``root`` is not a folder or holds no class folder with audio files.
    """
    if not root.is_dir():
        raise AudioFileError(f"'{root}': no such folder")
    rows = [Row(f, d.name, _caption_of(d.name)) for d in sorted(p for p in root.iterdir() if p.is_dir())
            for f in sorted(d.iterdir()) if f.is_file() and f.suffix.lower() in SUFFIXES]
    if not rows:
        raise AudioFileError(f"'{root}': holds no class folders with audio files ({'/'.join(SUFFIXES)}); "
                             "expected root/<class>/<file>, or use a manifest.csv")
    return rows


def manifest_rows(csv_file: Path) -> list[Row]:
    """Rows of a manifest CSV (see the module docstring).

    Raises:
        AudioFileError: no such file, no ``path`` column, no rows, an empty path or label,
            or a split name that is not train/val/test or an alias (naming the row).
    """
    columns, records = read_csv(csv_file, AudioFileError)
    if "path" not in columns:
        raise AudioFileError(f"'{csv_file}': has no 'path' column (columns: {', '.join(columns) or 'none'})")
    by = group_column(columns)
    rows = []
    for cell in records:
        where = f"'{csv_file}', row {cell['row']}"
        if not cell["path"]:
            raise AudioFileError(f"{where}: empty path")
        label = cell["label"] if "label" in columns else UNLABELLED
        if not label:
            raise AudioFileError(f"{where}: empty label (label every row, or drop the column)")
        split = parse_split(cell["split"], where, AudioFileError) if "split" in columns else None
        caption = cell.get("caption") or ("a recording" if label == UNLABELLED else _caption_of(label))
        rows.append(Row(csv_file.parent / cell["path"], label, caption, (cell[by] or None) if by else None, split,
                        cell["row"]))
    return rows


def detect_format(path) -> str:
    """The registered loader for ``path``: 'audio_manifest' or 'audio_folder'.

    Raises:
        AudioFileError: ``path`` is missing or is neither a .csv, a folder with
            manifest.csv, nor a folder of class subfolders holding audio files.
    """
    path = Path(path)
    if (path.is_file() and path.suffix.lower() == ".csv") or (path / "manifest.csv").is_file():
        return "audio_manifest"
    if path.is_dir() and any(f.suffix.lower() in SUFFIXES for d in path.iterdir() if d.is_dir()
                             for f in d.iterdir()):
        return "audio_folder"
    what = "no such file or folder" if not path.exists() else "is not a .csv manifest"
    raise AudioFileError(f"'{path}': {what}, a folder with manifest.csv, or a folder of class subfolders "
                         f"holding audio files ({'/'.join(SUFFIXES)})")


def _detects(path, name: str) -> bool:
    """Whether ``detect_format(path)`` is ``name`` (False where it raises)."""
    try:
        return detect_format(path) == name
    except (AudioFileError, OSError):
        return False


@register("dataset", "audio_folder", modality="audio", provides=("x", "series", "label", "text"))
class AudioFolder(AudioFiles):
    """Audio files in class subfolders, root/<class>/*.wav|flac|ogg|aiff|aif, split by class and seed."""

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` is this layout (data.format auto); a manifest.csv wins over subfolders."""
        return _detects(path, "audio_folder")

    def __init__(self, split: str, seed: int, path: str, sample_rate: int = 16000, clip_samples: int = 16000,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, skip_bad: bool = False):
        super().__init__(split, seed, folder_rows(Path(path)), f"audio_folder '{path}'", sample_rate, clip_samples,
                         val_fraction, test_fraction, skip_bad)


@register("dataset", "audio_manifest", modality="audio", provides=("x", "series", "label", "text"))
class AudioManifest(AudioFiles):
    """Audio files listed in a CSV (path, optional label, caption, speaker, split); ``path`` is the CSV
    or a folder holding manifest.csv."""

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` is a .csv or a folder holding manifest.csv (data.format auto)."""
        return _detects(path, "audio_manifest")

    def __init__(self, split: str, seed: int, path: str, sample_rate: int = 16000, clip_samples: int = 16000,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, skip_bad: bool = False):
        csv_file = Path(path) / "manifest.csv" if Path(path).is_dir() else Path(path)
        super().__init__(split, seed, manifest_rows(csv_file), f"audio_manifest '{csv_file}'", sample_rate,
                         clip_samples, val_fraction, test_fraction, skip_bad)
