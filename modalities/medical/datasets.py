"""Built-in medical dataset and its radiology-style reports.

Items: x (1, H, W) or (1, D, H, W) float32 in [0, 1], label int64, text str (the report), index int.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from modalities.medical import synthetic
from core.registry import register

SIDES, ZONES = ("right", "left"), ("upper", "lower")
PREAMBLES = {2: ("PA chest radiograph.", "Frontal view of the chest.", "Single frontal chest image."),
             3: ("Chest CT, contiguous slices.", "CT of the chest.", "Axial chest images.")}
NEUTRAL = ("Heart size is normal.", "Cardiomediastinal silhouette within normal limits.", "Normal cardiac contour.")
# Negation sentence -> the finding kinds it denies; a report never denies its own kind.
OPACITIES = frozenset(synthetic.CLASSES[1:])
NEGATIONS = {
    "No focal opacity.": OPACITIES,
    "No acute cardiopulmonary abnormality.": OPACITIES,
    "No pulmonary nodule or mass.": frozenset({"nodule", "multiple nodules", "mass", "ring lesion", "calcification"}),
    "No focal consolidation.": frozenset({"mass", "linear opacity", "ring lesion"}),
    "No pleural effusion.": frozenset({"effusion"}),
    "No pneumothorax.": frozenset(),
}
FINDINGS = {  # {s}ide, {z}one, {n} mm, {c}ount, {W} count word, {e}ffusion size word
    "nodule": ("A {n} mm nodule in the {s} {z} zone.",
               "Solitary round nodule projecting over the {s} {z} zone, measuring about {n} mm.",
               "There is a well-defined {n} mm nodule in the {z} zone of the {s} lung."),
    "multiple nodules": ("Multiple small nodules in the {s} lung, {c} in total, the largest {n} mm.",
                         "{W} scattered nodules in the {s} lung, up to {n} mm.",
                         "Several small pulmonary nodules ({c}) in the {s} lung measuring up to {n} mm."),
    "mass": ("Large {n} mm mass in the {s} {z} zone.",
             "There is a {n} mm mass occupying the {z} zone of the {s} lung.",
             "Lobulated mass lesion in the {s} {z} zone, about {n} mm in diameter."),
    "linear opacity": ("Linear opacity in the {s} {z} zone, likely plate-like atelectasis.",
                       "Streaky band of opacity in the {s} {z} zone, about {n} mm long, consistent with scarring.",
                       "Thin linear density in the {z} zone of the {s} lung."),
    "ring lesion": ("Ring-shaped lesion with a lucent centre in the {s} {z} zone, {n} mm.",
                    "Thick-walled cavitating lesion in the {s} {z} zone measuring {n} mm.",
                    "A {n} mm cavity in the {z} zone of the {s} lung."),
    "effusion": ("{E} {s} pleural effusion.",
                 "{S} pleural effusion with a meniscus, {e} in size.",
                 "Fluid layering at the {s} lung base, consistent with a {e} effusion."),
    "calcification": ("Calcified granuloma in the {s} {z} zone.",
                      "{W} punctate calcification{p} in the {s} {z} zone, up to {n} mm.",
                      "Small dense calcified {f} in the {z} zone of the {s} lung."),
}
COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def effusion_word(size_mm: float) -> str:
    return "small" if size_mm < 40 else "moderate" if size_mm < 55 else "large"


def write_report(rng: np.random.Generator, label: int, attrs: dict, spatial_dims: int = 2) -> str:
    """A report of one image from its class and attributes (``synthetic.ATTRIBUTES``), phrasing drawn from rng.

    A normal image gets one to three negations; a finding gets one sentence naming its
    kind, side, zone and size, plus up to two negations of other kinds.
    """
    kind = synthetic.CLASSES[label]
    sentences = []
    if rng.random() < 0.5:
        sentences.append(PREAMBLES[spatial_dims][rng.integers(3)])
    if rng.random() < 0.4:
        sentences.append(NEUTRAL[rng.integers(3)])
    allowed = [n for n, denied in NEGATIONS.items() if kind not in denied]
    if kind == "no finding":
        negations = list(rng.choice(allowed, size=int(rng.integers(1, 4)), replace=False))
        if rng.random() < 0.3:
            negations.append("The lungs are clear.")
        return " ".join(sentences + negations)
    count, template = int(attrs["count"]), FINDINGS[kind][rng.integers(3)]
    side, zone, size = SIDES[int(attrs["side"])], ZONES[int(attrs["zone"])], attrs["size_mm"]
    word = "a" if count == 1 else COUNT_WORDS[count] if count < len(COUNT_WORDS) else str(count)
    text = template.format(s=side, S=side.capitalize(), z=zone, n=int(round(size)), c=count, W=word.capitalize(),
                           e=effusion_word(size), E=effusion_word(size).capitalize(),
                           p="s" if count > 1 else "", f="foci" if count > 1 else "focus")
    negations = list(rng.choice(allowed, size=int(rng.integers(0, 3)), replace=False))
    return " ".join(sentences + [text] + negations)


@register("dataset", "medical_builtin", modality="medical", provides=("x", "label", "text"))
class BuiltinMedical(Dataset):
    """Built-in chest images with findings and reports (``synthetic.py``): 8 classes, train/val/test.

    Args:
        split: "train", "val" or "test".
        seed: the data seed; same seed, same images and reports.
        image_size: H = W in pixels (4 mm pixels at 64).
        spatial_dims: 2 for (1, H, W) images, 3 for (1, depth, H, W) volumes.
        depth: slices of a 3D volume (isotropic voxels; ignored in 2D).
        train_per_class, val_per_class, test_per_class: images per class in each split.

    Raises:
        ValueError: unknown split, spatial_dims not 2 or 3, or a non-positive size.
    """

    def __init__(self, split: str, seed: int, image_size: int = 64, spatial_dims: int = 2, depth: int = 16,
                 train_per_class: int = 128, val_per_class: int = 32, test_per_class: int = 64):
        sizes = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
        if split not in sizes:
            raise ValueError(f"unknown split '{split}'; splits are {', '.join(sizes)}")
        x, labels, attributes = synthetic.generate(split, seed, sizes[split], image_size, spatial_dims, depth)
        rng = np.random.default_rng([seed, synthetic.SPLITS[split], 70_117])
        self.captions = [write_report(rng, int(label), {k: v[i] for k, v in attributes.items()}, spatial_dims)
                         for i, label in enumerate(labels)]
        self.x = torch.from_numpy(x)
        self.labels = torch.from_numpy(labels)
        self.attributes = attributes
        self.classes = list(synthetic.CLASSES)
        self.input_shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "label": self.labels[i], "text": self.captions[i], "index": i}
