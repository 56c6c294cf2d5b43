"""What a run on the user's data (``--data``) says about it before training: items per split and
per class, the input shape after loading, and the budget in steps and epochs, so a bad crop
length, sample rate or label column shows before minutes of training."""
from __future__ import annotations

import sys

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
