"""What a run on the user's data (``--data``) says about it before training: items per split and
per class, the input shape after loading, and the budget in steps and epochs, so a bad crop
length, sample rate or label column shows before minutes of training; and the same counts with a
hash of the data for results.json (``data_facts``, read by the model card)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from core.process_group import is_main

AXES = {2: "(C, T)", 3: "(C, H, W)", 4: "(C, D, H, W)"}  # by the length of input_shape


def class_counts(labels: torch.Tensor, n_classes: int) -> list[int]:
    """Items per class: labels (N,) class indices, or (N, K) multi-hot (an item counts once per label)."""
    if labels.dim() == 2:
        return [int(v) for v in labels.sum(0).tolist()]
    return [int(v) for v in torch.bincount(labels.long(), minlength=n_classes).tolist()]


def describe_data(datasets: dict, train_config: dict, world: int = 1, max_classes: int = 12) -> list[str]:
    """Lines that describe a run's data and budget.

    Args:
        datasets: {"train", "val", "test"}, each with ``labels``, ``classes`` and ``input_shape``.
        train_config: cfg["train"] after ``training.budget.fit_budget`` (the steps the run will take).
        world: processes (the global batch is batch_size x world x accumulate_steps).
        max_classes: classes listed by name; the rest are summed into one "... more" entry.

    Returns:
        ["data: items train N, val N, test N", "data: per class (train/val/test): a 1/0/2, ...",
        "data: input shape (C, T) = (1, 128)", "data: budget 300 steps of 32 items = 9.4 epochs of N"].
    """
    splits = ("train", "val", "test")
    sizes = ", ".join(f"{s} {len(datasets[s])}" for s in splits)
    classes = list(datasets["train"].classes)
    counts = [class_counts(datasets[s].labels, len(classes)) for s in splits]
    per_class = [f"{name} {'/'.join(str(c[i]) for c in counts)}" for i, name in enumerate(classes[:max_classes])]
    if len(classes) > max_classes:
        rest = "/".join(str(sum(c[max_classes:])) for c in counts)
        per_class.append(f"... {len(classes) - max_classes} more classes {rest}")
    shape = tuple(datasets["train"].input_shape)
    tc = train_config
    global_batch = tc["batch_size"] * world * tc["accumulate_steps"]
    n_train = len(datasets["train"])
    epochs = tc["steps"] * global_batch / n_train
    return [f"data: items {sizes} ({len(classes)} classes)",
            f"data: per class (train/val/test): {', '.join(per_class)}",
            f"data: input shape {AXES.get(len(shape), 'per item')} = {shape}",
            f"data: budget {tc['steps']} steps of {global_batch} items = {epochs:.1f} epochs of {n_train}"]


def print_data_summary(cfg: dict, datasets: dict, world: int = 1) -> None:
    """Print ``describe_data``'s lines on stderr (rank 0) when the run reads the user's data (``data.path``)."""
    if cfg["data"]["path"] is None or not is_main():
        return
    for line in describe_data(datasets, cfg["train"], world):
        print(line, file=sys.stderr, flush=True)


def manifest_file(path) -> Path | None:
    """The manifest CSV a ``data.path`` names (the .csv itself, or a folder's manifest.csv), else None."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return path
    return path / "manifest.csv" if (path / "manifest.csv").is_file() else None


def item_ids(dataset, split: str, name: str, root) -> list[str]:
    """Each item's file (relative to ``root`` when under it), else ``<name>/<split>/<index>``."""
    files = getattr(dataset, "files", None)
    if files is None:
        return [f"{name}/{split}/{i}" for i in range(len(dataset))]
    root = Path(root).resolve() if root is not None else None
    out = []
    for f in files:
        f = Path(f).resolve()
        out.append(str(f.relative_to(root)) if root is not None and f.is_relative_to(root) else str(f))
    return out


def data_facts(cfg: dict, datasets: dict) -> dict:
    """results.json's ``data``: what a run trained and was evaluated on.

    Returns:
        {"name": the loader, "path": ``data.path`` (None: built-in data), "seed": ``seed``,
        "sha256": hex digest, "sha256_of": "manifest file" (its bytes, when ``data.path`` is a
        manifest) or "sorted item ids" (every split's ids, one a line, sorted),
        "items": {split: N}, "per_class": {class: [train, val, test]} (an item counts once per label)}.
    """
    splits = ("train", "val", "test")
    name, path = cfg["data"]["name"], cfg["data"]["path"]
    manifest = manifest_file(path)
    if manifest is not None:
        digest, of = hashlib.sha256(manifest.read_bytes()).hexdigest(), "manifest file"
    else:
        root = path if path is not None and Path(path).is_dir() else None
        ids = sorted(i for s in splits for i in item_ids(datasets[s], s, name, root))
        digest, of = hashlib.sha256("\n".join(ids).encode()).hexdigest(), "sorted item ids"
    classes = list(datasets["train"].classes)
    counts = [class_counts(datasets[s].labels, len(classes)) for s in splits]
    return {"name": name, "path": path, "seed": cfg["seed"], "sha256": digest, "sha256_of": of,
            "items": {s: len(datasets[s]) for s in splits},
            "per_class": {str(c): [n[i] for n in counts] for i, c in enumerate(classes)}}
