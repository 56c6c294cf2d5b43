"""Medical modality: built-in findings and reports, MONAI encoders (2D/3D), batched views, manifest loader."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from core import registry
import modalities.medical  # noqa: F401  (registers)
from modalities.medical import datasets, synthetic
from modalities.medical.views import MedicalViews

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = registry.names("encoder", "medical")
TINY = {"resnet18": {"width": 4}, "resnet34": {"width": 4}, "resnet50": {"width": 2},
        "densenet121": {"init_features": 8, "growth_rate": 4}}
PROBS = ("crop_p", "affine_p", "flip_p", "intensity_p", "noise_p", "gamma_p")


def builtin(split="train", seed=0, per_class=2, **kwargs):
    return registry.build("dataset", "medical_builtin", split=split, seed=seed, image_size=32,
                          train_per_class=per_class, val_per_class=per_class, test_per_class=per_class, **kwargs)


def only(key, **kwargs):
    """Views with every augmentation off except ``key`` (probability 1)."""
    return MedicalViews(**{**{k: 0.0 for k in PROBS}, key: 1.0, **kwargs})


# built-in data -------------------------------------------------------------

def test_registered_names():
    assert set(ENCODERS) == {"resnet18", "resnet34", "resnet50", "densenet121"}
    assert set(registry.names("dataset", "medical")) == {"medical_builtin", "medical_manifest"}
    assert registry.names("views", "medical") == ["medical_views"]


def test_builtin_is_deterministic_and_seeded():
    a, b, c = builtin(seed=3), builtin(seed=3), builtin(seed=4)
    assert torch.equal(a.x, b.x) and a.captions == b.captions and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, c.x)


def test_builtin_items_balance_and_disjoint_splits():
    splits = {s: builtin(s, per_class=3) for s in ("train", "val", "test")}
    for ds in splits.values():
        assert torch.equal(torch.bincount(ds.labels, minlength=8), torch.full((8,), 3))
        item = ds[0]
        assert item["x"].shape == (1, 32, 32) == ds.input_shape and item["x"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].dim() == 0 and isinstance(item["text"], str)
        assert 0 <= ds.x.min() and ds.x.max() <= 1 and len(ds.captions) == len(ds) == 24
        assert all(len(v) == len(ds) for v in ds.attributes.values())
        assert ds.classes == list(synthetic.CLASSES)
    flat = {s: ds.x.flatten(1) for s, ds in splits.items()}
    assert torch.cdist(flat["train"], flat["test"]).min() > 0 and torch.cdist(flat["train"], flat["val"]).min() > 0


def test_reports_follow_the_generating_findings():
    ds = builtin(per_class=8)
    normal_only = set(datasets.NEGATIONS) | set(datasets.NEUTRAL) | {"The lungs are clear."}
    normal_only |= set(datasets.PREAMBLES[2])
    for i, text in enumerate(ds.captions):
        kind = ds.classes[int(ds.labels[i])]
        attrs = {k: v[i] for k, v in ds.attributes.items()}
        said = re.split(r"(?<=\.)\s+", text)
        negations = [s for s in said if s in datasets.NEGATIONS]
        assert all(kind not in datasets.NEGATIONS[s] for s in negations), text
        if kind == "no finding":
            assert negations and set(said) <= normal_only, text
            assert np.isnan(attrs["side"]) and attrs["count"] == 0
            continue
        finding = " ".join(s for s in said if s not in normal_only).lower()
        side, other = datasets.SIDES[int(attrs["side"])], datasets.SIDES[1 - int(attrs["side"])]
        assert re.search(rf"\b{side}\b", finding) and not re.search(rf"\b{other}\b", text), text
        assert (attrs["x"] < 0.5) == (side == "right")  # the patient's right is the image's left
        if kind not in ("multiple nodules", "effusion"):
            assert datasets.ZONES[int(attrs["zone"])] in finding and datasets.ZONES[1 - int(attrs["zone"])] not in text
        if "mm" in finding:
            assert f"{int(round(attrs['size_mm']))} mm" in finding, text
        keyword = {"linear opacity": "linear|streaky", "ring lesion": "ring|cavit", "calcification": "calcif",
                   "multiple nodules": "nodules"}.get(kind, kind)
        assert re.search(keyword, finding), text
    assert len(set(ds.captions)) > 0.9 * len(ds)


@pytest.mark.parametrize("kind", ["nodule", "mass", "ring lesion"])
def test_finding_is_drawn_where_its_attributes_say(kind):
    label = synthetic.CLASSES.index(kind)
    for seed in range(4):
        with_finding, attrs = synthetic.render(np.random.default_rng(seed), label, 64)
        without, _ = synthetic.render(np.random.default_rng(seed), 0, 64)
        # same anatomy; outside the finding the images differ only by the [0, 1] rescaling, an affine map
        design = np.stack([without[0].ravel(), np.ones(without[0].size)], 1)
        fit = np.linalg.lstsq(design, with_finding[0].ravel(), rcond=None)[0]
        diff = np.abs(with_finding[0] - (design @ fit).reshape(64, 64))
        row, col = np.unravel_index(diff.argmax(), diff.shape)
        centre = np.array([attrs[5] * 64 - 0.5, attrs[4] * 64 - 0.5])
        radius_px = attrs[1] / synthetic.FOV_MM * 64 / 2
        assert np.hypot(*(np.array([row, col]) - centre)) <= radius_px * 1.2 + 1.5


def test_3d_option_shapes():
    ds = builtin(spatial_dims=3, depth=8, per_class=1)
    assert ds.x.shape == (8, 1, 8, 32, 32) and ds.input_shape == (1, 8, 32, 32)
    z = ds.attributes["z"][ds.labels.numpy() > 0]
    assert np.all((z > 0) & (z < 1))


# encoders ------------------------------------------------------------------

@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_shapes_finite_and_every_parameter_learns(name, spatial_dims):
    torch.manual_seed(0)
    channels = 3 if spatial_dims == 2 else 1
    encoder = registry.build("encoder", name, in_channels=channels, spatial_dims=spatial_dims, **TINY[name])
    x = torch.randn(2, channels, *([32, 32] if spatial_dims == 2 else [16, 16, 16]))
    out = encoder(x)
    rows = 3 if spatial_dims == 2 else 1  # 16-pixel patches 8 apart: 3 rows over 32 pixels, 1 over 16
    assert out["embedding"].shape == (2, encoder.dims["embedding"])
    assert out["sequence"].shape == (2, rows, encoder.dims["sequence"])
    assert torch.isfinite(out["embedding"]).all() and torch.isfinite(out["sequence"]).all()
    (out["embedding"].pow(2).sum() + out["sequence"].sum()).backward()
    dead = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_sequence_is_rows_of_independently_encoded_patches():
    """Each row = mean over its patches of the pooled features of that patch alone (a loop over
    slices here), so changing pixels below a row's patches cannot change that row (no look-ahead)."""
    torch.manual_seed(0)
    encoder = registry.build("encoder", "resnet18", width=4, patch_jitter=0.0).eval()
    x = torch.randn(2, 1, 40, 32)  # 4 rows x 3 columns of 16-pixel patches, 8 apart
    with torch.no_grad():
        rows = encoder(x)["sequence"]
        expected = torch.stack([
            torch.stack([encoder.features(x[:, :, 8 * r:8 * r + 16, 8 * c:8 * c + 16]).mean(dim=(2, 3))
                         for c in range(3)]).mean(0)
            for r in range(4)], dim=1)
        torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-5)
        changed = x.clone()
        changed[:, :, 24:] = torch.randn_like(changed[:, :, 24:])  # below row 1's patches (pixels 8..23)
        after = encoder(changed)["sequence"]
    torch.testing.assert_close(after[:, :2], rows[:, :2])
    assert not torch.allclose(after[:, 2:], rows[:, 2:])


