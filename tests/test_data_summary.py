"""The lines a run on the user's data prints about it (training/data_summary.py)."""
from types import SimpleNamespace

import torch

from training.data_summary import class_counts, describe_data

TRAIN = {"batch_size": 8, "steps": 30, "accumulate_steps": 1}


class Split(SimpleNamespace):
    def __len__(self):
        return len(self.labels)


def split(labels, classes, shape):
    return Split(labels=torch.tensor(labels), classes=classes, input_shape=shape)


def test_counts_of_class_indices_and_of_multi_hot_labels():
    assert class_counts(torch.tensor([2, 0, 2, 2]), 4) == [1, 0, 3, 0]
    assert class_counts(torch.tensor([[1, 1, 0], [0, 1, 0], [1, 1, 1]]), 3) == [2, 3, 1]


def test_lines_for_images_with_more_classes_than_listed():
    classes = [f"c{i}" for i in range(14)]
    train = split(list(range(14)) * 2 + [13], classes, (1, 64, 64))  # 29 items, c13 three times
    val, test = split([0, 13], classes, (1, 64, 64)), split(list(range(14)), classes, (1, 64, 64))
    lines = describe_data({"train": train, "val": val, "test": test}, TRAIN, world=2)
    assert lines[0] == "data: items train 29, val 2, test 14 (14 classes)"
    expected = ", ".join(f"c{i} 2/{int(i == 0)}/1" for i in range(12)) + ", ... 2 more classes 5/1/2"
    assert lines[1] == f"data: per class (train/val/test): {expected}"
    assert lines[2] == "data: input shape (C, H, W) = (1, 64, 64)"
    assert lines[3] == f"data: budget 30 steps of 16 items = {30 * 16 / 29:.1f} epochs of 29"
