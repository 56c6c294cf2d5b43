"""Balanced accuracy, macro F1, AUROC and per-class accuracy against hand counts on small inputs;
the linear probe's report on single- and multi-label embeddings."""
import math

import numpy as np
import pytest
import torch

from evaluation import classification
from evaluation.probe_report import probe_report
from evaluation.protocols import without_undefined
from evaluation.tensorboard_extras import flat_scalars, label_name


def auroc_by_pairs(positive_scores, negative_scores) -> float:
    """The fraction of (positive, negative) pairs the positive outscores, ties counting one half."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positive_scores for n in negative_scores]
    return sum(pairs) / len(pairs)


def test_auroc_counts_concordant_pairs_with_ties_as_halves():
    y = np.array([0, 0, 1, 1, 1, 2, 2])
    p = np.array([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1],
                  [0.4, 0.2, 0.4], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]])
    macro, per_class, skipped = classification.one_vs_rest_auroc(torch.tensor(y), torch.tensor(p), ["a", "b", "c"])
    # Class a: positives 0.9, 0.4 against negatives 0.5, 0.2, 0.4, 0.1, 0.3 -> (5 + 3.5) / 10.
    assert per_class["a"] == pytest.approx(0.85)
    for c, name in enumerate("abc"):
        assert per_class[name] == pytest.approx(auroc_by_pairs(p[y == c, c], p[y != c, c])), name
    assert skipped == [] and macro == pytest.approx(np.mean([per_class[n] for n in "abc"]))


def test_auroc_leaves_out_a_class_the_split_lacks_and_is_nan_for_one_class():
    y = torch.tensor([0, 0, 2, 2])
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    macro, per_class, skipped = classification.one_vs_rest_auroc(y, p, ["a", "b", "c"])
    assert skipped == ["b"] and set(per_class) == {"a", "c"}
    assert per_class["a"] == pytest.approx(auroc_by_pairs([0.6, 0.2], [0.3, 0.1])) == 0.75
    assert macro == pytest.approx((0.75 + 1.0) / 2)
    nan, scored, skipped = classification.one_vs_rest_auroc(torch.tensor([1, 1]), p[:2], ["a", "b", "c"])
    assert math.isnan(nan) and scored == {} and skipped == ["a", "b", "c"]


def test_balanced_accuracy_by_hand():
    y_true = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    y_pred = torch.tensor([0, 0, 0, 1, 1, 3, 1])  # class 3 is predicted but never true: no recall of its own
    # Recalls: class 0 3/4, class 1 1/2, class 2 0/1.
    assert classification.balanced_accuracy(y_true, y_pred) == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert classification.per_class_accuracy(y_true, y_pred, ["zero", "one", "two", "three"]) == {
        "zero": 0.75, "one": 0.5, "two": 0.0}


def f1_by_counts(y_true, y_pred, c) -> float:
    tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
    fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
    fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def test_macro_f1_by_hand():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 3]
    # Class 0: tp 2, fp 0, fn 1 -> 4/5; class 1: tp 1, fp 1, fn 1 -> 1/2; class 2: tp 2, fp 1, fn 1 -> 2/3.
    expected = (4 / 5 + 1 / 2 + 2 / 3) / 3
    assert expected == pytest.approx(np.mean([f1_by_counts(y_true, y_pred, c) for c in (0, 1, 2)]))
    assert classification.macro_f1(torch.tensor(y_true), torch.tensor(y_pred)) == pytest.approx(expected)


def test_per_label_auroc_and_confusion_counts():
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
    scores = np.array([[0.8, 0.1, 0.3], [0.3, 0.5, 0.2], [0.3, 0.2, 0.9], [0.1, 0.9, 0.5], [0.6, 0.4, 0.1]])
    macro, per_label, skipped = classification.per_label_auroc(torch.tensor(targets), torch.tensor(scores),
                                                               ["effusion", "mass", "nodule"])
    assert skipped == ["mass", "nodule"]  # no item has a mass; every item has a nodule
    assert per_label == {"effusion": pytest.approx(auroc_by_pairs([0.8, 0.3, 0.6], [0.3, 0.1]))}
    assert macro == pytest.approx(per_label["effusion"]) and per_label["effusion"] == pytest.approx(5.5 / 6)
    counts = classification.confusion_counts(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def clusters(n_per_class: int, n_classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(n_classes, 6)[:, :6] * 8
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centers[y] + torch.randn(len(y), 6, generator=g) * 0.3, y


EV = {"probe_epochs": 200, "probe_lr": 0.05, "probe_weight_decay": 1e-4, "split": "test"}


def test_probe_report_on_separable_classes_and_a_class_missing_from_test(capsys):
    (tx, ty), (rx, ry) = clusters(10, 3, 0), clusters(4, 3, 1)
    keep = ry != 1  # class "b" has no test item
    out, predicted = probe_report({"embedding": tx, "label": ty}, {"embedding": rx[keep], "label": ry[keep]},
                                  ["a", "b", "c"], EV, seed=0)
    assert torch.equal(predicted, ry[keep])
    assert out["linear_probe_acc"] == out["linear_probe_balanced_acc"] == out["linear_probe_macro_f1"] == 1.0
    assert out["linear_probe_auroc"] == 1.0 and out["linear_probe_per_class_acc"] == {"a": 1.0, "c": 1.0}
    err = capsys.readouterr().err
    assert "note: linear_probe_auroc: class(es) b cannot be scored on the test split" in err, err


def test_probe_report_multi_label_gives_per_label_auroc():
    x, y = clusters(12, 3, 0)
    targets = torch.stack([y == 0, y != 2, torch.zeros_like(y, dtype=torch.bool)], 1).float()  # label 3: nobody
    out, predicted = probe_report({"embedding": x, "label": targets}, {"embedding": x, "label": targets},
                                  ["effusion", "mass", "nodule"], EV, seed=0)
    assert predicted is None and set(out) == {"linear_probe_macro_auroc", "linear_probe_per_label_auroc"}
    assert out["linear_probe_per_label_auroc"] == {"effusion": 1.0, "mass": 1.0}
    assert out["linear_probe_macro_auroc"] == 1.0


def test_results_and_tensorboard_helpers_handle_per_class_dicts():
    values = {"acc": 0.5, "auroc": math.nan, "per_class": {"a": 1.0, "b": math.nan}}
    assert without_undefined(values) == {"acc": 0.5, "per_class": {"a": 1.0}}
    assert flat_scalars({"acc": 0.5, "per_class": {"ring lesion": 1.0}}, "eval/") == {
        "eval/acc": 0.5, "eval/per_class/ring_lesion": 1.0}
    assert label_name(["a", "b", "c"], torch.tensor(2)) == "c"
    assert label_name(["a", "b", "c"], torch.tensor([1.0, 0.0, 1.0])) == "a|c"
    assert label_name(["a", "b", "c"], torch.zeros(3)) == "no finding"