def test_outputs_are_computed_on_first_access_only():
    encoder = registry.build("encoder", "resnet18", width=4).eval()
    patches = registry.build("encoder", "resnet18", width=4, embedding="patches").eval()
    patches.load_state_dict(encoder.state_dict())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        grid = torch.stack([encoder.features(x[:, :, 8 * r:8 * r + 16, 8 * c:8 * c + 16]).mean(dim=(2, 3))
                            for r in range(3) for c in range(3)])
        torch.testing.assert_close(patches(x)["embedding"], grid.mean(0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(encoder(x)["embedding"], encoder.features(x).mean(dim=(2, 3)))
    calls = []
    encoder.features.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    out = encoder(x)
    assert calls == [] and set(out.keys()) == {"embedding", "sequence"} and "sequence" in out
    assert out["embedding"] is out["embedding"]
    assert calls == [2]  # the whole images, once
    assert out["sequence"].shape == (2, 3, 32)
    assert calls == [2, 2 * 3 * 3]  # then every patch of the 3 x 3 grid
    patches.features.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    out = patches(x)
    out["embedding"], out["sequence"]
    assert calls == [2, 18, 18]  # one pass over the grid serves both


def test_patch_jitter_only_in_training():
    torch.manual_seed(0)
    encoder = registry.build("encoder", "resnet18", width=4, patch_jitter=0.5)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b = encoder(x)["sequence"], encoder(x)["sequence"]
        encoder.eval()
        c, d = encoder(x)["sequence"], encoder(x)["sequence"]
    assert not torch.allclose(a, b) and torch.equal(c, d)


def test_default_encoder_dims_and_shape_errors():
    dims = {name: registry.build("encoder", name).dims["embedding"] for name in ENCODERS}
    assert dims == {"resnet18": 128, "resnet34": 128, "resnet50": 512, "densenet121": 256}
    encoder = registry.build("encoder", "resnet18", width=4)
    assert encoder(torch.randn(2, 1, 64, 64))["sequence"].shape == (2, 7, 32)  # 7 patch rows at 64 pixels
    with pytest.raises(ValueError, match="C = 1"):
        encoder(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        encoder(torch.randn(2, 1, 8, 32, 32))
    with pytest.raises(ValueError, match="at least 16 pixels"):
        encoder(torch.randn(2, 1, 12, 32))["sequence"]


# views ---------------------------------------------------------------------

def test_views_shape_reproducible_and_varied():
    x = builtin(per_class=1).x[:4]
    views = MedicalViews(n_views=3)
    a = views(x, torch.Generator().manual_seed(1))
    b = views(x, torch.Generator().manual_seed(1))
    c = views(x, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 1, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a[:, 0], a[:, 1])
    same = x[:1].expand(4, -1, -1, -1)  # one image four times: every copy gets its own parameters
    out = views(same, torch.Generator().manual_seed(0))[:, 0]
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    volumes = torch.rand(2, 1, 8, 12, 16)
    assert views(volumes, torch.Generator().manual_seed(0)).shape == (2, 3, 1, 8, 12, 16)


def test_views_with_every_augmentation_off_or_at_zero_strength_are_identity():
    x = torch.rand(3, 2, 16, 20)
    off = MedicalViews(**{k: 0.0 for k in PROBS})(x, torch.Generator().manual_seed(0))
    assert torch.equal(off, x.unsqueeze(1).expand_as(off))
    weak = MedicalViews(crop_p=1, crop_min_area=1, crop_max_aspect=1, affine_p=1, rotate_deg=0, scale=0,
                        translate=0, flip_p=0, intensity_p=1, intensity_scale=0, intensity_shift=0,
                        noise_p=1, noise_std=0)
    torch.testing.assert_close(weak(x, torch.Generator().manual_seed(0)), x.unsqueeze(1).expand_as(off))


@pytest.mark.parametrize("key", PROBS)
def test_each_augmentation_changes_the_image(key):
    x = builtin(per_class=1).x[:2]
    out = only(key)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(out, x.unsqueeze(1).expand_as(out), atol=1e-3)


def test_gamma_is_a_per_view_power_of_the_rescaled_image_and_off_draws_nothing():
    x = torch.rand(3, 1, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 - 0.5
    out = only("gamma_p", gamma_max=2.0, n_views=2)(x, torch.Generator().manual_seed(0))
    low, high = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    unit = ((x - low) / (high - low)).numpy()
    for i in range(3):
        for v in range(2):
            got = ((out[i, v] - low[i]) / (high[i] - low[i])).numpy()
            inside = (unit[i] > 0.05) & (unit[i] < 0.95)
            gamma = np.log(got[inside]) / np.log(unit[i][inside])  # one exponent for the whole view
            assert np.allclose(gamma, gamma[0], rtol=1e-6) and 0.5 <= gamma[0] <= 2.0
    assert not torch.allclose(out[0, 0], out[0, 1])  # each view its own gamma
    x = builtin(per_class=1).x[:2]
    assert torch.equal(MedicalViews()(x, torch.Generator().manual_seed(3)),
                       MedicalViews(gamma_max=3.0)(x, torch.Generator().manual_seed(3)))


def test_flip_mirrors_left_right_exactly():
    x = torch.rand(2, 1, 6, 10)
    out = only("flip_p")(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.flip(-1).unsqueeze(1).expand_as(out))


# manifest loader -------------------------------------------------------------

def test_yaml_defaults_equal_constructor_defaults():
    cfg = yaml.safe_load((ROOT / "configs" / "modalities" / "medical.yaml").read_text())
    assert cfg["data"]["name"] == "medical_builtin" and cfg["model"]["encoder"] == "resnet18"
    assert cfg["views"]["name"] == "medical_views"
    for kind, section in [("dataset", cfg["data"]), ("encoder", cfg["model"]), ("views", cfg["views"])]:
        for name, options in section.items():
            if name in ("name", "encoder", "with_objective"):
                continue
            params = inspect.signature(registry.get(kind, name).factory).parameters
            for key, value in options.items():
                assert params[key].default == value, f"{kind} {name}.{key}"
            expected = {k for k, p in params.items() if p.default is not inspect.Parameter.empty} - ({"in_channels", "spatial_dims"} if kind == "encoder" else {"in_channels"})
            assert set(options) == expected, f"{kind} {name}"
