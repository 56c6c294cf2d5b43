"""The sequence loaders (npz, UCR tsv, UEA .ts) on files the tests write."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from core import registry
import modalities.sequence  # noqa: F401  (registers)
from modalities.sequence.loaders import SequenceFileError


def loader(name, path, split="train", seed=0, **kwargs):
    return registry.build("dataset", name, split=split, seed=seed, path=str(path), **kwargs)


def test_npz_loader_values_labels_and_stratified_val(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.standard_normal((20, 2, 30)).astype(np.float32)
    x_train[:, 0, 0] = np.arange(20)  # an id per series
    y_train = np.array(["walk", "run"] * 10)
    np.savez(tmp_path / "train.npz", X=x_train, y=y_train)
    np.savez(tmp_path / "test.npz", X=rng.standard_normal((6, 2, 30)), y=np.array(["run"] * 3 + ["walk"] * 3))
    train, val, test = (loader("sequence_npz", tmp_path, s) for s in ("train", "val", "test"))
    assert train.classes == ["run", "walk"] and train.input_shape == (2, 30)
    assert len(train) == 18 and len(val) == 2 and len(test) == 6
    assert sorted(val.labels.tolist()) == [0, 1]  # one of each train class
    for ds in (train, val):
        for item in ds:
            sid = int(item["x"][0, 0])
            assert torch.equal(item["x"], torch.from_numpy(x_train[sid]))
            assert ds.classes[int(item["label"])] == y_train[sid] and item["text"] == f"a series of class {y_train[sid]}"
            assert "mask" not in item
    assert set(train.x[:, 0, 0].tolist()).isdisjoint(val.x[:, 0, 0].tolist())
    assert test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(val.x, loader("sequence_npz", tmp_path, "val").x)
    other_vals = {tuple(loader("sequence_npz", tmp_path, "val", seed=s).x[:, 0, 0].tolist()) for s in range(1, 6)}
    assert len(other_vals | {tuple(val.x[:, 0, 0].tolist())}) > 1  # the seed picks the val series


def test_npz_loader_univariate_crop_and_pad(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(4, 10)
    np.savez(tmp_path / "train.npz", X=x, y=np.array([0, 1, 0, 1]))
    np.savez(tmp_path / "test.npz", X=x[:2], y=np.array([1, 0]))
    cropped = loader("sequence_npz", tmp_path, "test", length=6)
    assert cropped.input_shape == (1, 6) and torch.equal(cropped.x[:, 0], torch.tensor(x[:2, :6], dtype=torch.float32))
    padded = loader("sequence_npz", tmp_path, "test", length=14)
    item = padded[1]
    assert item["x"].shape == (1, 14) and item["mask"].tolist() == [True] * 10 + [False] * 4
    assert torch.equal(item["x"][0, 10:], torch.zeros(4))


def test_ucr_loader_maps_labels_and_masks_nan_padding(tmp_path):
    (tmp_path / "Toy_TRAIN.tsv").write_text("2\t1.0\t2.0\t3.0\t4.0\n-1\t5\t6\tNaN\tNaN\n1.0\t7\t8\t9\t10\n"
                                            "2\t0\t0\t0\t1\n-1\t1\t1\t1\t1\n1\t2\t2\t2\t2\n")
    (tmp_path / "Toy_TEST.tsv").write_text("1\t0.5\t0.5\t0.5\tNaN\n-1\t3\t3\t3\t3\n")
    train = loader("ucr", tmp_path, "train", val_fraction=0.0)
    assert train.classes == ["-1", "1", "2"] and train.input_shape == (1, 4)
    assert train.labels.tolist() == [2, 0, 1, 2, 0, 1]
    assert torch.equal(train.x[1, 0], torch.tensor([5.0, 6.0, 0.0, 0.0]))
    assert train[1]["mask"].tolist() == [True, True, False, False] and train[0]["mask"].all()
    assert train.attributes["length"].tolist() == [4, 2, 4, 4, 4, 4]
    test = loader("ucr", tmp_path / "Toy_TRAIN.tsv", "test")
    assert test.labels.tolist() == [1, 0] and test[0]["mask"].tolist() == [True, True, True, False]
    assert torch.equal(test.x[0, 0], torch.tensor([0.5, 0.5, 0.5, 0.0]))


TS_HEADER = """# a comment
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true walk run
@data
"""


def test_uea_ts_loader_unequal_lengths_and_missing(tmp_path):
    (tmp_path / "Toy_TRAIN.ts").write_text(TS_HEADER + "1,2,3:4,5,6:walk\n7,8:9,10:run\n\n1,?,3,4,5:1,2,3,4,5:run\n")
    (tmp_path / "Toy_TEST.ts").write_text(TS_HEADER + "0.5,1.5,2.5,3.5,4.5,5.5:1,1,1,1,1,1:walk\n")
    train = loader("uea_ts", tmp_path, "train", val_fraction=0.0)
    assert train.input_shape == (2, 6) and train.classes == ["run", "walk"]  # longest series is in test
    assert train.labels.tolist() == [1, 0, 0]
    assert torch.equal(train.x[0], torch.tensor([[1.0, 2, 3, 0, 0, 0], [4, 5, 6, 0, 0, 0]]))
    assert train[0]["mask"].tolist() == [True] * 3 + [False] * 3
    assert train[1]["mask"].tolist() == [True] * 2 + [False] * 4
    assert train[2]["mask"].tolist() == [True, False, True, True, True, False]  # '?' is missing
    assert train[2]["text"] == "a series of class run"
    test = loader("uea_ts", tmp_path, "test")
    assert test[0]["mask"].all() and torch.allclose(test.x[0, 0], torch.arange(6) + 0.5)
    assert loader("uea_ts", tmp_path, "train", val_fraction=0.0, length=2).input_shape == (2, 2)


@pytest.mark.parametrize("bad_line, message", [("1,2,x:4,5,6:walk", "cannot parse value 3 'x'"),
                                               ("1,2,3:walk", "expected 2 dimensions"),
                                               ("1,2,3:4,5,6:jump", "class label 'jump'")])
def test_corrupt_ts_line_names_file_and_line(tmp_path, bad_line, message):
    (tmp_path / "Toy_TRAIN.ts").write_text(TS_HEADER + "1,2,3:4,5,6:walk\n" + bad_line + "\n")
    (tmp_path / "Toy_TEST.ts").write_text(TS_HEADER + "1,2,3:4,5,6:run\n")
    line = TS_HEADER.count("\n") + 2
    with pytest.raises(SequenceFileError, match=rf"Toy_TRAIN\.ts', line {line}: {re.escape(message)}"):
        loader("uea_ts", tmp_path)


def test_missing_and_corrupt_files_are_named(tmp_path):
    (tmp_path / "Toy_TRAIN.tsv").write_text("1\t1\t2\n0\t3\tfour\n")
    with pytest.raises(SequenceFileError, match=r"Toy_TRAIN\.tsv', line 2: cannot parse value 2 'four'"):
        loader("ucr", tmp_path)
    (tmp_path / "Toy_TRAIN.tsv").write_text("1\t1\t2\n0\t3\t4\n")
    with pytest.raises(SequenceFileError, match=r"Toy_TEST\.tsv': no such file"):
        loader("ucr", tmp_path)
    (tmp_path / "train.npz").write_bytes(b"not a zip archive")
    with pytest.raises(SequenceFileError, match=r"train\.npz': is not a readable \.npz"):
        loader("sequence_npz", tmp_path)
    with pytest.raises(SequenceFileError, match=r"\.ts'.*no such file"):
        loader("uea_ts", tmp_path / "Missing")


# config --------------------------------------------------------------------


def test_resample_redraws_train_and_test_keeping_each_class_train_count(tmp_path, capfd):
    # 3 classes; train holds 4, 2, 3 items of them, test 2, 4, 1; the first value of a series is its id
    train_y, test_y = [0] * 4 + [1] * 2 + [2] * 3, [0] * 2 + [1] * 4 + [2] * 1
    lines = lambda ys, start: "".join(f"{y}\t{start + i}\t0.5\t1.5\n" for i, y in enumerate(ys))
    (tmp_path / "Toy_TRAIN.tsv").write_text(lines(train_y, 0))
    (tmp_path / "Toy_TEST.tsv").write_text(lines(test_y, 100))
    ids = lambda ds: sorted(int(v) for v in ds.x[:, 0, 0].tolist())
    published = loader("ucr", tmp_path, "train", val_fraction=0.0, resample=0)
    assert ids(published) == list(range(9))
    draws = []
    for k in (1, 2, 3):
        train, test = (loader("ucr", tmp_path, s, val_fraction=0.0, resample=k) for s in ("train", "test"))
        assert sorted(ids(train) + ids(test)) == list(range(9)) + list(range(100, 107))  # every series once
        assert np.bincount(train.labels.numpy(), minlength=3).tolist() == [4, 2, 3]
        assert np.bincount(test.labels.numpy(), minlength=3).tolist() == [2, 4, 1]
        for ds in (train, test):  # each series keeps its own label and its file and row
            for item, file, row in zip(ds, ds.files, ds.rows):
                sid = int(item["x"][0, 0])
                assert int(ds.classes[int(item["label"])]) == (train_y[sid] if sid < 100 else test_y[sid - 100])
                assert (file.name, row) == (("Toy_TRAIN.tsv", sid + 1) if sid < 100 else ("Toy_TEST.tsv", sid - 99))
        assert ids(train) == ids(loader("ucr", tmp_path, "train", val_fraction=0.0, resample=k))  # seeded by k
        draws.append(tuple(ids(train)))
    assert len(set(draws) | {tuple(ids(published))}) > 2
    assert "resample 3: train and test redrawn" in capfd.readouterr().err
    val = loader("ucr", tmp_path, "val", val_fraction=0.3, resample=1)  # val is then carved from the redrawn train
    assert set(ids(val)) <= set(ids(loader("ucr", tmp_path, "train", val_fraction=0.0, resample=1)))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="resample must be an integer >= 0"):
            loader("ucr", tmp_path, "train", resample=bad)
