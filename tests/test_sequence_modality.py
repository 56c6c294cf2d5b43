"""The sequence modality: built-in data, encoders, views, file loaders and its config."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import registry
import modalities.sequence  # noqa: F401  (registers)
from modalities.sequence import synthetic
from modalities.sequence.loaders import SequenceFileError
from modalities.sequence.views import SequenceViews

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(train_per_class=6, val_per_class=2, test_per_class=3)
ENCODERS = registry.names("encoder", modality="sequence")
AUGMENTATIONS = ("crop_p", "time_warp_p", "magnitude_warp_p", "scaling_p", "channel_dropout_p", "permute_p",
                 "jitter_p")


def builtin(split="train", seed=0, **kwargs):
    return registry.build("dataset", "sequence_builtin", split=split, seed=seed, **{**SMALL, **kwargs})


def only(key, **kwargs):
    """Views with every augmentation off except ``key`` (probability 1)."""
    probs = {k: 0.0 for k in AUGMENTATIONS}
    probs[key] = 1.0
    return SequenceViews(**{**probs, **kwargs})


# built-in data -------------------------------------------------------------

def test_registered_names():
    assert {"tcn", "gru", "transformer"} <= set(ENCODERS)
    assert {"sequence_builtin", "sequence_npz", "ucr", "uea_ts"} <= set(registry.names("dataset", "sequence"))
    assert "sequence_views" in registry.names("views", "sequence")


def test_builtin_is_deterministic_and_seeded():
    a, b, c = builtin(seed=3), builtin(seed=3), builtin(seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels) and a.captions == b.captions
    assert not torch.allclose(a.x, c.x)


def test_builtin_items_balance_and_disjoint_splits():
    splits = {s: builtin(s) for s in ("train", "val", "test")}
    for split, ds in splits.items():
        per_class = SMALL[f"{split}_per_class"]
        assert len(ds) == per_class * len(ds.classes) == len(ds.captions)
        assert torch.bincount(ds.labels, minlength=8).tolist() == [per_class] * 8
        assert all(len(v) == len(ds) for v in ds.attributes.values())
        item = ds[0]
        assert item["x"].dtype == torch.float32 and tuple(item["x"].shape) == ds.input_shape == (3, 128)
        assert item["label"].dtype == torch.int64 and item["label"].dim() == 0
        assert isinstance(item["text"], str) and item["index"] == 0
    rows = {s: {r.tobytes() for r in ds.x.numpy()} for s, ds in splits.items()}
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])


def test_captions_follow_the_generating_attributes():
    ds = builtin(train_per_class=12)
    a = ds.attributes
    for i, text in enumerate(ds.captions):
        kind = ds.classes[int(ds.labels[i])]
        amp, trend, noise = a["amplitude"][i], a["trend"][i], a["noise"][i]
        assert ("low-amplitude" in text) == (amp < 0.6) and ("high-amplitude" in text) == (amp >= 1.6), text
        assert ("rising trend" in text) == (trend >= 0.4) and ("falling trend" in text) == (trend <= -0.4), text
        assert ("almost no noise" in text) == (noise < 0.15) and ("heavy noise" in text) == (noise >= 0.35), text
        if kind in ("sine", "square", "sawtooth", "damped oscillation"):
            speed = re.search(r"\b(slow|moderate|fast)\b", text).group(1)
            assert speed == ("slow" if a["frequency"][i] < 3 else "moderate" if a["frequency"][i] < 5 else "fast"), text
        if kind == "spikes":
            assert f"with {int(a['n_spikes'][i])} sharp spikes" in text
        if kind == "random walk":
            assert np.isnan(a["frequency"][i])
    assert len(set(ds.captions)) > 0.8 * len(ds)


def test_attributes_describe_the_series():
    ds = builtin(train_per_class=12)
    t = np.arange(128)
    for i in range(len(ds)):
        kind, x0 = ds.classes[int(ds.labels[i])], ds.x[i, 0].double().numpy()  # channel 0: gain +1, no lag
        if kind == "trend":  # the caption's rising/falling is the data's slope
            assert np.sign(np.polyfit(t, x0, 1)[0]) == np.sign(ds.attributes["trend"][i])
        if kind == "sine":  # the dominant frequency is the attribute (cycles per window)
            spectrum = np.abs(np.fft.rfft(x0 - np.polyval(np.polyfit(t, x0, 1), t)))
            assert abs(int(np.argmax(spectrum[1:])) + 1 - ds.attributes["frequency"][i]) <= 1.0


# encoders ------------------------------------------------------------------

@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_shapes_finite_and_every_parameter_learns(name):
    torch.manual_seed(0)
    enc = registry.build("encoder", name, in_channels=3)
    out = enc(torch.randn(2, 3, 40))
    assert out["embedding"].shape == (2, enc.dims["embedding"])
    assert out["sequence"].shape[0] == 2 and out["sequence"].shape[2] == enc.dims["sequence"]
    assert all(torch.isfinite(v).all() for v in out.values())
    loss = (out["embedding"] * torch.randn_like(out["embedding"])).sum() + out["sequence"].square().mean()
    loss.backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ENCODERS)
def test_padding_under_the_mask_does_not_change_the_embedding(name):
    torch.manual_seed(0)
    enc = registry.build("encoder", name, in_channels=3).eval()
    short, other = torch.randn(1, 3, 37), torch.randn(1, 3, 64)
    padded = torch.cat([short, 100 * torch.randn(1, 3, 27)], dim=-1)
    batch, mask = torch.cat([padded, other]), torch.ones(2, 64, dtype=torch.bool)
    mask[0, 37:] = False
    with torch.no_grad():
        alone = enc(short)["embedding"][0]
        masked = enc(batch, mask)["embedding"]
        unmasked = enc(batch)["embedding"][0]
        assert torch.allclose(masked[0], alone, atol=1e-5)
        assert torch.allclose(masked[1], enc(other)["embedding"][0], atol=1e-5)
        assert not torch.allclose(unmasked, alone, atol=1e-3)  # the garbage would matter without the mask


@pytest.mark.parametrize("name", ENCODERS)
def test_sequence_output_is_causal(name):
    torch.manual_seed(0)
    enc = registry.build("encoder", name, in_channels=2).eval()
    x = torch.randn(1, 2, 64)
    future = x.clone()
    future[..., 40:] = torch.randn(1, 2, 24)
    with torch.no_grad():
        a, b = enc(x)["sequence"], enc(future)["sequence"]
    past = a.shape[1] * 40 // 64  # sequence steps computed from input steps < 40 only
    assert torch.allclose(a[:, :past], b[:, :past], atol=1e-5)
    assert not torch.allclose(a[:, past:], b[:, past:], atol=1e-4)


def test_encoder_rejects_a_mismatched_mask():
    enc = registry.build("encoder", "tcn", in_channels=1)
    with pytest.raises(ValueError, match="mask"):
        enc(torch.randn(2, 1, 10), torch.ones(2, 9, dtype=torch.bool))


# views ---------------------------------------------------------------------

def test_views_shape_reproducible_and_varied():
    views = SequenceViews(n_views=3)
    x = torch.randn(1, 2, 64).expand(4, 2, 64).contiguous()  # four identical samples
    a = views(x, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 2, 64) and torch.isfinite(a).all()
    assert torch.equal(a, views(x, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, views(x, torch.Generator().manual_seed(2)))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(a[i], a[j])  # different random parameters per sample
        assert not torch.allclose(a[i, 0], a[i, 1])  # and per view


def test_views_are_batch_consistent():
    views = SequenceViews(n_views=2)
    x = torch.randn(3, 2, 50)
    changed = x.clone()
    changed[1:] = 10 * torch.randn(2, 2, 50)
    a = views(x, torch.Generator().manual_seed(5))
    b = views(changed, torch.Generator().manual_seed(5))
    assert torch.allclose(a[0], b[0], atol=1e-6)  # sample 0's views do not depend on the rest of the batch


def test_views_with_every_augmentation_off_are_identity():
    x = torch.randn(3, 2, 40)
    out = SequenceViews(**{k: 0.0 for k in AUGMENTATIONS})(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, x.unsqueeze(1).expand(3, 2, 2, 40))


@pytest.mark.parametrize("key", AUGMENTATIONS)
def test_each_augmentation_changes_the_series(key):
    x = torch.randn(4, 3, 48)
    out = only(key)(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 2, 3, 48) and torch.isfinite(out).all()
    assert not torch.allclose(out, x.unsqueeze(1).expand_as(out))


def test_segment_permutation_moves_values_and_channel_dropout_keeps_one_channel():
    x = torch.randn(8, 3, 48)
    out = only("permute_p", permute_segments=4)(x, torch.Generator().manual_seed(0))
    for v in range(2):  # a permutation of whole segments: the same values per channel, reordered
        assert torch.equal(out[:, v].sort(dim=-1).values, x.sort(dim=-1).values)
    dropped = only("channel_dropout_p", channel_drop_rate=0.7)(torch.randn(64, 3, 48), torch.Generator().manual_seed(0))
    zeroed = (dropped == 0).all(dim=-1)  # (64, 2, 3): which channels were dropped
    assert zeroed.any() and not zeroed.all(dim=-1).any()  # some dropped, never every channel of a series


def test_full_crop_is_identity():
    x = torch.randn(2, 1, 33)
    out = only("crop_p", crop_min=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0], x, atol=1e-5)


# file loaders --------------------------------------------------------------

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

def test_yaml_defaults_equal_constructor_defaults():
    cfg = yaml.safe_load((ROOT / "configs" / "modalities" / "sequence.yaml").read_text())
    sections = [("dataset", cfg["data"]), ("encoder", cfg["model"]), ("views", cfg["views"])]
    assert cfg["data"]["name"] == "sequence_builtin" and cfg["model"]["encoder"] == "tcn"
    assert cfg["views"]["name"] == "sequence_views"
    for kind, section in sections:
        for name, options in section.items():
            if name in ("name", "encoder"):
                continue
            params = inspect.signature(registry.get(kind, name).factory).parameters
            assert "in_channels" not in options and "path" not in options
            for key, value in options.items():
                assert params[key].default == value, f"{kind} {name}.{key}"
            expected = {k for k, p in params.items() if p.default is not inspect.Parameter.empty} - {"in_channels"}
            assert set(options) == expected, f"{kind} {name}"
