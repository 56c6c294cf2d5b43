"""Audio: file loaders on real audio files, waveform views, the log-mel CNN and the config sections."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from core import registry
import modalities.audio  # noqa: F401  (registers)
from core.errors import UserError
from modalities.audio.loaders import AudioFileError, detect_format
from modalities.audio.views import AudioViews

ROOT = Path(__file__).resolve().parents[1]
AUGMENTATIONS = ("crop_p", "shift_p", "speed_p", "gain_p", "mix_p", "noise_p", "freq_mask_p", "time_mask_p")


def sine(hz: float, rate: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate + phase).astype(np.float32)


def load(name, path, split="train", seed=0, **kwargs):
    return registry.build("dataset", name, split=split, seed=seed, path=str(path), **kwargs)


@pytest.fixture
def manifest(tmp_path):
    """stereo.wav (16 kHz, 2 s, float), short.flac (22.05 kHz, 0.5 s), a440.ogg (vorbis, 44.1 kHz, 1.5 s)."""
    left, right = sine(300, 16000, 2.0), np.linspace(-0.5, 0.5, 32000, dtype=np.float32)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.flac", sine(1000, 22050, 0.5), 22050)
    sf.write(tmp_path / "a440.ogg", sine(440, 44100, 1.5), 44100, format="OGG", subtype="VORBIS")
    (tmp_path / "manifest.csv").write_text(
        "path,caption,label,speaker,split\n"
        "stereo.wav,A stereo tone,tone,s1,train\n"
        "short.flac,,chirp,s2,train\n"
        "a440.ogg,An A440 sine,tone,s3,test\n"
        "stereo.wav,The same file again,chirp,s1,val\n")
    return tmp_path, (left + right) / 2


# file loaders --------------------------------------------------------------

def test_manifest_mono_crop_pad_resample_and_splits(manifest):
    root, mono = manifest
    train = load("audio_manifest", root / "manifest.csv")
    assert train.input_shape == (1, 16000) and train.classes == ["chirp", "tone"] and len(train) == 2
    item = train[0]
    assert item["x"].shape == (1, 16000) and item["x"].dtype == torch.float32 and item["label"].dtype == torch.int64
    assert item["text"] == "A stereo tone" and item["label"] == 1 and item["index"] == 0
    assert np.allclose(item["x"][0].numpy(), mono[8000:24000], atol=1e-6)  # mean of channels, center 1 s of 2 s
    padded = train[1]["x"][0]  # 0.5 s at 22.05 kHz -> 8000 samples at 16 kHz, then zeros
    assert train.captions[1] == "a recording of chirp" and train.labels.tolist() == [1, 0]
    assert padded[:7900].abs().max() > 0.3 and (padded[8000:] == 0).all()
    assert len(load("audio_manifest", root)) == 2  # a folder holding manifest.csv
    test = load("audio_manifest", root, split="test")
    assert len(test) == 1 and test.classes == train.classes and test.sample_rate == 16000
    spectrum = torch.fft.rfft(test[0]["x"][0]).abs()  # 1 Hz bins: 16000 samples at 16 kHz
    assert abs(int(spectrum.argmax()) - 440) <= 1
    assert load("audio_manifest", root, split="val").captions == ["The same file again"]


def test_folder_layout_stratified_seeded_splits(tmp_path):
    for name, hz in (("dog_bark", 200), ("rain", 2000)):
        (tmp_path / name).mkdir()
        for i in range(5):
            sf.write(tmp_path / name / f"{i}.wav", sine(hz, 8000, 0.1, phase=i), 8000)
    sf.write(tmp_path / "rain" / "5.aiff", sine(2000, 8000, 0.1), 8000)
    (tmp_path / "rain" / "notes.txt").write_text("not audio")
    assert detect_format(tmp_path) == "audio_folder"
    kw = dict(sample_rate=8000, clip_samples=800, val_fraction=0.2, test_fraction=0.2)
    splits = {s: load("audio_folder", tmp_path, split=s, **kw) for s in ("train", "val", "test")}
    assert splits["train"].classes == ["dog_bark", "rain"] and splits["train"].captions[0] == "a recording of dog bark"
    files = {s: {str(f) for f in d.files} for s, d in splits.items()}
    assert sum(map(len, files.values())) == 11 and len(set.union(*files.values())) == 11
    assert sorted(splits["test"].labels.tolist()) == [0, 1] and sorted(splits["val"].labels.tolist()) == [0, 1]
    assert splits["train"][0]["x"].shape == (1, 800)
    again = load("audio_folder", tmp_path, split="test", **kw)
    assert {str(f) for f in again.files} == files["test"]
    other = [{str(f) for f in load("audio_folder", tmp_path, split="test", seed=s, **kw).files} for s in (1, 2, 3)]
    assert any(o != files["test"] for o in other)


def test_unlabelled_manifest_and_speaker_grouped_split(tmp_path):
    sf.write(tmp_path / "clip.wav", sine(500, 16000, 0.1), 16000)
    rows = "".join(f"clip.wav,spk{i % 5}\n" for i in range(20))
    (tmp_path / "list.csv").write_text("path,speaker\n" + rows)
    assert detect_format(tmp_path / "list.csv") == "audio_manifest"
    splits = {s: load("audio_manifest", tmp_path / "list.csv", split=s, clip_samples=1600)
              for s in ("train", "val", "test")}
    assert splits["train"].classes == ["unlabelled"] and (splits["train"].labels == 0).all()
    assert splits["train"].captions[0] == "a recording"
    speakers = {s: set(d.speakers) for s, d in splits.items()}
    assert not (speakers["train"] & speakers["val"] or speakers["train"] & speakers["test"]
                or speakers["val"] & speakers["test"])
    assert sum(len(d) for d in splits.values()) == 20


def test_corrupt_and_missing_files_name_the_file_and_row(manifest, caplog):
    root, _ = manifest
    (root / "bad.wav").write_bytes(b"RIFF\x00\x00garbage that is not a wave file" * 20)
    header = "path,label,split\n"
    (root / "m.csv").write_text(header + "stereo.wav,a,train\nbad.wav,a,train\nshort.flac,b,train\n")
    with pytest.raises(AudioFileError, match=r"bad\.wav' \(manifest row 2\): cannot be read as audio"):
        load("audio_manifest", root / "m.csv")
    (root / "m.csv").write_text(header + "stereo.wav,a,train\nshort.flac,b,train\ngone.wav,a,train\n")
    with pytest.raises(AudioFileError, match=r"gone\.wav' \(manifest row 3\): no such file"):
        load("audio_manifest", root / "m.csv")
    (root / "m.csv").write_text(header + "bad.wav,a,train\nstereo.wav,a,train\ngone.wav,b,train\n")
    with caplog.at_level(logging.WARNING):
        kept = load("audio_manifest", root / "m.csv", skip_bad=True)
    assert kept.skipped == 2 and len(kept) == 1 and kept.files[0].name == "stereo.wav"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 of 3" in warnings[0].getMessage()
    (root / "m.csv").write_text(header + "stereo.wav,a,training\n")
    with pytest.raises(AudioFileError, match=r"m\.csv', row 1: split 'training' is not one of"):
        load("audio_manifest", root / "m.csv")
    (root / "m.csv").write_text("file,label\nstereo.wav,a\n")
    with pytest.raises(AudioFileError, match="has no 'path' column"):
        load("audio_manifest", root / "m.csv")


def test_detect_format_refuses_other_layouts(tmp_path):
    assert issubclass(AudioFileError, UserError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match="folder of class subfolders"):
        detect_format(tmp_path / "empty")
    with pytest.raises(AudioFileError, match="no such file or folder"):
        detect_format(tmp_path / "missing")
    (tmp_path / "empty" / "cls").mkdir()
    sf.write(tmp_path / "empty" / "cls" / "a.wav", sine(300, 8000, 0.1), 8000)
    folder, manifest = (registry.get("dataset", n).factory for n in ("audio_folder", "audio_manifest"))
    assert folder.accepts(tmp_path / "empty") and not manifest.accepts(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.csv").write_text("path\n")  # a manifest wins over class subfolders
    assert detect_format(tmp_path / "empty") == "audio_manifest"
    assert manifest.accepts(tmp_path / "empty") and not folder.accepts(tmp_path / "empty")
    assert not folder.accepts(tmp_path / "missing") and not manifest.accepts(tmp_path / "missing")


# views ---------------------------------------------------------------------

def only(key, **kwargs):
    """Views with every augmentation off except ``key`` (probability 1)."""
    return AudioViews(**{**{k: 0.0 for k in AUGMENTATIONS}, key: 1.0, **kwargs})


def test_views_shape_reproducible_and_varied():
    views = AudioViews(n_views=3)
    x = torch.randn(1, 1, 4000).expand(4, 1, 4000).contiguous()  # four identical clips
    a = views(x, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 1, 4000) and torch.isfinite(a).all()
    assert torch.equal(a, views(x, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, views(x, torch.Generator().manual_seed(2)))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(a[i], a[j])
        assert not torch.allclose(a[i, 0], a[i, 1])


def test_views_are_batch_consistent_and_identity_when_off():
    views = AudioViews()
    x = torch.randn(3, 1, 2000)
    changed = x.clone()
    changed[1:] = 10 * torch.randn(2, 1, 2000)
    g = torch.Generator().manual_seed(5)
    assert torch.allclose(views(x, g)[0], views(changed, torch.Generator().manual_seed(5))[0], atol=1e-6)
    off = AudioViews(**{k: 0.0 for k in AUGMENTATIONS})(x, g)
    assert torch.equal(off, x.unsqueeze(1).expand(3, 2, 1, 2000))
    assert torch.equal(only("crop_p", crop_min=1.0)(x, g), off)  # a full-length crop keeps the clip


@pytest.mark.parametrize("key", AUGMENTATIONS)
def test_each_augmentation_changes_the_clip(key):
    x = torch.randn(4, 1, 1000)
    out = only(key)(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 2, 1, 1000) and torch.isfinite(out).all()
    assert not torch.allclose(out, x.unsqueeze(1).expand_as(out))


def test_gain_and_snr_stay_in_their_ranges():
    x = torch.randn(16, 1, 16000)
    out = only("gain_p", gain_db_min=-10.0, gain_db_max=6.0)(x, torch.Generator().manual_seed(0))
    gain = (out * x.unsqueeze(1)).sum(-1) / x.square().sum(-1).unsqueeze(1)  # least-squares factor per view
    assert torch.allclose(out, gain.unsqueeze(-1) * x.unsqueeze(1), atol=1e-5)
    db = 20 * gain.log10()
    assert db.min() >= -10.0 and db.max() <= 6.0 and db.max() - db.min() > 8
    out = only("noise_p", snr_db_min=5.0, snr_db_max=30.0)(x, torch.Generator().manual_seed(0))
    noise = out - x.unsqueeze(1)
    snr = 10 * (x.square().mean(-1).unsqueeze(1) / noise.square().mean(-1)).log10()
    assert snr.min() >= 4.8 and snr.max() <= 30.2 and snr.max() - snr.min() > 10


def test_shift_time_mask_and_frequency_mask_do_what_they_say():
    t = 400
    x = torch.randn(6, 1, t) + 0.1
    out = only("shift_p", max_shift=0.1)(x, torch.Generator().manual_seed(0))
    steps = torch.arange(t)

    def shifted(clip, s):  # clip delayed by s samples, zero-filled
        return torch.where((steps - s >= 0) & (steps - s < t), clip[(steps - s) % t], 0)

    for i in range(6):
        for v in range(2):
            assert sum(torch.equal(out[i, v, 0], shifted(x[i, 0], s)) for s in range(-40, 41)) == 1
    out = only("time_mask_p", time_masks=2, time_mask_max=0.1)(x, torch.Generator().manual_seed(0))
    zero = out == 0
    assert torch.equal(torch.where(zero, 0, x.unsqueeze(1)), out) and zero.any()
    assert zero.sum(-1).max() <= 2 * 0.1 * t
    out = only("freq_mask_p", freq_masks=1, freq_mask_max=0.2)(x, torch.Generator().manual_seed(0))
    before, after = torch.fft.rfft(x, dim=-1).unsqueeze(1), torch.fft.rfft(out, dim=-1)
    stopped = after.abs() < 1e-4
    assert stopped.any() and stopped.sum(-1).max() <= 0.2 * (t // 2 + 1) + 1
    assert torch.allclose(after[~stopped], before.expand_as(after)[~stopped], atol=1e-3)
    for band in stopped.reshape(-1, t // 2 + 1):  # one contiguous band per view
        idx = band.nonzero().flatten()
        assert len(idx) == 0 or idx[-1] - idx[0] + 1 == len(idx)


def test_speed_resamples_a_sine_to_a_shifted_pitch():
    rate, hz = 16000, 440.0
    x = torch.from_numpy(sine(hz, rate, 0.5)).float().view(1, 1, -1).expand(4, 1, -1).contiguous()
    out = only("speed_p", speed_semitones=2.0)(x, torch.Generator().manual_seed(0))[:, :, 0].double().numpy()
    steps = np.arange(x.shape[-1])
    factors = np.linspace(2 ** (-2 / 12) - 0.01, 2 ** (2 / 12) + 0.01, 801)
    found = []

    def error(view, f):  # the resampled clip is 0.5 sin(2 pi hz f s / rate) inside the clip, 0 past its end
        inside, past = steps * f <= len(steps) - 2, steps * f >= len(steps)  # the one step between: half a sample
        want = 0.5 * np.sin(2 * np.pi * hz * f * steps / rate)
        return max(np.abs(view - want)[inside].max(), np.abs(view[past]).max(initial=0.0))

    for view in out.reshape(-1, x.shape[-1]):
        coarse = factors[int(np.argmin([error(view, f) for f in factors]))]
        fine = np.linspace(coarse - 4e-4, coarse + 4e-4, 401)
        errors = [error(view, f) for f in fine]
        assert min(errors) < 0.01  # linear interpolation of a 440 Hz sine at 16 kHz: error <= 0.002
        found.append(fine[int(np.argmin(errors))])
    assert 2 ** (-2 / 12) - 1e-3 <= min(found) and max(found) <= 2 ** (2 / 12) + 1e-3
    assert max(found) - min(found) > 0.05  # each view draws its own factor


def test_mix_adds_exactly_one_other_clip_with_a_bounded_weight():
    b, t = 4, 400
    x = torch.zeros(b, 1, t)
    for i in range(b):
        x[i, 0, 100 * i:100 * (i + 1)] = 1.0  # disjoint supports: what a view holds of clip j is readable
    out = only("mix_p", mix_max=0.4)(x, torch.Generator().manual_seed(0))
    others = set()
    for i in range(b):
        for v in range(2):
            level = out[i, v, 0].reshape(b, 100)  # one row per clip's support
            assert torch.allclose(level, level[:, :1].expand(b, 100))  # constant on each support
            weights = level[:, 0]
            lam = 1 - weights[i]
            assert 0 <= lam <= 0.4 + 1e-6
            mixed_in = [j for j in range(b) if j != i and weights[j] > 1e-6]
            assert len(mixed_in) == 1 and torch.isclose(weights[mixed_in[0]], lam)
            others.add((i, mixed_in[0]))
    assert len(others) > b  # the other clip is drawn, not always the same neighbour
    one = x[:1]
    assert torch.equal(only("mix_p")(one, torch.Generator().manual_seed(0)), one.unsqueeze(1).expand(1, 2, 1, t))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_and_logmel_run_on_the_gpu():
    x = torch.randn(4, 1, 8000, device="cuda")
    views = AudioViews(n_views=2).cuda()
    out = views(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.device.type == "cuda" and out.shape == (4, 2, 1, 8000)
    enc = registry.build("encoder", "logmel_cnn").cuda()
    assert enc(out.flatten(0, 1))["embedding"].shape == (8, 128)


# log-mel CNN ---------------------------------------------------------------

def test_logmel_cnn_shapes_finite_and_every_parameter_learns():
    torch.manual_seed(0)
    enc = registry.build("encoder", "logmel_cnn", widths=(8, 16, 24))
    assert any(k.startswith("mel.") for k in enc.state_dict())  # the mel filterbank lives in the model
    out = enc(torch.randn(3, 1, 16000))
    assert out["sequence"].shape == (3, 101 // 8, 24) and out["embedding"].shape == (3, 48)
    assert enc.dims == {"embedding": 48, "sequence": 24}
    assert all(torch.isfinite(v).all() for v in out.values())
    seq = out["sequence"]
    assert torch.allclose(out["embedding"], torch.cat([seq.mean(1), seq.amax(1)], -1))
    (out["embedding"] * torch.randn(3, 48)).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    enc.eval()
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.allclose(enc(wave)["embedding"], enc(wave.unsqueeze(1))["embedding"])
        low, high = torch.tensor(sine(300, 16000, 1.0)), torch.tensor(sine(5000, 16000, 1.0))
        assert not torch.allclose(enc(low[None])["embedding"], enc(high[None])["embedding"], atol=1e-3)
    with pytest.raises(ValueError, match="needs at least 8"):
        enc(torch.randn(1, 1, 800))


# config --------------------------------------------------------------------

def test_yaml_sections_equal_constructor_defaults():
    cfg = yaml.safe_load((ROOT / "configs" / "modalities" / "audio.yaml").read_text())
    assert cfg["views"]["name"] == "audio_views"
    sections = [("dataset", "audio_folder", cfg["data"]["audio_folder"]),
                ("dataset", "audio_manifest", cfg["data"]["audio_manifest"]),
                ("encoder", "logmel_cnn", cfg["model"]["logmel_cnn"]),
                ("views", "audio_views", cfg["views"]["audio_views"])]
    for kind, name, options in sections:
        params = inspect.signature(registry.get(kind, name).factory).parameters
        expected = {k for k, p in params.items() if p.default is not inspect.Parameter.empty}
        assert set(options) == expected, f"{kind} {name}"
        for key, value in options.items():
            default = params[key].default
            assert (list(default) if isinstance(default, tuple) else default) == value, f"{kind} {name}.{key}"
