"""Multi-crop local views (modalities/crops.py) of the three view transforms, their place in the
batch (training/loop.py add_views), the built-in encoders on them, and an exact dino resume."""
from __future__ import annotations

import itertools

import pytest
import torch
from conftest import TINY, run_cli

import modalities  # noqa: F401  (registers encoders and views)
from core import config as config_lib
from core import notes
from modalities.audio.views import AudioViews
from modalities.crops import random_windows, window_sizes
from modalities.medical.views import MedicalViews
from modalities.sequence.views import SequenceViews
from training.build import build_encoder
from training.loop import add_views

OFF = {  # every augmentation probability of each transform at 0: its views are copies of x
    "audio": (AudioViews, ("crop_p", "shift_p", "speed_p", "gain_p", "mix_p", "noise_p", "freq_mask_p", "time_mask_p")),
    "sequence": (SequenceViews, ("crop_p", "time_warp_p", "magnitude_warp_p", "scaling_p", "channel_dropout_p",
                                 "permute_p", "jitter_p")),
    "medical": (MedicalViews, ("crop_p", "affine_p", "flip_p", "intensity_p", "noise_p", "gamma_p")),
}
# (transform, input shape, local_scale, expected window of every axis after (B, C))
CASES = [("audio", (3, 1, 999), 0.4, (400,)), ("sequence", (3, 2, 49), 0.3, (15,)),
         ("medical", (3, 1, 64, 27), 0.4, (26, 11)), ("medical", (2, 1, 9, 20, 13), 0.45, (4, 9, 6))]
IDS = ["audio", "sequence", "medical-2d", "medical-3d"]


def transform(name, off=False, **options):
    cls, probabilities = OFF[name]
    return cls(**({k: 0.0 for k in probabilities} if off else {}), **options)


def offsets_of(window, row):
    """Every offset at which ``window`` (C, *w) is an exact slice of ``row`` (C, *extent)."""
    ranges = [range(e - w + 1) for e, w in zip(row.shape[1:], window.shape[1:])]
    return [o for o in itertools.product(*ranges)
            if torch.equal(row[(slice(None), *[slice(a, a + w) for a, w in zip(o, window.shape[1:])])], window)]


@pytest.mark.parametrize("name, shape, scale, window", CASES, ids=IDS)
def test_local_crops_are_windows_of_round_scale_times_every_extent(name, shape, scale, window):
    x = torch.randn(*shape)
    crops = transform(name, local_views=4, local_scale=scale).local_crops(x, torch.Generator().manual_seed(0))
    assert crops.shape == (shape[0], 4, shape[1], *window) and torch.isfinite(crops).all()
    assert window_sizes(shape[2:], scale) == list(window)


@pytest.mark.parametrize("name, shape, scale, window", CASES, ids=IDS)
def test_without_augmentation_a_local_crop_is_a_slice_of_x_at_a_random_offset(name, shape, scale, window):
    x = torch.randn(*shape)
    crops = transform(name, off=True, local_views=4, local_scale=scale).local_crops(x, torch.Generator().manual_seed(1))
    seen = set()
    for b, v in itertools.product(range(shape[0]), range(4)):
        found = offsets_of(crops[b, v], x[b])
        assert len(found) == 1, f"sample {b} view {v}: not a window of x"
        seen.add(found[0])
    assert len(seen) > 1, "every local crop sits at the same offset"


