"""The one data layer (modalities/user_data.py) behaves the same through every loader.

Each test writes real files (soundfile WAVs, PNGs, NIfTI volumes, UCR tsv) and
builds the registered datasets from them, as ``run.py --data`` does.
"""
import csv

import nibabel as nib
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import modalities  # noqa: F401  (registers the loaders)
import objectives  # noqa: F401  (registers the objectives build_training looks up)
from core import registry
from core.errors import UserError
from modalities.user_data import assign_splits, canonical_label, label_map

SPLITS = ("train", "val", "test")


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def audio_manifest(root, labels, splits=None, groups=None):
    """A WAV per row (a tone whose pitch codes the row number), manifest.csv with label[, split, speaker]."""
    rows = []
    for i, label in enumerate(labels):
        t = np.arange(1600) / 8000
        sf.write(root / f"c{i}.wav", 0.1 * np.sin(2 * np.pi * (100 + 10 * i) * t), 8000)
        rows.append([f"c{i}.wav", label] + ([splits[i]] if splits else []) + ([groups[i]] if groups else []))
    write_csv(root / "manifest.csv", ["path", "label"] + (["split"] if splits else []) + (["speaker"] if groups else []),
              rows)
    return "audio_manifest", {"clip_samples": 1600}


def medical_manifest(root, labels, splits=None, groups=None):
    """A PNG per row (its row number written into pixel (0, 0)), manifest.csv with report, label[, split, group]."""
    rows = []
    for i, label in enumerate(labels):
        img = np.zeros((8, 8), dtype=np.uint8)
        img[0, 0], img[-1, -1] = i, 255
        Image.fromarray(img).save(root / f"im{i}.png")
        rows.append([f"im{i}.png", f"report {i}", label] + ([splits[i]] if splits else []) +
                    ([groups[i]] if groups else []))
    write_csv(root / "manifest.csv", ["path", "report", "label"] + (["split"] if splits else []) +
              (["group"] if groups else []), rows)
    return "medical_manifest", {"image_size": 8}


def series_pair(fmt, root, labels, splits):
    """The train and test files of ``fmt`` (ucr, uea_ts, sequence_npz): the rows whose split is train / test;
    each series' first value is its row."""
    for which in ("train", "test"):
        rows = [(i, label) for i, (label, s) in enumerate(zip(labels, splits)) if s == which]
        if fmt == "sequence_npz":
            x = np.array([[i, 0.5, 1.0, 0.0] for i, _ in rows], dtype=np.float32)
            np.savez(root / f"{which}.npz", X=x, y=np.array([label for _, label in rows]))
            continue
        if fmt == "ucr":
            text = "\n".join("\t".join([label, str(i), "0.5", "1.0", "0.0"]) for i, label in rows)
        else:
            header = f"@problemName Toy\n@classLabel true {' '.join(sorted(set(labels)))}\n@data\n"
            text = header + "\n".join(f"{i},0.5,1.0,0.0:{label}" for i, label in rows)
        (root / f"Toy_{which.upper()}.{'tsv' if fmt == 'ucr' else 'ts'}").write_text(text + "\n")
    return fmt, {}


def audio_folder(root, labels, splits=None, groups=None):
    """root/<label>/c<row>.wav, no split column."""
    for i, label in enumerate(labels):
        (root / label).mkdir(exist_ok=True)
        sf.write(root / label / f"c{i}.wav", np.zeros(800), 8000)
    return "audio_folder", {"clip_samples": 800}


MANIFESTS = {"audio_manifest": audio_manifest, "medical_manifest": medical_manifest}
SERIES = ("ucr", "uea_ts", "sequence_npz")
EVERY_LOADER = (*MANIFESTS, *SERIES)


def write(loader, root, labels, splits=None, groups=None):
    if loader in SERIES:
        return series_pair(loader, root, labels, splits)
    return {**MANIFESTS, "audio_folder": audio_folder}[loader](root, labels, splits, groups)


def build(name, root, options, seed=0):
    return {s: registry.build("dataset", name, split=s, seed=seed, path=str(root), **options) for s in SPLITS}


def row_ids(name, dataset) -> list[int]:
    """The row (0-based) of every item, read back from what the writer encoded."""
    if name in ("audio_manifest", "audio_folder"):
        return [int(f.stem[1:]) for f in dataset.files]
    if name == "medical_manifest":
        return [r - 1 for r in dataset.rows]
    return [int(round(float(v))) for v in dataset.x[:, 0, 0]]


def two_classes(n=10):
    return ["a", "b"] * n


