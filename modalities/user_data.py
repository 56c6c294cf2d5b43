"""What every loader of a user's files shares: one label mapping, one split policy, one CSV reader.

Labels: ``canonical_label`` makes '1', '1.0' and ' 1' one class; ``label_map``
orders the classes numerically when every name is a number, alphabetically otherwise.

Splits (``assign_splits``), the same for audio, medical and sequence files:

- a split given per row (a ``split`` column, or the train and test files of a
  series pair) is honoured; ``val``, ``valid``, ``validation`` and ``dev`` all
  mean val. Any other name is an error naming the row.
- train and test given but no val: val is carved from train (stratified by
  class, seeded, ``val_fraction``), and one line says so.
- no split given: test and val are carved from all rows (``test_fraction``,
  ``val_fraction``), stratified by class and seeded.
- with groups (a ``speaker`` or ``group`` column) whole groups are carved
  instead of items, so no group is in two splits.
- a class found in val or test but never in train is an error naming the class
  and the split.
- ``resample_given`` redraws a given train/test split (the UCR/UEA resampling
  protocol) before any of the above.

Carving never empties a class of train: per class, round(fraction * n) items
(halves rounded up, so 5 items and val_fraction 0.1 give one val item) go to
each held-out split, at most n - 1 in all.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.notes import say_once

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
GROUP_COLUMNS = ("speaker", "group")


class DataError(UserError, ValueError):
    """User data that cannot be used as it is: a bad split name, a class missing from train, a bad CSV."""


def canonical_label(value) -> str:
    """A label as one class name: stripped text, numbers written one way ('1.0' -> '1', '2.50' -> '2.5')."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if not np.isfinite(number):
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def label_map(values) -> dict[str, int]:
    """{class name: 0..K-1} over the canonical names of ``values``, numerically when all are numbers.

    Look labels up with ``mapping[canonical_label(v)]``.
    """
    distinct = sorted({canonical_label(v) for v in values})
    try:
        distinct = sorted(distinct, key=float)
    except ValueError:
        pass
    return {v: i for i, v in enumerate(distinct)}


def parse_split(value: str, where: str, error=DataError) -> str:
    """'train' | 'val' | 'test' for a split name (case-insensitive aliases, see SPLIT_ALIASES).

    Raises:
        ``error`` (a DataError): any other name, naming ``where`` (the file and row).
    """
    name = SPLIT_ALIASES.get(str(value).strip().lower())
    if name is None:
        raise error(f"{where}: split '{value}' is not one of {', '.join(SPLIT_ALIASES)}")
    return name


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5 + 1e-9))


