"""Sequence files as datasets: NumPy ``.npz`` folders, UCR ``.tsv`` pairs and UEA/sktime ``.ts`` pairs.

Every format yields series of shape (C, T_i) with NaN for missing steps.
Splits: train and test come from the two files (``resample`` K >= 1: redrawn from both, keeping
each class's train count, the UCR/UEA resampling protocol); val is carved from train,
stratified by class and seeded, and a class of the test file that train never
has is an error (``modalities/user_data.py``, as for every loader). All splits
share one length (``length``, or the longest series of either file) and one
label map (every label value of either file, sorted, numbers numerically,
'1' and '1.0' one class). A step is real when every channel
has a value there; missing and padded steps hold 0 and are False in ``mask``,
which items carry whenever any series of the folder has such steps.
Errors name the file and, for text formats, the line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from core.notes import say_once
from core.registry import register
from modalities.user_data import DataError, assign_splits, canonical_label, label_map, resample_given


class SequenceFileError(DataError):
    """A sequence data file that is missing or cannot be parsed."""


def _fail(file, message: str, line: int | None = None):
    where = f"'{file}'" + (f", line {line}" if line is not None else "")
    raise SequenceFileError(f"{where}: {message}")


def _text_lines(file: Path):
    """(line number, stripped text) of a text file, skipping blank lines."""
    if not file.is_file():
        _fail(file, "no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail(file, f"cannot be read as UTF-8 text ({err})")
    return [(i + 1, s.strip()) for i, s in enumerate(text.splitlines()) if s.strip()]


def _floats(tokens, file, line, what="value"):
    out = np.empty(len(tokens))
    for j, token in enumerate(tokens):
        token = token.strip()
        if token in ("", "?"):
            out[j] = np.nan
            continue
        try:
            out[j] = float(token)
        except ValueError:
            _fail(file, f"cannot parse {what} {j + 1} '{token[:20]}' as a number", line)
    return out


def read_npz(file: Path):
    """Series list [(C, T)] and labels (or None) from an .npz with ``X`` (N, C, T) or (N, T) and optional ``y``."""
    if not file.is_file():
        _fail(file, "no such file")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # np.load raises zipfile, OS and value errors for corrupt archives
        _fail(file, f"is not a readable .npz archive ({type(err).__name__}: {err})")
    if "X" not in arrays:
        _fail(file, f"has no array 'X' (arrays: {', '.join(arrays) or 'none'})")
    x = arrays["X"]
    if x.ndim not in (2, 3) or not np.issubdtype(x.dtype, np.number):
        _fail(file, f"'X' must be a numeric array (N, C, T) or (N, T), got {x.dtype} {x.shape}")
    x = (x[:, None] if x.ndim == 2 else x).astype(np.float64)
    y = arrays.get("y")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        _fail(file, f"'y' must have shape ({len(x)},) to match 'X', got {y.shape}")
    return list(x), None if y is None else [str(v) for v in y.tolist()]


def read_ucr(file: Path):
    """Series list [(1, T_i)] and label strings from a UCR file (label first; tab or comma separated)."""
    series, labels = [], []
    for line, text in _text_lines(file):
        tokens = text.split("\t") if "\t" in text else text.split(",")
        if len(tokens) < 2:
            _fail(file, "expected a label followed by at least one value", line)
        labels.append(tokens[0].strip())
        series.append(_floats(tokens[1:], file, line)[None])
    if not series:
        _fail(file, "holds no series")
    return series, labels


def read_uea_ts(file: Path):
    """Series list [(C, T_i)] and label strings (or None) from a UEA/sktime ``.ts`` file."""
    header, series, labels, in_data = {}, [], [], False
    for line, text in _text_lines(file):
        if text.startswith("#"):
            continue
        if not in_data:
            if not text.startswith("@"):
                _fail(file, f"expected a @tag or @data before the series, got '{text[:30]}'", line)
            tag, _, value = text[1:].partition(" ")
            tag, value = tag.lower(), value.strip()
            if tag == "data":
                in_data = True
            elif tag == "timestamps" and value.lower() == "true":
                _fail(file, "series with @timeStamps true are not supported", line)
            elif tag == "targetlabel" and value.lower() == "true":
                _fail(file, "regression targets (@targetLabel true) are not supported", line)
            elif tag == "classlabel":
                flag, *names = value.split()
                header["classes"] = names if flag.lower() == "true" else None
            elif tag in ("dimension", "dimensions"):
                header["dimensions"] = int(_floats([value], file, line, "dimension count")[0])
            elif tag == "equallength":
                header["equal"] = value.lower() == "true"
            continue
        fields = text.split(":")
        classes = header.get("classes")
        if classes is not None:
            if len(fields) < 2:
                _fail(file, "expected dimensions followed by ':<class label>'", line)
            if fields[-1].strip() not in classes:
                _fail(file, f"class label '{fields[-1].strip()}' is not one of @classLabel {' '.join(classes)}", line)
            labels.append(fields[-1].strip())
            fields = fields[:-1]
        n_dims = header.setdefault("dimensions", len(fields))
        if len(fields) != n_dims:
            _fail(file, f"expected {n_dims} dimensions separated by ':', got {len(fields)}", line)
        dims = [_floats(f.split(","), file, line) for f in fields]
        longest = max(len(d) for d in dims)
        if header.get("equal") and series and longest != series[0].shape[1]:
            _fail(file, f"@equalLength true but this series has {longest} steps, not {series[0].shape[1]}", line)
        case = np.full((n_dims, longest), np.nan)
        for c, d in enumerate(dims):
            case[c, :len(d)] = d
        series.append(case)
    if not in_data:
        _fail(file, "has no @data line")
    if not series:
        _fail(file, "holds no series after @data")
    return series, labels if header.get("classes") is not None else None


def _pair(path, train_suffix: str, test_suffix: str) -> tuple[Path, Path]:
    """The (train, test) files of a folder, a train file, or a shared prefix."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{train_suffix}"))
        if len(found) != 1:
            _fail(path, f"expected exactly one '*{train_suffix}' file in this folder, found {len(found)}")
        train = found[0]
    else:
        train = path if path.name.endswith(train_suffix) else path.with_name(path.name + train_suffix)
    test = train.with_name(train.name[: -len(train_suffix)] + test_suffix)
    return train, test