@pytest.mark.parametrize("name, shape, scale, window", CASES, ids=IDS)
def test_local_crops_are_augmented_and_replay_from_the_generator(name, shape, scale, window):
    x = torch.randn(*shape)
    views = transform(name, local_views=4, local_scale=scale)
    crops = views.local_crops(x, torch.Generator().manual_seed(2))
    assert torch.equal(crops, views.local_crops(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(crops, views.local_crops(x, torch.Generator().manual_seed(3)))
    sliced = sum(bool(offsets_of(crops[b, v], x[b])) for b, v in itertools.product(range(shape[0]), range(4)))
    assert sliced < shape[0] * 4, "the default pipeline left every local crop unaugmented"


def test_bad_local_settings_are_refused():
    with pytest.raises(ValueError, match="local_scale"):
        SequenceViews(local_scale=0.0)
    with pytest.raises(ValueError, match="local_views"):
        AudioViews(local_views=-1)
    with pytest.raises(ValueError, match="local_views >= 1"):
        MedicalViews().local_crops(torch.randn(2, 1, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="local_scale"):
        random_windows(torch.randn(2, 1, 8), 1.5, torch.Generator())


def test_add_views_puts_local_views_in_the_batch_and_replays_them(capsys):
    views = SequenceViews(local_views=3)
    x = torch.randn(4, 2, 20)
    batch = add_views({"x": x}, views, 0, 5, torch.device("cpu"))
    assert batch["views"].shape == (4, 2, 2, 20) and batch["local_views"].shape == (4, 3, 2, 8)
    again = add_views({"x": x}, views, 0, 5, torch.device("cpu"))  # a resumed step draws the same
    assert torch.equal(batch["views"], again["views"]) and torch.equal(batch["local_views"], again["local_views"])
    assert "local_views" not in add_views({"x": x}, SequenceViews(), 0, 5, torch.device("cpu"))

    notes._said.clear()  # say_once prints once per process
    padded = add_views({"x": x, "mask": torch.ones(4, 20, dtype=torch.bool)}, views, 0, 5, torch.device("cpu"))
    assert "local_views" not in padded and "views" in padded
    assert "local views skipped" in capsys.readouterr().err


# Every built-in encoder at its configured size, on the local windows of its modality's dino
# settings. Not 3-D densenet121: it needs >= 16 voxels per axis (configs/modalities/medical.yaml).
ENCODER_INPUTS = [("audio", e, (1, 16000)) for e in ("cpc_wave", "logmel_cnn")] + \
                 [("medical", e, (1, 64, 64)) for e in ("resnet18", "resnet34", "resnet50", "densenet121")] + \
                 [("medical", e, (1, 16, 64, 64)) for e in ("resnet18", "resnet34", "resnet50")] + \
                 [("sequence", e, (3, 128)) for e in ("tcn", "gru", "transformer")]


@pytest.mark.parametrize("modality, encoder, shape", ENCODER_INPUTS,
                         ids=[f"{m}-{e}-{len(s) - 1}d" for m, e, s in ENCODER_INPUTS])
def test_every_builtin_encoder_takes_its_modalitys_local_views(modality, encoder, shape):
    cfg = config_lib.load_config(modality, "dino", overrides=[f"model.encoder={encoder}"])
    options = cfg["views"][cfg["views"]["name"]]
    assert options["local_views"] > 0
    model = build_encoder(cfg, shape).train()
    small = (shape[0], *window_sizes(shape[1:], options["local_scale"]))
    out = model(torch.randn(2, *small))["embedding"]
    assert out.shape == (2, model.dims["embedding"]) and torch.isfinite(out).all()


def test_dino_resumes_exactly_with_local_views(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    common = ["--modality", "sequence", "--objective", "dino", *TINY["sequence"], "train.steps=4",
              "train.checkpoint_every=1", "train.batch_size=8", "train.val_every=0", "train.progress=false",
              "eval.probe_epochs=2", "optim.warmup_steps=1", "objective.warmup_teacher_temp_steps=3",
              "objective.freeze_last_layer_steps=1"]
    assert run_cli("--run-dir", straight, *common).returncode == 0
    first = run_cli("--run-dir", stopped, "train.stop_after_steps=2", *common)
    assert first.returncode == 0, first.stderr
    second = run_cli("--resume", stopped, "train.stop_after_steps=0")
    assert second.returncode == 0, second.stderr
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any("teacher_encoder" in k for k in a) and any(k.endswith("center") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