@pytest.mark.parametrize("loader", EVERY_LOADER)
def test_train_and_test_given_val_carved_from_train_with_one_line(tmp_path, capfd, loader):
    labels = two_classes(10)
    splits = ["test" if i % 10 < 4 else "train" for i in range(20)]  # 4 test and 6 train rows per class
    name, options = write(loader, tmp_path, labels, splits)
    data = build(name, tmp_path, options)
    ids = {s: row_ids(name, data[s]) for s in SPLITS}
    assert sorted(ids["test"]) == [i for i, s in enumerate(splits) if s == "test"]
    assert sorted(ids["train"] + ids["val"]) == [i for i, s in enumerate(splits) if s == "train"]
    # val = round(0.1 x 6) = 1 train item of each class
    assert sorted(data["val"].labels.tolist()) == [0, 1]
    assert len(data["train"]) == 12 - 2
    err = capfd.readouterr().err
    assert err.count("no val split given; val = 2 of the 12 train items") == 1


@pytest.mark.parametrize("loader", MANIFESTS)
def test_all_three_splits_given_are_honoured_with_aliases(tmp_path, capfd, loader):
    labels = two_classes(6)
    names = ["train", "TRAIN", "valid", "dev", "Validation", "test"] * 2
    name, options = MANIFESTS[loader](tmp_path, labels, names)
    data = build(name, tmp_path, options)
    assert sorted(row_ids(name, data["train"])) == [0, 1, 6, 7]
    assert sorted(row_ids(name, data["val"])) == [2, 3, 4, 8, 9, 10]
    assert sorted(row_ids(name, data["test"])) == [5, 11]
    assert "no val split given" not in capfd.readouterr().err


@pytest.mark.parametrize("loader", [*MANIFESTS, "audio_folder"])
def test_no_split_column_carves_all_three_per_class_seeded(tmp_path, loader):
    labels = ["a"] * 20 + ["b"] * 10
    name, options = write(loader, tmp_path, labels)
    data = build(name, tmp_path, options)
    counts = {s: np.bincount(data[s].labels.numpy(), minlength=2).tolist() for s in SPLITS}
    assert counts == {"train": [14, 7], "val": [2, 1], "test": [4, 2]}  # round(0.2 n), round(0.1 n) per class
    ids = [set(row_ids(name, data[s])) for s in SPLITS]
    assert set.union(*ids) == set(range(30)) and sum(map(len, ids)) == 30
    other = build(name, tmp_path, options, seed=1)
    assert set(row_ids(name, other["test"])) != ids[2]  # the seed picks the items


@pytest.mark.parametrize("loader", MANIFESTS)
def test_bad_split_name_names_the_row(tmp_path, loader):
    name, options = MANIFESTS[loader](tmp_path, ["a", "b", "a"], ["train", "test", "holdout"])
    with pytest.raises(UserError, match=r"manifest\.csv', row 3: split 'holdout' is not one of train, val, valid"):
        build(name, tmp_path, options)


@pytest.mark.parametrize("loader", EVERY_LOADER)
def test_labels_1_and_1_0_are_one_class_ordered_numerically(tmp_path, loader):
    labels = ["1", "1.0", "2", "10", "2.0", "1", "10", "2", "1.0", "10.0", "2", "1"] * 2
    splits = ["train"] * 12 + ["test"] * 12
    name, options = write(loader, tmp_path, labels, splits)
    data = build(name, tmp_path, options)
    assert data["train"].classes == ["1", "2", "10"]
    expected = {"1": 0, "2": 1, "10": 2}
    got = data["test"].labels.tolist()
    assert got == [expected[canonical_label(labels[r])] for r in row_ids(name, data["test"])]


@pytest.mark.parametrize("loader", EVERY_LOADER)
def test_class_missing_from_train_names_class_and_split(tmp_path, loader):
    labels = ["a", "b", "a", "b", "a", "c"]
    splits = ["train", "train", "train", "train", "test", "test"]
    name, options = write(loader, tmp_path, labels, splits)
    with pytest.raises(UserError, match=r"class 'c' is in the test split \(1 items\) but never in train"):
        build(name, tmp_path, options)


@pytest.mark.parametrize("loader", MANIFESTS)
def test_groups_stay_inside_one_split(tmp_path, loader):
    labels = two_classes(12)
    groups = [f"s{i // 3}" for i in range(24)]  # 8 speakers of 3 rows
    splits = ["test" if g in ("s0", "s1") else "train" for g in groups]
    name, options = MANIFESTS[loader](tmp_path, labels, splits, groups)
    data = build(name, tmp_path, options)
    where = {}
    for s in SPLITS:
        for i in row_ids(name, data[s]):
            where.setdefault(groups[i], set()).add(s)
    assert all(len(s) == 1 for s in where.values())
    assert sum(s == {"val"} for s in where.values()) == 1  # round(0.1 x 18) = 2 items: one speaker of 3


