"""The medical manifest loader on real PNG, DICOM and NIfTI files the tests write."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from core import registry
import modalities.medical  # noqa: F401  (registers)
from modalities.medical.loaders import MedicalFileError, detect_format


def write_dicom(file: Path, pixels: np.ndarray):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "OT", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing = [1, 0, 0, 0, 1, 0], [0, 0, 0], [1, 1]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    pydicom.dcmwrite(file, ds, enforce_file_format=True)


def ramp(rows, cols):
    """Dark on the left, bright on the right: shows whether a reader transposed the image."""
    return np.tile(np.linspace(0, 250, cols), (rows, 1)).astype(np.uint8)


def write_images(folder: Path, rows: list[str]):
    Image.fromarray(ramp(20, 12)).save(folder / "gray.png")
    Image.fromarray(np.stack([ramp(30, 40), ramp(30, 40) // 2, ramp(30, 40) // 4], -1)).save(folder / "rgb.png")
    write_dicom(folder / "scan.dcm", ramp(16, 24).astype(np.uint16) * 10)
    nib.save(nib.Nifti1Image(ramp(14, 18).astype(np.float32), np.eye(4)), folder / "slice.nii.gz")
    (folder / "manifest.csv").write_text("\n".join(["path,report,label,split"] + rows) + "\n")


GOOD = ["gray.png,Normal chest.,normal,train", "rgb.png,Nodule in the right upper zone.,nodule,train",
        "scan.dcm,Nodule in the left lower zone.,nodule,test", "slice.nii.gz,No focal opacity.,normal,val"]


def test_manifest_loads_png_dicom_nifti_with_split_column(tmp_path):
    write_images(tmp_path, GOOD)
    assert detect_format(tmp_path) == detect_format(tmp_path / "manifest.csv") == "medical_manifest"
    load = {s: registry.build("dataset", "medical_manifest", split=s, seed=0, path=str(tmp_path), image_size=16)
            for s in ("train", "val", "test")}
    assert [len(load[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    train = load["train"]
    assert train.classes == ["nodule", "normal"] and train.labels.tolist() == [1, 0]
    assert train.captions[1] == "Nodule in the right upper zone." and train.rows == [1, 2]
    for ds in load.values():
        x = ds.x
        assert x.shape[1:] == (1, 16, 16) == ds.input_shape and x.dtype == torch.float32
        assert x.min() == 0 and x.max() == 1
        assert (x[..., :4].mean() < x[..., -4:].mean()).all()  # left-right kept, not transposed
        assert ds[0]["text"] in {row.split(",")[1] for row in GOOD}
    rgb = registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(tmp_path / "manifest.csv"),
                         image_size=[8, 10], channels=3)
    assert rgb.x.shape == (2, 3, 8, 10) and torch.equal(rgb.x[0, 0], rgb.x[0, 2])  # gray repeated to RGB


def test_manifest_stratified_split_and_numeric_labels(tmp_path):
    Image.fromarray(ramp(8, 8)).save(tmp_path / "a.png")
    rows = [f"a.png,report {i},{[10, 2][i % 2]}" for i in range(20)]
    (tmp_path / "manifest.csv").write_text("\n".join(["path,report,label"] + rows) + "\n")

    def load(split, seed):
        return registry.build("dataset", "medical_manifest", split=split, seed=seed, path=str(tmp_path),
                              image_size=8, val_fraction=0.2, test_fraction=0.3)
    parts = {s: load(s, 0) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [10, 4, 6]
    assert sorted(sum((parts[s].rows for s in parts), [])) == list(range(1, 21))
    assert parts["train"].classes == ["2", "10"] and torch.bincount(parts["test"].labels).tolist() == [3, 3]
    assert load("test", 0).rows == parts["test"].rows and load("test", 1).rows != parts["test"].rows


def test_manifest_3d_nifti_volume(tmp_path):
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 12, 20)).astype(np.float32), np.eye(4)),
             tmp_path / "vol.nii")
    Image.fromarray(ramp(8, 8)).save(tmp_path / "flat.png")
    (tmp_path / "m.csv").write_text("path,report,label,split\nvol.nii,CT chest.,a,train\nflat.png,x,a,test\n")
    ds = registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(tmp_path / "m.csv"),
                        image_size=8, spatial_dims=3)
    assert ds.x.shape == (1, 1, 8, 8, 8) and ds.input_shape == (1, 8, 8, 8)
    with pytest.raises(MedicalFileError, match=r"flat\.png.*row 2.*2 spatial dimensions"):
        registry.build("dataset", "medical_manifest", split="test", seed=0, path=str(tmp_path / "m.csv"),
                       image_size=8, spatial_dims=3)


def test_manifest_corrupt_and_missing_files_name_file_and_row(tmp_path):
    write_images(tmp_path, GOOD[:2] + ["broken.png,Bad.,normal,train", "gone.dcm,Gone.,normal,train"])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(MedicalFileError, match=r"broken\.png' \(manifest row 3\): cannot be read"):
        registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(tmp_path))
    ds = registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(tmp_path), skip_bad=True)
    assert len(ds) == 2 and [row for row, _, _ in ds.skipped] == [3, 4]
    assert "no such file" in ds.skipped[1][2]
    (tmp_path / "bad.csv").write_text("file,report\na.png,x\n")
    with pytest.raises(MedicalFileError, match="missing column"):
        registry.build("dataset", "medical_manifest", split="train", seed=0, path=str(tmp_path / "bad.csv"))
    with pytest.raises(MedicalFileError, match="manifest.csv"):
        detect_format(tmp_path / "nowhere")


# config --------------------------------------------------------------------
