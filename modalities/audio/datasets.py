"""Audio datasets. Items are dicts: x (1, T) float32 waveform, label int, text str, index int."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from modalities.audio import synthetic
from core.registry import register


@register("dataset", "audio_builtin", modality="audio", provides=("x", "series", "label", "text"))
class BuiltinAudio(Dataset):
    """The built-in sound-event set of ``synthetic.py``: 8 classes, captions, train/val/test.

    Args:
        split: "train", "val" or "test".
        seed: the data seed; same seed, same clips.
        per_class: clips per class in this split (``train_per_class`` etc. in the config).
    """

    def __init__(self, split: str, seed: int, sample_rate: int = 16000, clip_samples: int = 16000,
                 train_per_class: int = 128, val_per_class: int = 16, test_per_class: int = 64):
        per_class = {"train": train_per_class, "val": val_per_class, "test": test_per_class}[split]
        waves, labels, captions, attributes = synthetic.generate(split, seed, per_class, sample_rate, clip_samples)
        self.waves = torch.from_numpy(waves).unsqueeze(1)
        self.labels = torch.from_numpy(labels)
        self.captions = captions
        self.attributes = attributes
        self.classes = list(synthetic.CLASSES)
        self.sample_rate = sample_rate
        self.input_shape = (1, clip_samples)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.waves[i], "label": self.labels[i], "text": self.captions[i], "index": i}