def detect_format(path) -> str:
    """The registered loader name for a data folder: 'sequence_npz', 'ucr' or 'uea_ts'.

    Raises:
        SequenceFileError: the folder holds none of the known layouts.
    """
    path = Path(path)
    if (path / "train.npz").is_file():
        return "sequence_npz"
    if list(path.glob("*_TRAIN.tsv")):
        return "ucr"
    if list(path.glob("*_TRAIN.ts")):
        return "uea_ts"
    _fail(path, "holds no train.npz, <Name>_TRAIN.tsv or <Name>_TRAIN.ts")


def fixed_length(series, length: int) -> np.ndarray:
    """Every (C, T_i) series cropped or NaN-padded at the end to ``length``: (N, C, length) float64,
    NaN (and inf) where a value is missing."""
    x = np.full((len(series), series[0].shape[0], length), np.nan)
    for i, s in enumerate(series):
        x[i, :, :min(length, s.shape[1])] = s[:, :length]
    return x


def masked(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x with missing values 0, float32; mask (N, T) True where every channel has a value) of
    x (N, C, T): how every series loader (and ``inference``) feeds missing and padded steps."""
    mask = np.isfinite(x).all(axis=1)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32), mask


class FileSeries(Dataset):
    """A split of train/test series lists (see the module docstring); subclasses read the files.

    Attributes: x (N, C, T), mask (N, T), labels, classes, captions, files (each item's file) and
    rows (its position in that file, 1-based: the n-th series), input_shape.

    Raises:
        ValueError: unknown split, a val_fraction outside [0, 1) or a resample that is not an integer >= 0.
        SequenceFileError: series of different channel counts, or labels in only one file.
    """

    def __init__(self, split: str, seed: int, train, test, files, val_fraction: float = 0.1, length=None,
                 resample: int = 0):
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split '{split}'; splits are train, val, test")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        (train_x, train_y), (test_x, test_y) = train, test
        if (train_y is None) != (test_y is None):
            _fail(files[0] if train_y is None else files[1], f"has no labels but '{files[int(train_y is None)]}' has")
        channels = {s.shape[0] for s in train_x + test_x}
        if len(channels) != 1:
            _fail(files[0], f"its series and those of '{files[1]}' differ in channel count: {sorted(channels)}")
        if train_y is None:
            train_y, test_y = ["unlabelled"] * len(train_x), ["unlabelled"] * len(test_x)
        train_y, test_y = [canonical_label(v) for v in train_y], [canonical_label(v) for v in test_y]
        mapping = label_map(train_y + test_y)
        length = int(length) if length else max(s.shape[1] for s in train_x + test_x)
        x, mask = masked(fixed_length(train_x + test_x, length))
        labels = np.array([mapping[v] for v in train_y + test_y], dtype=np.int64)
        given = resample_given(train_y + test_y, ["train"] * len(train_x) + ["test"] * len(test_x), resample)
        if resample:
            say_once(f"'{files[0].parent}': resample {resample}: train and test redrawn from both files, "
                     f"{len(train_x)} train items ({len(test_x)} test) with each class's train count kept")
        splits = assign_splits(train_y + test_y, given, seed=seed,
                               val_fraction=val_fraction, test_fraction=0.0, source=f"'{files[0].parent}'")
        index = np.flatnonzero(splits == split)
        self.has_mask = bool((~mask).any())
        self.x, self.mask = torch.from_numpy(x[index]), torch.from_numpy(mask[index])
        self.labels = torch.from_numpy(labels[index])
        self.classes = list(mapping)
        self.captions = [f"a series of class {self.classes[i]}" for i in self.labels.tolist()]
        self.attributes = {"length": self.mask.sum(dim=1).numpy().astype(np.float64)}
        self.input_shape = (channels.pop(), length)
        origin = [(files[0], n + 1) for n in range(len(train_x))] + [(files[1], n + 1) for n in range(len(test_x))]
        self.files, self.rows = [origin[i][0] for i in index], [origin[i][1] for i in index]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"x": self.x[i], "label": self.labels[i], "text": self.captions[i], "index": i}
        if self.has_mask:
            item["mask"] = self.mask[i]
        return item


@register("dataset", "sequence_npz", modality="sequence", provides=("x", "series", "label", "text"))
class NpzSeries(FileSeries):
    """A folder with train.npz and test.npz: arrays X (N, C, T) or (N, T), optional labels y (N,)."""

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` looks like this layout (used when data.format is auto)."""
        return (Path(path) / "train.npz").is_file()

    def __init__(self, split: str, seed: int, path: str, val_fraction: float = 0.1, length: int | None = None,
                 resample: int = 0):
        files = (Path(path) / "train.npz", Path(path) / "test.npz")
        super().__init__(split, seed, read_npz(files[0]), read_npz(files[1]), files, val_fraction, length, resample)


@register("dataset", "ucr", modality="sequence", provides=("x", "series", "label", "text"))
class UCRSeries(FileSeries):
    """A UCR archive pair <Name>_TRAIN.tsv / <Name>_TEST.tsv (label first, NaN-padded to equal length)."""

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` looks like this layout (used when data.format is auto)."""
        return Path(path).is_dir() and any(Path(path).glob("*_TRAIN.tsv"))

    def __init__(self, split: str, seed: int, path: str, val_fraction: float = 0.1, length: int | None = None,
                 resample: int = 0):
        files = _pair(path, "_TRAIN.tsv", "_TEST.tsv")
        super().__init__(split, seed, read_ucr(files[0]), read_ucr(files[1]), files, val_fraction, length, resample)


@register("dataset", "uea_ts", modality="sequence", provides=("x", "series", "label", "text"))
class UEASeries(FileSeries):
    """A UEA/sktime pair <Name>_TRAIN.ts / <Name>_TEST.ts (multivariate, possibly unequal lengths)."""

    @staticmethod
    def accepts(path) -> bool:
        """Whether ``--data path`` looks like this layout (used when data.format is auto)."""
        return Path(path).is_dir() and any(Path(path).glob("*_TRAIN.ts"))

    def __init__(self, split: str, seed: int, path: str, val_fraction: float = 0.1, length: int | None = None,
                 resample: int = 0):
        files = _pair(path, "_TRAIN.ts", "_TEST.ts")
        super().__init__(split, seed, read_uea_ts(files[0]), read_uea_ts(files[1]), files, val_fraction, length,
                         resample)
