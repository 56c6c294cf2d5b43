"""Config layers, overrides and their errors."""
import pytest

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


def test_modality_objective_defaults_sit_between_objective_file_and_overrides():
    assert load_config("audio", "cpc")["objective"]["prediction_steps"] == 12       # objective file
    assert load_config("medical", "cpc")["objective"]["prediction_steps"] == 3      # medical.yaml's with_objective
    assert load_config("medical", "cpc", overrides=["objective.prediction_steps=2"])["objective"]["prediction_steps"] == 2
    assert "with_objective" not in load_config("medical", "supcon")                 # consumed, not a config key
    assert load_config("medical", "cpc")["model"]["resnet18"]["embedding"] == "patches"  # any key, not only objective.*
    assert load_config("medical", "supcon")["model"]["resnet18"]["embedding"] == "image"
