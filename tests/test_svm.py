"""The RBF-SVM protocol (evaluation/svm.py) against scikit-learn fits and a cross-validation loop
written here; nothing of the reported split reaches a choice; small classes get fewer folds."""
import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from evaluation.svm import SINGLE_MEMBER_C, fold_plan, svm_probe

GRID = [1000.0, 0.01, 1.0, 0.1, 100.0, 10.0]  # unsorted on purpose: ties go to the smaller C


def data(seed, counts=(20, 20, 20), test_per_class=10, dims=4, shift=1.2):
    """Three noisy classes along feature 0: a train split (counts per class) and a test split."""
    g = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = g.normal(size=(len(y), dims))
    x[:, 0] += shift * y
    test_y = np.repeat(np.arange(len(counts)), test_per_class)
    test_x = g.normal(size=(len(test_y), dims))
    test_x[:, 0] += shift * test_y
    return x, y, test_x, test_y


def standardize(fit_rows, rows):
    mean, std = fit_rows.mean(0), fit_rows.std(0)
    return (rows - mean) / np.where(std > 0, std, 1.0)


def cross_validated_c(x, y, grid, folds, seed):
    """Mean fold accuracy per C (scaler fit on each fold's train rows); the smallest C whose mean is the best
    (means equal to 1e-12: fold accuracies of different C can sum to one rational in different float roundings)."""
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    grid = sorted(grid)
    means = []
    for c in grid:
        accuracies = []
        for fit, held in splits:
            svc = SVC(C=c, kernel="rbf", gamma="scale").fit(standardize(x[fit], x[fit]), y[fit])
            accuracies.append(np.mean(svc.predict(standardize(x[fit], x[held])) == y[held]))
        means.append(np.mean(accuracies))
    best = max(means)
    return next(c for c, m in zip(grid, means) if m > best - 1e-12), dict(zip(grid, means))


@pytest.mark.parametrize("seed", [0, 4, 8])
def test_chosen_c_equals_an_independent_cross_validation(seed):
    x, y, test_x, test_y = data(seed)
    got = svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=7)
    want_c, want_scores = cross_validated_c(x, y, GRID, 5, 7)
    assert got.c == want_c and got.folds == 5
    assert list(got.cv_accuracy) == sorted(GRID)
    for c, score in want_scores.items():
        assert got.cv_accuracy[c] == pytest.approx(score, abs=1e-12), c
    # The data make the choice matter: the best C is inside the grid (seeds 0, 4) or tied with a larger one (8).
    best = max(want_scores.values())
    winners = [c for c, s in want_scores.items() if s > best - 1e-12]
    assert min(GRID) < want_c < max(GRID) if seed != 8 else winners == [0.01, 0.1] and got.c == 0.01
    # Another shuffle of the folds is another cross-validation.
    other = svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=8)
    assert other.cv_accuracy == {c: pytest.approx(s, abs=1e-12) for c, s in cross_validated_c(x, y, GRID, 5, 8)[1].items()}


def test_result_equals_a_direct_scikit_learn_fit():
    x, y, test_x, test_y = data(0)
    train_t, test_t = torch.from_numpy(x).float(), torch.from_numpy(test_x).float()
    got = svm_probe(train_t, torch.from_numpy(y), test_t, torch.from_numpy(test_y), GRID, folds=5, seed=0)
    x64, test64 = train_t.double().numpy(), test_t.double().numpy()  # float32 embeddings, fit in float64
    scaler = StandardScaler().fit(x64)
    svc = SVC(C=got.c, kernel="rbf", gamma="scale").fit(scaler.transform(x64), y)
    predicted = svc.predict(scaler.transform(test64))
    assert got.accuracy == np.mean(predicted == test_y)
    np.testing.assert_array_equal(got.pipeline.predict(test64), predicted)
    np.testing.assert_array_equal(got.pipeline[-1].support_vectors_, svc.support_vectors_)
    assert 0.5 < got.accuracy < 1.0  # learnt something, not trivially perfect


def test_the_reported_split_changes_nothing_that_is_chosen():
    x, y, test_x, test_y = data(0)
    first = svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=0)
    g = np.random.default_rng(1)
    poisoned_y = g.permutation(test_y)
    poisoned_y[0] = 9  # a class train never had
    second = svm_probe(x, y, 100 * test_x + 50, poisoned_y, GRID, folds=5, seed=0)
    relabelled = svm_probe(x, y, test_x, (test_y + 1) % 3, GRID, folds=5, seed=0)
    for other in (second, relabelled):
        assert other.c == first.c and other.cv_accuracy == first.cv_accuracy
        a, b = first.pipeline, other.pipeline
        np.testing.assert_array_equal(a[0].mean_, b[0].mean_)
        np.testing.assert_array_equal(a[0].scale_, b[0].scale_)
        np.testing.assert_array_equal(a[-1].support_vectors_, b[-1].support_vectors_)
        np.testing.assert_array_equal(a[-1].dual_coef_, b[-1].dual_coef_)
        np.testing.assert_array_equal(a[-1].intercept_, b[-1].intercept_)
    assert relabelled.accuracy != first.accuracy  # only the reported number moves
    np.testing.assert_array_equal(first.pipeline[0].mean_, x.mean(0))


def test_a_class_smaller_than_the_folds_gets_fewer_folds_and_one_line(capsys):
    x, y, test_x, test_y = data(2, counts=(12, 12, 3))
    got = svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=0)
    assert got.folds == 3 and got.c == cross_validated_c(x, y, GRID, 3, 0)[0] == 1.0
    assert got.cv_accuracy[1.0] == got.cv_accuracy[100.0] == 10 / 27  # an exact tie, to the smaller C
    assert capsys.readouterr().err.splitlines() == [
        "note: svm: smallest train class has 3 items: 3-fold cross-validation instead of 5"]
    assert svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=0, announce=False).c == got.c
    assert capsys.readouterr().err == ""
    assert fold_plan(y, 3) == (3, "") and fold_plan(y, 2) == (2, "")


def test_a_single_member_class_skips_cross_validation_and_one_class_has_no_svm(capsys):
    x, y, test_x, test_y = data(3, counts=(10, 10, 1))
    got = svm_probe(x, y, test_x, test_y, GRID, folds=5, seed=0)
    assert got.folds == 0 and got.c == SINGLE_MEMBER_C == 1.0 and got.cv_accuracy == {}
    direct = SVC(C=1.0, kernel="rbf", gamma="scale").fit(StandardScaler().fit_transform(x), y)
    np.testing.assert_array_equal(got.pipeline[-1].dual_coef_, direct.dual_coef_)
    assert capsys.readouterr().err.splitlines() == [
        "note: svm: a train class has a single item: no cross-validation, C = 1 instead of 5-fold cross-validation"]

    assert svm_probe(x[y == 0], y[y == 0], test_x, test_y, GRID) is None
    x[0, 0] = np.nan
    assert svm_probe(x, y, test_x, test_y, GRID) is None
    assert "not all finite" in capsys.readouterr().err
    with pytest.raises(ValueError, match="positive C"):
        svm_probe(x, y, test_x, test_y, [])
    with pytest.raises(ValueError, match="at least 2 folds"):
        svm_probe(x, y, test_x, test_y, GRID, folds=1)
