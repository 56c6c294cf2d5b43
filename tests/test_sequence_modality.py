"""The sequence modality: built-in data, encoders, views, file loaders and its config."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from core import registry
import modalities.sequence  # noqa: F401  (registers)
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
    assert {"tcn", "gru", "transformer", "ts2vec"} <= set(ENCODERS)
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


@pytest.mark.parametrize("name", [n for n in ENCODERS if n != "ts2vec"])  # ts2vec's is not, by design
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


@pytest.mark.parametrize("pool", ["mean", "max", "last"])
def test_tcn_pools_the_context_over_the_real_steps_only(pool):
    torch.manual_seed(0)
    enc = registry.build("encoder", "tcn", in_channels=2, width=8, pool=pool).eval()
    x, mask = torch.randn(3, 2, 30), torch.ones(3, 30, dtype=torch.bool)
    mask[0, 11:], mask[2, 25:] = False, False
    with torch.no_grad():
        out = enc(x, mask)
    context, lengths = out["context"].double().numpy(), mask.sum(1).tolist()
    reduce = {"mean": lambda c: c.mean(0), "max": lambda c: c.max(0), "last": lambda c: c[-1]}[pool]
    expected = np.stack([reduce(context[i, :n]) for i, n in enumerate(lengths)])
    np.testing.assert_allclose(out["embedding"].double().numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pool must be"):
        registry.build("encoder", "tcn", in_channels=2, pool="median")


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
