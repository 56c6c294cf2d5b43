"""Config layers, overrides and their errors; the shipped experiment file."""
import json
import math
from pathlib import Path

import pytest
from conftest import TINY, run_cli

from core.config import ConfigError, apply, load_config, parse_override


def test_layers_merge_in_order_and_overrides_win(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("train:\n  steps: 7\noptim:\n  lr: 0.5\n")
    cfg = load_config("audio", "cpc", str(experiment), ["optim.lr=1e-3"])
    assert cfg["train"]["steps"] == 7                      # experiment file over base
    assert cfg["optim"]["lr"] == pytest.approx(1e-3)       # override over experiment file
    assert isinstance(cfg["optim"]["lr"], float)
    assert cfg["model"]["encoder"] == "cpc_wave"           # modality file over base (null)
    assert cfg["objective"]["prediction_steps"] == 12      # objective file adds its keys
    assert cfg["objective"]["name"] == "cpc" and cfg["modality"] == "audio"


@pytest.mark.parametrize("text, key, value", [
    ("train.steps=3", "train.steps", 3), ("optim.lr=1e-3", "optim.lr", 1e-3),
    ("data.path=clips/a b", "data.path", "clips/a b"), ("train.progress=false", "train.progress", False),
    ("data.path=null", "data.path", None), ("optim.betas=[0.9, 0.95]", "optim.betas", [0.9, 0.95]),
])
def test_override_values_are_python_literals(text, key, value):
    assert parse_override(text) == (key, value)


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.stepz' \(did you mean 'train\.steps'\?\)"):
        load_config("audio", "cpc", overrides=["train.stepz=3"])


def test_unknown_key_in_experiment_file_names_file_and_closest_key(tmp_path):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml.*'optim\.lrr' \(did you mean 'optim\.lr'\?\)"):
        load_config("audio", "cpc", str(experiment))


@pytest.mark.parametrize("override", ["train.steps=abc", "train.steps=1.5", "train.progress=1", "optim.lr='x'"])
def test_wrong_type_is_an_error_naming_the_expected_type(override):
    with pytest.raises(ConfigError, match="expects"):
        load_config("audio", "cpc", overrides=[override])


def test_int_is_accepted_for_float_and_null_default_accepts_anything():
    cfg = {"a": 0.5, "b": None}
    apply(cfg, {"a": 1, "b": "x"}, "test")
    assert cfg == {"a": 1, "b": "x"}


def test_malformed_override_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.steps")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("audio", "cpc", str(bad))
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  steps: 5\noptim:\n  lr: 0.1\ntrain:\n  steps: 7\n")
    with pytest.raises(ConfigError, match="key 'train' appears twice.*line 5"):
        load_config("audio", "cpc", str(twice))


def test_modality_objective_defaults_sit_between_objective_file_and_overrides():
    assert load_config("audio", "cpc")["objective"]["prediction_steps"] == 12       # objective file
    assert load_config("medical", "cpc")["objective"]["prediction_steps"] == 3      # medical.yaml's with_objective
    assert load_config("medical", "cpc", overrides=["objective.prediction_steps=2"])["objective"]["prediction_steps"] == 2
    assert "with_objective" not in load_config("medical", "supcon")                 # consumed, not a config key
    assert load_config("medical", "cpc")["model"]["resnet18"]["embedding"] == "patches"  # any key, not only objective.*
    assert load_config("medical", "supcon")["model"]["resnet18"]["embedding"] == "image"


ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiments" / "select_on_val.yaml"


def test_shipped_experiment_file_sets_a_budget_in_passes_and_reports_on_val():
    cfg = load_config("sequence", "simclr", str(EXPERIMENT))
    assert cfg["train"]["epochs"] == 100 and cfg["train"]["steps"] is None  # the file's epochs clear base steps
    assert cfg["eval"]["split"] == "val"
    assert load_config("sequence", "simclr", str(EXPERIMENT), ["train.steps=5"])["train"]["epochs"] is None


def test_a_run_with_the_shipped_experiment_file_trains_its_passes_and_reports_on_val(tmp_path):
    run_dir = tmp_path / "run"
    # 8 classes: 2 train, 2 val, 1 test series each, so the val and test splits differ in size.
    tiny = [o for o in TINY["sequence"] if "per_class" not in o] + [
        "data.sequence_builtin.train_per_class=2", "data.sequence_builtin.val_per_class=2",
        "data.sequence_builtin.test_per_class=1"]
    done = run_cli("--modality", "sequence", "--objective", "supcon", "--config", EXPERIMENT, "--run-dir", run_dir,
                   "train.epochs=3", "train.batch_size=4", "train.progress=false", "eval.probe_epochs=5", *tiny)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["eval_split"] == "val" and results["train_items"] == 16 and results["eval_items"] == 16
    assert results["steps"] == math.ceil(3 * 16 / 4) and results["epochs"] == 3.0
    # Every protocol reported on the 16 val series, not the 8 test series: the projector holds them.
    metadata = (run_dir / f"{results['steps']:05d}" / "eval_embedding" / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == 1 + 16
