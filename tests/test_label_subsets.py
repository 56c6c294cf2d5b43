"""Label fractions (evaluation/label_subsets.py): stratified by hand-counted class sizes, seeded,
nested, inside train; and the probe's keys for the model and its floor in a real run's results.json."""
import json
from collections import Counter

import pytest
import torch
from conftest import TINY, run_cli

from evaluation.label_subsets import fraction_key, stratified_subset

# Class sizes 10, 3, 1 and 25, interleaved so positions are not grouped by class.
LABELS = torch.tensor([3, 0, 3, 1, 3, 0, 2, 3, 0, 3, 1, 3, 0, 3, 3, 0, 3, 1, 3, 0, 3, 3, 0, 3, 3, 0, 3, 3, 0, 3,
                       3, 0, 3, 3, 3, 3, 3, 3, 3])


def test_the_hand_label_vector_has_the_class_sizes_the_counts_below_assume():
    assert Counter(LABELS.tolist()) == {0: 10, 1: 3, 2: 1, 3: 25}


@pytest.mark.parametrize("fraction, counts", [
    # max(1, round half up of f x n): 0.1 -> 1.0, 0.3, 0.1, 2.5 -> 1, 1 (at least one), 1, 3
    (0.1, {0: 1, 1: 1, 2: 1, 3: 3}),
    # 0.5 -> 5, 1.5, 0.5, 12.5 -> 5, 2, 1, 13
    (0.5, {0: 5, 1: 2, 2: 1, 3: 13}),
    # 0.01 -> every class keeps one item
    (0.01, {0: 1, 1: 1, 2: 1, 3: 1}),
    (1.0, {0: 10, 1: 3, 2: 1, 3: 25}),
])
def test_per_class_counts_are_max_one_and_the_rounded_fraction(fraction, counts):
    rows = stratified_subset(LABELS, fraction, seed=0)
    assert Counter(LABELS[rows].tolist()) == counts
    assert rows.tolist() == sorted(set(rows.tolist()))  # sorted, no position twice
    assert 0 <= rows.min() and rows.max() < len(LABELS)  # positions of the train labels given, nothing else


def test_same_seed_same_subset_other_seed_another():
    a, b = stratified_subset(LABELS, 0.5, seed=3), stratified_subset(LABELS, 0.5, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, stratified_subset(LABELS, 0.5, seed=4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subsets_of_one_seed_are_nested(seed):
    small, medium, whole = (set(stratified_subset(LABELS, f, seed).tolist()) for f in (0.1, 0.5, 1.0))
    assert small < medium < whole == set(range(len(LABELS)))


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        stratified_subset(LABELS, 0.0, 0)
    with pytest.raises(ValueError, match="one label per item"):
        stratified_subset(torch.zeros(4, 2), 0.5, 0)


def test_keys_name_the_fraction_in_percent():
    assert [fraction_key("linear_probe_acc", f) for f in (0.01, 0.1, 1.0, 0.005, 0.07, 1 / 3)] == [
        "linear_probe_acc@1%", "linear_probe_acc@10%", "linear_probe_acc@100%", "linear_probe_acc@0.5%",
        "linear_probe_acc@7%", "linear_probe_acc@33.3333%"]


def test_a_run_with_label_fractions_reports_them_for_the_model_and_its_floor(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", "simclr", "--run-dir", run_dir, *TINY["sequence"],
                   "data.sequence_builtin.train_per_class=4", "train.steps=2", "train.batch_size=8",
                   "train.val_every=0", "train.progress=false", "eval.probe_epochs=5", "eval.svm_c_grid=[1.0]",
                   "eval.label_fractions=[0.25, 0.5, 1.0]")
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    keys = {"linear_probe_acc@25%", "linear_probe_acc@50%", "linear_probe_acc@100%"}
    for part in ("metrics", "floor"):
        assert keys <= set(results[part]), part
        assert not any(k.startswith("finetune") for k in results[part])  # eval.finetune is off
        # 100% is the whole train split in order: the same probe as linear_probe_acc.
        assert results[part]["linear_probe_acc@100%"] == results[part]["linear_probe_acc"]
        for key in keys:  # accuracies over the 8 test series
            assert results[part][key] * 8 == pytest.approx(round(results[part][key] * 8))