def test_assign_splits_is_seeded_and_never_empties_a_class_of_train():
    labels = np.array(["a"] * 3 + ["b"])
    out = assign_splits(labels, seed=0, val_fraction=0.3, test_fraction=0.3, source="toy")
    assert (out[labels == "b"] == "train").all()  # a class of one stays in train
    assert sorted(out[labels == "a"].tolist()) == ["test", "train", "val"]
    assert label_map(["b", "a", "10", "a"]) == {"10": 0, "a": 1, "b": 2}  # mixed: text order


def nifti(path, shape, value=0.0):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32) + value
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


def test_spatial_dims_auto_follows_the_files(tmp_path, capfd):
    vols, imgs = tmp_path / "vols", tmp_path / "imgs"
    for folder in (vols, imgs):
        folder.mkdir()
    rows_v, rows_i = [], []
    for i in range(6):
        nifti(vols / f"v{i}.nii.gz", (10, 12, 9), i % 2)
        rows_v.append([f"v{i}.nii.gz", "r", i % 2])
        Image.fromarray(np.full((9, 7), 40 * i, dtype=np.uint8)).save(imgs / f"i{i}.png")
        rows_i.append([f"i{i}.png", "r", i % 2])
    nifti(imgs / "slice.nii.gz", (9, 7, 1))  # a NIfTI slice stored (H, W, 1) is 2-D
    rows_i.append(["slice.nii.gz", "r", 0])
    write_csv(vols / "manifest.csv", ["path", "report", "label"], rows_v)
    write_csv(imgs / "manifest.csv", ["path", "report", "label"], rows_i)
    volumes = registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(vols), image_size=8)
    images = registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(imgs), image_size=8)
    assert volumes.input_shape == (1, 8, 8, 8) and volumes.x.shape[1:] == (1, 8, 8, 8)
    assert images.input_shape == (1, 8, 8) and images.x.shape[1:] == (1, 8, 8)
    err = capfd.readouterr().err
    assert "3-D volumes (data.medical_manifest.spatial_dims=auto, from 'v0.nii.gz')" in err
    assert "2-D images (data.medical_manifest.spatial_dims=auto, from 'i0.png')" in err
    nifti(imgs / "i3.png.nii.gz", (9, 7, 5))  # one volume among the images
    rows_i[3] = ["i3.png.nii.gz", "r", 1]
    write_csv(imgs / "manifest.csv", ["path", "report", "label", "split"], [r + ["train"] for r in rows_i])
    with pytest.raises(UserError, match=r"i3\.png\.nii\.gz' \(manifest row 4\): has 3 spatial dimensions \(9, 7, 5\), "
                                        r"expected 2 \(data\.medical_manifest\.spatial_dims=auto took 2 from the first "
                                        r"readable file .*i0\.png'\); make the files agree or set "
                                        r"data\.medical_manifest\.spatial_dims"):
        registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(imgs), image_size=8)
    with pytest.raises(UserError, match=r"v\d\.nii\.gz' \(manifest row \d\): has 3 spatial dimensions \(10, 12, 9\), "
                                        r"expected 2 \(data\.medical_manifest\.spatial_dims=2\)"):
        [registry.build("dataset", "medical_manifest", split=s, seed=0, path=str(vols), image_size=8, spatial_dims=2)
         for s in SPLITS]
    assert torch.isfinite(volumes.x).all()


@pytest.mark.parametrize("loader", EVERY_LOADER)
def test_a_set_smaller_than_one_batch_trains_as_one_batch(tmp_path, loader):
    from core import config as config_lib
    from training.build import resolve_dataset
    from training.build import build_training

    labels, splits = two_classes(8), ["train"] * 10 + ["test"] * 6
    name, options = write(loader, tmp_path, labels, splits)
    modality = {"audio_manifest": "audio", "medical_manifest": "medical"}.get(loader, "sequence")
    cfg = config_lib.load_config(modality, "simclr", overrides=[f"data.path={str(tmp_path)!r}"] +
                                 [f"data.{name}.{k}={v!r}" for k, v in options.items()])
    cfg["data"]["name"] = resolve_dataset(cfg)
    assert cfg["data"]["name"] == name
    datasets, *_ = build_training(cfg, torch.device("cpu"))
    assert len(datasets["train"]) == 10 - 2 and cfg["train"]["batch_size"] == 8  # val: one item per class
    assert len(datasets["val"]) == 2 and len(datasets["test"]) == 6
