"""inference.preprocess against the loaders: a raw input prepared by ``preprocess`` equals the item
the loader makes of the same file (real WAV, PNG and UCR files written to tmp_path)."""
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import modalities  # noqa: F401  (registers the loaders)
from core import registry
from core.errors import UserError
from inference.preprocess import make_preprocess
from inference.spec import loader_options, preprocess_spec
from modalities.sequence.loaders import masked


def spec_of(modality: str, dataset) -> dict:
    return preprocess_spec({"modality": modality, "data": {"name": "test"}}, dataset)


def test_audio_wave_and_file_equal_the_manifest_loader(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((4000, 2))).astype(np.float32)  # 0.5 s at 8 kHz, two channels
    sf.write(tmp_path / "a.wav", stereo, 8000)
    (tmp_path / "manifest.csv").write_text("path,label,split\na.wav,x,train\na.wav,x,test\n")
    loader = registry.build("dataset", "audio_manifest", split="test", seed=0, path=str(tmp_path),
                            sample_rate=16000, clip_samples=6400)
    spec = spec_of("audio", loader)
    assert spec["sample_rate"] == 16000 and spec["clip_samples"] == 6400 and spec["input_shape"] == [1, 6400]
    assert loader_options(spec, "audio_folder") == {"sample_rate": 16000, "clip_samples": 6400}
    preprocess = make_preprocess(spec)
    item = loader[0]["x"]
    wave, rate = sf.read(tmp_path / "a.wav")  # (T, 2) float64, as a user reads it
    for x in (preprocess(tmp_path / "a.wav"), preprocess(wave, rate), preprocess(wave.T, rate)):
        assert x.shape == (1, 6400) and x.dtype == torch.float32
        torch.testing.assert_close(x, item, atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="sample rate"):
        preprocess(wave)
    with pytest.raises(UserError, match="no such file"):
        preprocess(tmp_path / "missing.wav")


def test_image_array_and_file_equal_the_manifest_loader(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (50, 40), dtype=np.uint8)
    rgb = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    (tmp_path / "manifest.csv").write_text("path,report,label,split\ng.png,a,x,test\nc.png,b,x,test\n"
                                           "g.png,a,x,train\n")
    loader = registry.build("dataset", "medical_manifest", split="test", seed=0, path=str(tmp_path),
                            image_size=32, channels=1)
    spec = spec_of("medical", loader)
    assert spec["image_size"] == [32, 32] and spec["channels"] == 1 and spec["spatial_dims"] == 2
    preprocess = make_preprocess(spec)
    for i, (file, array) in enumerate([("g.png", gray), ("c.png", rgb)]):
        item = loader[i]["x"]
        for x in (preprocess(tmp_path / file), preprocess(array)):
            assert x.shape == (1, 32, 32)
            torch.testing.assert_close(torch.as_tensor(x), item, atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="spatial axes"):
        preprocess(np.zeros((2, 3, 4, 5)))


def test_series_equal_the_ucr_loader_with_missing_and_short_series(tmp_path):
    (tmp_path / "S_TRAIN.tsv").write_text("1\t0.5\t1.0\t2.0\t3.0\t4.0\n2\t1.0\tNaN\t2.0\t1.0\t0.0\n")
    (tmp_path / "S_TEST.tsv").write_text("1\t0.1\t0.2\t0.3\n2\t5.0\t4.0\t3.0\t2.0\t1.0\n")
    loader = registry.build("dataset", "ucr", split="test", seed=0, path=str(tmp_path), val_fraction=0.0)
    spec = spec_of("sequence", loader)
    assert spec["length"] == 5 and spec["channels"] == 1
    preprocess = make_preprocess(spec)
    for i, raw in enumerate(([0.1, 0.2, 0.3], [[5.0, 4.0, 3.0, 2.0, 1.0]])):
        x = preprocess(np.array(raw))
        assert x.shape == (1, 5)
        zeroed, mask = masked(x[None].numpy().astype(np.float64))
        item = loader[i]
        torch.testing.assert_close(torch.from_numpy(zeroed[0]), item["x"])
        assert mask[0].tolist() == item["mask"].tolist()
    assert loader.files == [tmp_path / "S_TEST.tsv"] * 2 and loader.rows == [1, 2]
    with pytest.raises(UserError, match=r"expected a series \(1, T\)"):
        preprocess(np.zeros((3, 5)))