def per_class_split(labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """For items with ``labels`` (N,), the split each goes to: round(f * n_c) of every class c
    to each split of ``fractions`` (in order, e.g. {"test": 0.2, "val": 0.1}), the rest 'train'.
    At most n_c - 1 items of a class leave train."""
    out = np.full(len(labels), "train", dtype=object)
    for c in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for split, fraction in fractions.items():
            n = min(_round_half_up(fraction * len(members)), len(members) - 1 - start)
            out[members[start:start + n]] = split
            start += n
    return out


def group_split(groups: list, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """For items of ``groups`` (N,), the split each goes to: whole groups, in a seeded order,
    fill each split of ``fractions`` to round(f * N) items; the last group always stays in train."""
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = sorted(members, key=str)
    order = [names[j] for j in rng.permutation(len(names))]
    targets = {split: _round_half_up(f * len(groups)) for split, f in fractions.items()}
    counts = dict.fromkeys(targets, 0)
    out = np.full(len(groups), "train", dtype=object)
    for group in order[:-1]:
        split = next((s for s in targets if counts[s] < targets[s]), None)
        if split is None:
            break
        counts[split] += len(members[group])
        out[members[group]] = split
    return out


def assign_splits(labels, given=None, groups=None, *, seed: int, val_fraction: float, test_fraction: float,
                  source: str, check=None) -> np.ndarray:
    """The split ('train' | 'val' | 'test') of every item (see the module docstring).

    Args:
        labels: (N,) class names (canonical) or indices.
        given: (N,) split names already parsed by ``parse_split``, or None for no split column.
        groups: (N,) group of each item (None entries are groups of one), or None.
        seed: seeds the carving; source: names the data in the printed line and in errors.
        check: ``check(labels, splits, source)`` run on the result; default ``check_classes_in_train``
            (multi-label data, whose ``labels`` are combinations, checks each label instead:
            ``multi_label.check_labels_in_train``).

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.
        DataError: a class in val or test that train never has.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need val_fraction, test_fraction >= 0 summing below 1, "
                         f"got {val_fraction} and {test_fraction}")
    labels = np.asarray(labels)
    if groups is not None:
        groups = [g if g is not None else f"\0item{i}" for i, g in enumerate(groups)]
    rng = np.random.default_rng([seed, 7, 4423])

    def carve(index: np.ndarray, fractions: dict) -> np.ndarray:
        if groups is not None:
            return group_split([groups[i] for i in index], fractions, rng)
        return per_class_split(labels[index], fractions, rng)

    if given is None:
        splits = carve(np.arange(len(labels)), {"test": test_fraction, "val": val_fraction})
    else:
        splits = np.array(list(given), dtype=object)
        if "val" not in set(splits.tolist()) and val_fraction > 0:
            train = np.flatnonzero(splits == "train")
            splits[train] = carve(train, {"val": val_fraction})
            by = "whole groups" if groups is not None else "stratified by class"
            say_once(f"{source}: no val split given; val = {int((splits == 'val').sum())} of the "
                     f"{len(train)} train items ({by}, seed {seed}, val_fraction {val_fraction})")
    (check or check_classes_in_train)(labels, splits, source)
    return splits


def resample_given(labels, given, resample: int) -> np.ndarray:
    """``given`` (N,) 'train'/'test' names redrawn as resample ``resample`` of the UCR/UEA protocol.

    Resample 0 is the split as given. Resample K >= 1 pools each class's train and test items and
    draws, seeded by K, as many train items as that class has in ``given`` (the rest test): the
    stratified resamples of Bagnall et al. 2017 (tsml, aeon), on which the UCR/UEA literature
    reports means, so that one published split's luck can be told from a method's.

    Raises:
        ValueError: ``resample`` is not an integer >= 0.
    """
    if isinstance(resample, bool) or not isinstance(resample, (int, np.integer)) or resample < 0:
        raise ValueError(f"resample must be an integer >= 0 (0: the files' own split), got {resample!r}")
    out = np.array(list(given), dtype=object)
    if resample == 0:
        return out
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(resample), 7, 2017])
    for label in sorted(set(labels.tolist()), key=str):
        members = np.flatnonzero(labels == label)
        n_train = int((out[members] == "train").sum())
        drawn = rng.permutation(members)
        out[drawn[:n_train]], out[drawn[n_train:]] = "train", "test"
    return out


def check_classes_in_train(labels: np.ndarray, splits: np.ndarray, source: str) -> None:
    """Raises DataError when a class of the val or test split has no train item (a probe could never predict it)."""
    seen = set(labels[splits == "train"].tolist())
    for split in ("val", "test"):
        unseen = sorted(set(labels[splits == split].tolist()) - seen, key=str)
        if unseen:
            count = int(np.isin(labels[splits == split], unseen).sum())
            raise DataError(f"{source}: class '{unseen[0]}' is in the {split} split ({count} items"
                            f"{' of classes ' + ', '.join(map(str, unseen)) if len(unseen) > 1 else ''}) but never "
                            "in train; move some of its items to train or drop it")


def read_csv(csv_file: Path, error=DataError) -> tuple[list[str], list[dict]]:
    """(lower-cased column names, one {column: stripped text, 'row': 1-based data row} per non-blank line).

    Raises:
        ``error``: no such file, not a UTF-8 CSV, or a header without rows.
    """
    if not csv_file.is_file():
        raise error(f"'{csv_file}': no such file")
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as f:
            lines = [line for line in csv.reader(f) if any(cell.strip() for cell in line)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise error(f"'{csv_file}': cannot be read as a UTF-8 CSV ({err})") from None
    if not lines:
        raise error(f"'{csv_file}': is empty")
    columns = [h.strip().lower() for h in lines[0]]
    rows = [{**{c: (values[j].strip() if j < len(values) else "") for j, c in enumerate(columns)}, "row": n}
            for n, values in enumerate(lines[1:], start=1)]
    if not rows:
        raise error(f"'{csv_file}': has a header but no rows")
    return columns, rows


def group_column(columns: list[str]) -> str | None:
    """The column that groups rows (``speaker`` or ``group``), or None."""
    return next((c for c in GROUP_COLUMNS if c in columns), None)


def manifest_splits(csv_file: Path, columns: list[str], rows: list[dict], labels: list[str], *, seed: int,
                    val_fraction: float, test_fraction: float, error=DataError, check=None) -> np.ndarray:
    """The split of every manifest row: its ``split`` column (parsed, naming a bad row) and
    ``speaker``/``group`` column when present, through ``assign_splits`` (``check`` goes to it)."""
    given = None
    if "split" in columns:
        given = [parse_split(r["split"], f"'{csv_file}', row {r['row']}", error) for r in rows]
    by = group_column(columns)
    groups = [r[by] or None for r in rows] if by else None
    return assign_splits(labels, given, groups, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                         source=f"'{csv_file}'", check=check)
