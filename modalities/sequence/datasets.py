"""Built-in sequence dataset. Items: x (C, T) float32, label int64, text str, index int."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from modalities.sequence import synthetic
from core.registry import register


@register("dataset", "sequence_builtin", modality="sequence", provides=("x", "series", "label", "text"))
class BuiltinSequence(Dataset):
    """The built-in shape families of ``synthetic.py``: 8 classes, captions, train/val/test.

    Args:
        split: "train", "val" or "test".
        seed: the data seed; same seed, same series.
        channels, length: the shape (C, T) of every series.
        train_per_class, val_per_class, test_per_class: series per class in each split.

    Raises:
        ValueError: unknown split or a non-positive size.
    """

    def __init__(self, split: str, seed: int, channels: int = 3, length: int = 128,
                 train_per_class: int = 128, val_per_class: int = 32, test_per_class: int = 64):
        sizes = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
        if split not in sizes:
            raise ValueError(f"unknown split '{split}'; splits are {', '.join(sizes)}")
        x, labels, captions, attributes = synthetic.generate(split, seed, sizes[split], channels, length)
        self.x = torch.from_numpy(x)
        self.labels = torch.from_numpy(labels)
        self.captions = captions
        self.attributes = attributes
        self.classes = list(synthetic.CLASSES)
        self.input_shape = (channels, length)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "label": self.labels[i], "text": self.captions[i], "index": i}
