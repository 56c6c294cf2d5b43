"""Classification metrics of a probe's predictions beyond accuracy, through scikit-learn.

Every macro average runs over the classes the reported split holds: a class with no item
there has no recall, so balanced accuracy, macro F1 and the AUROC leave it out (and
``per_class_accuracy`` has no entry for it). Inputs are CPU tensors or arrays; outputs are
Python floats, dicts of them, or int64 arrays.

- ``balanced_accuracy``: sklearn ``balanced_accuracy_score``, the mean per-class recall.
- ``macro_f1``: sklearn ``f1_score(average="macro")`` over the reported classes; a class
  never predicted has F1 0 (``zero_division=0``).
- ``one_vs_rest_auroc``: sklearn ``roc_auc_score`` of each class against the rest, from its
  probability column, and their mean (the one-vs-rest macro AUROC). A class is scored only
  when the split holds both its items and others.
- ``per_label_auroc``: the same for multi-hot targets, one label at a time.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean over the classes of ``y_true`` (N,) of the fraction of their items ``y_pred`` (N,) gets right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(_numpy(y_true), _numpy(y_pred)))


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over the classes of ``y_true`` (N,), predictions ``y_pred`` (N,)."""
    y_true, y_pred = _numpy(y_true), _numpy(y_pred)
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def per_class_accuracy(y_true, y_pred, classes) -> dict:
    """{class name: fraction of its items predicted right} for every class of ``y_true`` (N,)
    (names from ``classes``, indexed by label; the index as text past its end)."""
    y_true, y_pred = _numpy(y_true), _numpy(y_pred)
    return {(str(classes[c]) if c < len(classes) else str(c)): float((y_pred[y_true == c] == c).mean())
            for c in np.unique(y_true).tolist()}


def per_group_accuracy(y_true, y_pred, groups) -> dict:
    """{group: fraction of its items predicted right}, groups sorted by name, for the items of
    ``y_true`` (N,) whose ``groups`` entry (N,) is not None (a speaker, a patient)."""
    y_true, y_pred = _numpy(y_true), _numpy(y_pred)
    names = sorted({str(g) for g in groups if g is not None})
    return {name: float((y_pred == y_true)[[g is not None and str(g) == name for g in groups]].mean())
            for name in names}


def binary_aurocs(targets, scores, names) -> tuple[dict, list]:
    """({name: AUROC} of every column j of ``targets`` (N, K) in {0, 1} scored by ``scores[:, j]`` (N, K)
    that has both a positive and a negative item, [names of the columns left out])."""
    targets, scores = _numpy(targets), _numpy(scores)
    scored, skipped = {}, []
    for j, name in enumerate(names):
        column = targets[:, j] > 0.5
        if column.all() or not column.any():
            skipped.append(str(name))
        else:
            scored[str(name)] = float(roc_auc_score(column, scores[:, j]))
    return scored, skipped


def one_vs_rest_auroc(y_true, probabilities, classes) -> tuple[float, dict, list]:
    """(macro AUROC, {class: AUROC}, [classes left out]) of class probabilities (N, C) for labels (N,).

    Class c's AUROC is that of ``probabilities[:, c]`` separating the items of c from the
    rest; a class without items (or with every item) in ``y_true`` is left out. The macro
    AUROC is the mean over the scored classes, NaN when none is scored (one class in the split).
    """
    probabilities = _numpy(probabilities)
    one_hot = np.eye(probabilities.shape[1])[_numpy(y_true)]
    names = [classes[c] if c < len(classes) else c for c in range(probabilities.shape[1])]
    scored, skipped = binary_aurocs(one_hot, probabilities, names)
    return (float(np.mean(list(scored.values()))) if scored else math.nan), scored, skipped


def per_label_auroc(targets, scores, classes) -> tuple[float, dict, list]:
    """(macro AUROC, {label: AUROC}, [labels left out]) of per-label scores (N, K) for multi-hot
    ``targets`` (N, K); a label no reported item has (or every one has) is left out."""
    scored, skipped = binary_aurocs(targets, scores, classes)
    return (float(np.mean(list(scored.values()))) if scored else math.nan), scored, skipped


def confusion_counts(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64: entry [i, j] counts items of class i predicted as j."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (_numpy(y_true), _numpy(y_pred)), 1)
    return counts
