"""Real files of every documented layout train end to end through ``run.py --data``.

Each test writes small real files (soundfile, PIL, pydicom, nibabel, NumPy,
text), runs two steps and the evaluation as a subprocess, and checks that the
loader was picked from the path and that results.json was written.
"""
import csv
import json

import nibabel as nib
import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from conftest import run_cli
from test_medical_loaders import write_dicom

TRAIN = ["train.steps=2", "train.batch_size=4", "train.val_every=0", "train.progress=false", "eval.probe_epochs=5"]


def check_run(run_dir, done, loader):
    """The run finished with the loader picked from the path; returns (config.yaml, results.json)."""
    assert done.returncode == 0, done.stderr[-2000:]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["name"] == loader
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == saved["train"]["steps"] and set(results["metrics"]) == set(results["floor"])
    return saved, results


def write_manifest(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_audio_manifest_of_mixed_formats_and_rates(tmp_path):
    data, rows = tmp_path / "clips", []
    data.mkdir()
    formats = [("wav", 16000, 2), ("flac", 22050, 1), ("ogg", 44100, 2), ("aiff", 8000, 1)]
    for i in range(16):
        ext, rate, channels = formats[i % 4]
        label, split = ("low", "high")[i % 2], "train" if i < 10 else "val" if i < 12 else "test"
        t = np.arange(int(0.3 * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (220 if label == "low" else 1760) * t)
        sf.write(data / f"c{i}.{ext}", np.stack([wave] * channels, 1) if channels > 1 else wave, rate)
        rows.append([f"clips/c{i}.{ext}", label, f"a {label} tone", split])
    write_manifest(tmp_path / "manifest.csv", ["path", "label", "caption", "split"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "audio", "--objective", "cpc", "--data", tmp_path, "--run-dir", run_dir, *TRAIN,
                   "data.audio_manifest.clip_samples=3200", "model.cpc_wave.width=8", "objective.n_negatives=4")
    check_run(run_dir, done, "audio_manifest")


def image(kind: int, size: int, rng) -> np.ndarray:
    img = rng.integers(0, 60, (size, size)).astype(np.uint8)
    if kind:
        img[size // 4: size // 2, size // 4: size // 2] = 250  # a bright "finding"
    return img


def test_medical_manifest_of_dicom_and_png(tmp_path):
    rng, rows = np.random.default_rng(0), []
    for i in range(12):
        kind = i % 2
        if i % 3 == 0:
            write_dicom(tmp_path / f"im{i}.dcm", image(kind, 40, rng).astype(np.uint16) * 16)
            name = f"im{i}.dcm"
        else:
            Image.fromarray(image(kind, 32 + 8 * (i % 2), rng)).save(tmp_path / f"im{i}.png")
            name = f"im{i}.png"
        rows.append([name, "Focal opacity." if kind else "No finding.", "finding" if kind else "normal"])
    write_manifest(tmp_path / "manifest.csv", ["path", "report", "label"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "medical", "--objective", "convirt", "--data", tmp_path / "manifest.csv",
                   "--run-dir", run_dir, *TRAIN, "data.medical_manifest.image_size=32", "model.resnet18.width=4",
                   "data.medical_manifest.test_fraction=0.34")
    check_run(run_dir, done, "medical_manifest")


def test_medical_manifest_of_nifti_volumes(tmp_path):
    rng, rows = np.random.default_rng(1), []
    for i in range(12):
        volume = rng.normal(size=(16, 16, 8)).astype(np.float32) + 3.0 * (i % 2)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii.gz")
        rows.append([f"v{i}.nii.gz", "Dense." if i % 2 else "Clear.", i % 2])
    write_manifest(tmp_path / "manifest.csv", ["path", "report", "label"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "medical", "--objective", "simclr", "--data", tmp_path, "--run-dir", run_dir, *TRAIN,
                   "data.medical_manifest.image_size=16", "model.resnet18.width=4",
                   "data.medical_manifest.test_fraction=0.34")
    check_run(run_dir, done, "medical_manifest")
    assert "3-D volumes (data.medical_manifest.spatial_dims=auto, from 'v0.nii.gz')" in done.stderr


def series(n: int, length: int, rng):
    y = np.arange(n) % 2
    t = np.arange(length)
    x = np.stack([np.sin(t / (2 + 3 * label)) for label in y])[:, None] + 0.1 * rng.normal(size=(n, 1, length))
    return x.astype(np.float32), y


def test_sequence_npz_folder(tmp_path):
    rng = np.random.default_rng(2)
    for split, n in (("train", 16), ("test", 8)):
        x, y = series(n, 48, rng)
        np.savez(tmp_path / f"{split}.npz", X=x, y=y)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", "supcon", "--data", tmp_path, "--run-dir", run_dir, *TRAIN,
                   "model.tcn.width=8")
    check_run(run_dir, done, "sequence_npz")


def test_sequence_ucr_tsv_pair(tmp_path):
    rng = np.random.default_rng(3)
    for split, n in (("TRAIN", 16), ("TEST", 8)):
        x, y = series(n, 40, rng)
        lines = ["\t".join([str(label + 1)] + [f"{v:.5f}" for v in row[0]]) for row, label in zip(x, y)]
        (tmp_path / f"Toy_{split}.tsv").write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", "cpc", "--data", tmp_path, "--run-dir", run_dir, *TRAIN,
                   "model.tcn.width=8", "objective.n_negatives=4")
    check_run(run_dir, done, "ucr")
    said = {line.split(" ", 2)[1]: line.split(" ", 2)[2] for line in done.stderr.splitlines() if line.startswith("data: ")}
    sizes = dict(item.split(" ") for item in said["items"].split(" (")[0].split(", "))
    assert int(sizes["train"]) + int(sizes["val"]) == 16 and sizes["test"] == "8" and said["items"].endswith("(2 classes)")
    per_class = dict(item.split(" ") for item in said["per"].removeprefix("class (train/val/test): ").split(", "))
    for name, counts in per_class.items():  # each class is 8 of the 16 train lines and 4 of the 8 test lines
        train, val, test = map(int, counts.split("/"))
        assert name in ("1", "2") and train + val == 8 and test == 4
    assert said["input"] == "shape (C, T) = (1, 40)"
    assert said["budget"] == f"2 steps of 4 items = {8 / int(sizes['train']):.1f} epochs of {sizes['train']}"


@pytest.mark.parametrize("objective", ["cpc", "clap"])
def test_sequence_uea_ts_pair_of_unequal_lengths(tmp_path, objective):
    rng = np.random.default_rng(4)
    header = "@problemName Toy\n@timeStamps false\n@univariate false\n@dimensions 2\n@equalLength false\n" \
             "@classLabel true up down\n@data\n"
    for split, n in (("TRAIN", 16), ("TEST", 8)):
        lines = []
        for i in range(n):
            length = int(rng.integers(20, 40))  # unequal lengths: padded and masked
            slope = 1.0 if i % 2 else -1.0
            dims = [slope * np.arange(length) / length + 0.1 * rng.normal(size=length) for _ in range(2)]
            lines.append(":".join(",".join(f"{v:.4f}" for v in d) for d in dims) + (":up" if i % 2 else ":down"))
        (tmp_path / f"Toy_{split}.ts").write_text(header + "\n".join(lines) + "\n")
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", objective, "--data", tmp_path, "--run-dir", run_dir,
                   *TRAIN, "model.tcn.width=8", *(["objective.n_negatives=4"] if objective == "cpc" else []))
    check_run(run_dir, done, "uea_ts")


# What users commonly have, with default settings: only the step count is cut, to keep the test short.
DEFAULTS = ["train.steps=2", "train.progress=false"]


def test_audio_manifest_with_train_and_test_only_at_default_settings(tmp_path):
    rows = []
    for i in range(24):
        label = ("low", "high")[i % 2]
        t = np.arange(22050) / 44100
        sf.write(tmp_path / f"n{i}.wav", 0.3 * np.sin(2 * np.pi * (220 if label == "low" else 1760) * t), 44100)
        rows.append([f"n{i}.wav", label, "test" if i >= 18 else "train"])
    write_manifest(tmp_path / "manifest.csv", ["path", "label", "split"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "audio", "--objective", "simclr", "--data", tmp_path, "--run-dir", run_dir, *DEFAULTS)
    saved, results = check_run(run_dir, done, "audio_manifest")
    assert "no val split given; val = 2 of the 18 train items" in done.stderr
    assert results["train_items"] == 16 and saved["train"]["batch_size"] == 16  # 16 < 32: one batch of all


def test_small_png_and_dicom_manifest_trains_with_the_whole_split_as_its_batch(tmp_path):
    rng, rows = np.random.default_rng(5), []
    for i in range(44):
        kind = i % 2
        name = f"im{i}.dcm" if i % 4 == 0 else f"im{i}.png"
        if name.endswith(".dcm"):
            write_dicom(tmp_path / name, image(kind, 48, rng).astype(np.uint16) * 16)
        else:
            Image.fromarray(image(kind, 48, rng)).save(tmp_path / name)
        rows.append([name, "Focal opacity." if kind else "No finding.", "finding" if kind else "normal",
                     "test" if i >= 34 else "train"])
    write_manifest(tmp_path / "manifest.csv", ["path", "report", "label", "split"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "medical", "--objective", "supcon", "--data", tmp_path, "--run-dir", run_dir,
                   *DEFAULTS)
    saved, results = check_run(run_dir, done, "medical_manifest")
    assert results["train_items"] == 34 - 2 * round(0.1 * 17) == 30  # val carved from the 34 train images
    assert saved["train"]["batch_size"] == results["batch_size"] == 30
    assert ("the train split has 30 items, fewer than one batch of 32: training on the whole split as one batch "
            "(train.batch_size=30, recorded in config.yaml)") in done.stderr


def test_nifti_volume_manifest_without_spatial_dims_at_default_settings(tmp_path):
    rng, rows = np.random.default_rng(6), []
    for i in range(12):
        volume = rng.normal(size=(33, 41, 25)).astype(np.float32) + 3.0 * (i % 2)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"v{i}.nii.gz")
        rows.append([f"v{i}.nii.gz", "Dense." if i % 2 else "Clear.", i % 2])
    write_manifest(tmp_path / "manifest.csv", ["path", "report", "label"], rows)
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "medical", "--objective", "convirt", "--data", tmp_path, "--run-dir", run_dir,
                   *DEFAULTS)
    saved, results = check_run(run_dir, done, "medical_manifest")
    assert saved["data"]["medical_manifest"]["spatial_dims"] == "auto"
    assert "3-D volumes (data.medical_manifest.spatial_dims=auto, from 'v0.nii.gz')" in done.stderr
    assert results["train_items"] == 8 and saved["train"]["batch_size"] == 8
