"""configs/experiments/dev_<set>.yaml: valid files that point where benchmarks/dev_sets.py builds each set,
and a data.path under "~" that reaches the loaders expanded."""
import sys
from pathlib import Path

import numpy as np

import modalities.sequence  # noqa: F401  (registers the loaders)
from core.config import load_config
from training.build import build_datasets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import baselines  # noqa: E402


def test_every_default_dev_set_has_an_experiment_file_with_the_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in baselines.DEFAULT_SETS:
        modality, folder, layout = baselines.SETS[key]
        cfg = load_config(modality, "simclr", str(ROOT / "configs" / "experiments" / f"dev_{key}.yaml"))
        built = Path("~/.cache/contrastive-dev-sets").expanduser() / folder / layout
        assert Path(cfg["data"]["path"]).expanduser() == built, key


def test_a_data_path_under_home_is_expanded_for_the_loader(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "sets").mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("TRAIN", 12), ("TEST", 6)):
        rows = ["\t".join([str(i % 2)] + [f"{v:.4f}" for v in rng.normal(size=20)]) for i in range(n)]
        (tmp_path / "sets" / f"Toy_{split}.tsv").write_text("\n".join(rows) + "\n")
    cfg = load_config("sequence", "simclr", overrides=["data.path='~/sets'", "data.name='ucr'"])
    datasets = build_datasets(cfg)
    assert len(datasets["train"]) + len(datasets["val"]) == 12 and len(datasets["test"]) == 6
    assert datasets["test"].input_shape == (1, 20)
