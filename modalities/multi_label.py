"""Labels of a manifest's ``label`` column, one per row or several joined by '|'.

Single-label (no label text holds SEPARATOR): every text is one class, as ``user_data`` maps
them (targets (N,) int64 in 0..K-1).

Multi-label (any label text holds SEPARATOR, the chest X-ray convention, e.g.
``effusion|nodule``): each text is split at '|', every part made one canonical name
(``user_data.canonical_label``; empty parts such as in ``a||b`` are ignored), the names of all
rows ordered as ``user_data.label_map`` orders classes, and a row's target is the multi-hot
vector (K,) float32 over them. ``no finding`` (any case; NO_FINDING) is a row with none of the
labels (all zeros) and no label of its own; it cannot be combined with a label. An empty label
stays an error (``read_manifest``): a forgotten label never silently means "no finding".

Splits of multi-label rows are carved per combination of labels (the row's names, sorted and
joined, e.g. ``effusion|nodule``: ``keys``), so carving never takes the only row of a
combination out of train; then each label, not each combination, must be in train
(``check_labels_in_train``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core.notes import say_once
from modalities.user_data import DataError, canonical_label, label_map

SEPARATOR = "|"
NO_FINDING = "no finding"


class Labels(NamedTuple):
    """The labels of N rows: class names, targets ((N,) int64 or (N, K) float32 multi-hot), the
    text each row's split is stratified by (N,), and whether they are multi-label."""
    classes: list[str]
    targets: np.ndarray
    keys: list[str]
    multi_label: bool


def names_of(key: str) -> list[str]:
    """The label names of a canonical multi-label text (``keys`` entry); [] for NO_FINDING."""
    return [] if key == NO_FINDING else key.split(SEPARATOR)


def label_set(text: str, where: str, error=DataError) -> str:
    """The canonical key of one multi-label text: its names, sorted and joined by '|', or NO_FINDING.

    Raises:
        ``error``: NO_FINDING together with a label, or no label at all (e.g. ``|``), naming ``where``.
    """
    names = sorted({canonical_label(part) for part in str(text).split(SEPARATOR) if part.strip()})
    none = [n for n in names if n.lower() == NO_FINDING]
    if none and len(names) > 1:
        raise error(f"{where}: label '{text}' combines '{none[0]}' with findings; write either '{NO_FINDING}' or "
                    "the findings joined by '|'")
    if not names:
        raise error(f"{where}: label '{text}' names no label; write '{NO_FINDING}' for an item without findings")
    return NO_FINDING if none else SEPARATOR.join(names)


def parse_labels(texts: list[str], wheres: list[str], source: str, error=DataError) -> Labels:
    """The ``Labels`` of label texts (N,); ``wheres`` (N,) name each row in errors, ``source`` the
    data in the one line that says the labels are multi-label.

    Raises:
        ``error``: a multi-label text ``label_set`` rejects.
    """
    if not any(SEPARATOR in str(t) for t in texts):
        names = [canonical_label(t) for t in texts]
        mapping = label_map(names)
        return Labels(list(mapping), np.array([mapping[n] for n in names], dtype=np.int64), names, False)
    keys = [label_set(t, w, error) for t, w in zip(texts, wheres)]
    mapping = label_map({n for k in keys for n in names_of(k)})
    targets = np.zeros((len(keys), len(mapping)), dtype=np.float32)
    for i, key in enumerate(keys):
        targets[i, [mapping[n] for n in names_of(key)]] = 1.0
    say_once(f"{source}: multi-label ('|' in the label column): {len(mapping)} labels "
             f"({', '.join(mapping)}); {keys.count(NO_FINDING)} rows are '{NO_FINDING}' (none of them)")
    return Labels(list(mapping), targets, keys, True)


def check_labels_in_train(keys, splits: np.ndarray, source: str) -> None:
    """Raises DataError when a label of a val or test row is on no train row (no probe could learn it).
    ``keys`` (N,): canonical multi-label texts; ``splits`` (N,): 'train' | 'val' | 'test'."""
    keys = list(keys)
    seen = {n for k, s in zip(keys, splits) if s == "train" for n in names_of(k)}
    for split in ("val", "test"):
        unseen = sorted({n for k, s in zip(keys, splits) if s == split for n in names_of(k)} - seen, key=str)
        if unseen:
            raise DataError(f"{source}: label '{unseen[0]}' is on rows of the {split} split"
                            f"{' (as are ' + ', '.join(unseen[1:]) + ')' if len(unseen) > 1 else ''} but on no train "
                            "row; move some of those rows to train or drop the label")
