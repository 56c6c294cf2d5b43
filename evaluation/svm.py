"""RBF-kernel SVM on frozen embeddings, C chosen by cross-validation on train: the protocol of
T-Loss (Franceschi et al. 2019) and TS2Vec (Yue et al. 2022) for their UCR/UEA numbers.

Fit (``svm_probe``): features as float64; a ``StandardScaler`` + ``SVC(kernel='rbf', gamma='scale')``
pipeline; for every C of the grid (sorted ascending), the mean accuracy over the folds of a
``StratifiedKFold(folds, shuffle=True, random_state=seed)`` of the train split, the scaler fit on
each fold's train part; the C of the highest mean wins (ties: the smaller C); the pipeline is
refit on the whole train split with that C and scored once on the reported split. Nothing of
the reported split is used for any choice.

Folds (``fold_plan``): min(folds, the smallest train class's count). A class with a single train
item leaves no stratified split, so then there is no cross-validation and C = ``SINGLE_MEMBER_C``
(scikit-learn's default). Either is said in one line on stderr. A train split of one class has
no SVM (``svm_probe`` returns None).
"""
from __future__ import annotations

import sys
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

SINGLE_MEMBER_C = 1.0


class FoldPlan(NamedTuple):
    """How C is chosen for one train split: ``folds`` stratified folds, or 0 for no
    cross-validation (C = SINGLE_MEMBER_C); ``note`` is the stderr line ('' when as configured)."""
    folds: int
    note: str


class SVMResult(NamedTuple):
    """A scored SVM: accuracy in [0, 1] on the reported split, the chosen C, the mean fold accuracy of
    every C tried ({} without cross-validation), the folds used (0: none) and the fitted pipeline."""
    accuracy: float
    c: float
    cv_accuracy: dict
    folds: int
    pipeline: Pipeline


def make_svm(c: float) -> Pipeline:
    """StandardScaler followed by SVC(C=c, kernel='rbf', gamma='scale')."""
    return make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale"))


def fold_plan(train_y, folds: int) -> FoldPlan | None:
    """Folds for ``train_y`` ((N,) labels) and the configured ``folds`` (>= 2); None for one class."""
    counts = np.unique(np.asarray(train_y), return_counts=True)[1]
    if len(counts) < 2:
        return None
    smallest = int(counts.min())
    if smallest == 1:
        return FoldPlan(0, f"note: svm: a train class has a single item: no cross-validation, "
                           f"C = {SINGLE_MEMBER_C:g} instead of {folds}-fold cross-validation")
    if smallest < folds:
        return FoldPlan(smallest, f"note: svm: smallest train class has {smallest} items: "
                                  f"{smallest}-fold cross-validation instead of {folds}")
    return FoldPlan(folds, "")


def choose_c(x: np.ndarray, y: np.ndarray, c_grid, folds: int, seed: int) -> tuple[float, dict]:
    """(the C of the highest mean fold accuracy, ties to the smaller; {C: mean fold accuracy}).

    Args:
        x: (N, D) float64 train features (unscaled; each fold fits its own scaler); y: (N,) labels.
        c_grid: the C values to try; folds: >= 2, at most the smallest class count.
    """
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    scores = {}
    for c in sorted(float(c) for c in set(c_grid)):
        total = Fraction(0)
        for fit_rows, held_rows in splits:
            predicted = make_svm(c).fit(x[fit_rows], y[fit_rows]).predict(x[held_rows])
            total += Fraction(int((predicted == y[held_rows]).sum()), len(held_rows))
        scores[c] = total / len(splits)
    best = max(scores.values())
    return min(c for c, score in scores.items() if score == best), {c: float(s) for c, s in scores.items()}


def as_array(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def svm_probe(train_x, train_y, test_x, test_y, c_grid, folds: int = 5, seed: int = 0,
              announce: bool = True) -> SVMResult | None:
    """The SVM protocol (module docstring) on train (train_x (N, D), train_y (N,)), scored on test
    (test_x (M, D), test_y (M,)); tensors or arrays. None when train has fewer than two classes
    or an embedding is not finite (said on stderr).

    Args:
        announce: print the fold plan's note (if any) to stderr; pass False for a second model
            evaluated on the same train split, so the line appears once per evaluation.

    Raises:
        ValueError: an empty ``c_grid``, a C that is not positive, or ``folds`` < 2.
    """
    if not len(c_grid) or min(float(c) for c in c_grid) <= 0:
        raise ValueError(f"the SVM needs a non-empty grid of positive C values, got {list(c_grid)}")
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    train_x, test_x = as_array(train_x), as_array(test_x)
    train_y, test_y = np.asarray(train_y).astype(np.int64), np.asarray(test_y).astype(np.int64)
    if not (np.isfinite(train_x).all() and np.isfinite(test_x).all()):
        print("note: svm: the embeddings are not all finite: svm_acc left out", file=sys.stderr, flush=True)
        return None
    plan = fold_plan(train_y, folds)
    if plan is None:
        return None
    if announce and plan.note:
        print(plan.note, file=sys.stderr, flush=True)
    c, scores = choose_c(train_x, train_y, c_grid, plan.folds, seed) if plan.folds else (SINGLE_MEMBER_C, {})
    pipeline = make_svm(c).fit(train_x, train_y)
    accuracy = float((pipeline.predict(test_x) == test_y).mean())
    return SVMResult(accuracy, c, scores, plan.folds, pipeline)
