"""train.steps or train.epochs, and a batch fitted to a small train split (training/budget.py, core/config.py)."""
import json
import math

import pytest
import yaml

from core import config as config_lib
from conftest import TINY, run_cli
from core.errors import UserError
from training.budget import epochs_done, fit_budget


def train_section(**keys):
    return {"steps": None, "epochs": None, "batch_size": 32, "accumulate_steps": 1, **keys}


def test_epochs_give_ceil_of_passes_over_the_global_batch():
    tc = train_section(epochs=3)
    fit_budget(tc, 100, world_size=2)  # global batch 64: 300 samples / 64 = 4.69
    assert tc["steps"] == 5 and tc["batch_size"] == 32
    tc = train_section(epochs=2.5, accumulate_steps=4, batch_size=8)
    fit_budget(tc, 1000)  # 2500 samples / 32 per step
    assert tc["steps"] == math.ceil(2500 / 32) == 79
    assert epochs_done(tc, 79, 1000) == pytest.approx(79 * 32 / 1000)


def test_a_split_smaller_than_one_batch_is_one_batch_and_says_so(capfd):
    tc = train_section(steps=10)
    fit_budget(tc, 30)
    assert tc["batch_size"] == 30 and tc["steps"] == 10
    tc = train_section(epochs=4)
    fit_budget(tc, 30, world_size=4)  # 7 per process, global 28
    assert tc["batch_size"] == 7 and tc["steps"] == math.ceil(4 * 30 / 28)
    err = capfd.readouterr().err
    assert "the train split has 30 items, fewer than one batch of 32: training on the whole split" in err
    assert "fewer than one batch of 32 x 4 processes" in err
    with pytest.raises(UserError, match="fewer than 2 per process"):
        fit_budget(train_section(steps=1), 3, world_size=2)
    with pytest.raises(UserError, match="train.steps must be a positive number"):
        fit_budget(train_section(), 100)


def test_setting_one_budget_clears_the_other_and_both_in_one_layer_is_an_error(tmp_path):
    cfg = config_lib.load_config("sequence", "supcon", overrides=["train.epochs=5"])
    assert cfg["train"]["epochs"] == 5 and cfg["train"]["steps"] is None
    cfg = config_lib.load_config("sequence", "supcon", overrides=["train.epochs=5", "train.steps=7"])
    assert cfg["train"]["epochs"] is None and cfg["train"]["steps"] == 7
    both = tmp_path / "both.yaml"
    both.write_text("train: {steps: 10, epochs: 2}\n")
    with pytest.raises(config_lib.ConfigError, match="sets both train.steps and train.epochs"):
        config_lib.load_config("sequence", "supcon", str(both))


def test_steps_by_size_picks_the_steps_of_the_train_splits_value_count(capfd):
    tc = train_section(steps_by_size=[1000, 20, 60])
    fit_budget(tc, 100, item_size=10)  # 1000 values: at most 1000
    assert tc["steps"] == 20
    tc = train_section(steps_by_size=[1000, 20, 60])
    fit_budget(tc, 100, item_size=11)  # 1100 values
    assert tc["steps"] == 60
    err = capfd.readouterr().err
    assert "the train split holds 1000 values (100 items x 10), at most 1000: 20 steps" in err
    assert "holds 1100 values (100 items x 11), more than 1000: 60 steps" in err
    for bad in ([1000, 20], [1000, 0, 60], [1000, 2.5, 60]):
        with pytest.raises(UserError, match="train.steps_by_size must be three positive integers"):
            fit_budget(train_section(steps_by_size=bad), 100)


def test_steps_epochs_and_steps_by_size_clear_each_other():
    ts2vec = config_lib.load_config("sequence", "ts2vec")  # with_objective.ts2vec sets the rule
    assert ts2vec["train"]["steps_by_size"] == [100000, 200, 600] and ts2vec["train"]["steps"] is None
    cfg = config_lib.load_config("sequence", "ts2vec", overrides=["train.steps=5"])
    assert cfg["train"]["steps"] == 5 and cfg["train"]["steps_by_size"] is None
    cfg = config_lib.load_config("sequence", "ts2vec", overrides=["train.epochs=2"])
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["steps_by_size"] is None and cfg["train"]["steps"] is None
    cfg = config_lib.load_config("sequence", "simclr", overrides=["train.steps_by_size=[10,1,2]"])
    assert cfg["train"]["steps_by_size"] == [10, 1, 2] and cfg["train"]["steps"] is None
    with pytest.raises(config_lib.ConfigError, match="sets both train.steps and train.steps_by_size"):
        config_lib.apply_layer(cfg, {"train": {"steps": 3, "steps_by_size": [10, 1, 2]}}, "layer")


def test_epochs_run_records_steps_and_epochs_and_resumes_longer_in_steps(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", "simclr", "--run-dir", run_dir, *TINY["sequence"],
                   "train.epochs=3", "train.batch_size=4", "train.val_every=0", "train.progress=true",
                   "eval.probe_epochs=5")
    assert done.returncode == 0, done.stderr[-2000:]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    results = json.loads((run_dir / "results.json").read_text())
    assert saved["epochs"] == 3 and saved["steps"] == results["steps"] == math.ceil(3 * 16 / 4) == 12
    assert results["epochs"] == 3.0 and results["train_items"] == 16
    assert "step 12/12 (epoch 3.0/3.0)" in done.stderr
    done = run_cli("--resume", run_dir, "train.steps=14", "train.progress=false")
    assert done.returncode == 0, done.stderr[-2000:]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    assert saved["steps"] == 14 and saved["epochs"] is None
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == 3.5


def test_compare_accepts_a_cell_whose_budget_was_fitted_to_its_data(tmp_path):
    from comparison.command import Cell, check_not_stale

    cell = Cell("sequence", "simclr", 0, tmp_path, [])
    wanted = config_lib.load_config("sequence", "simclr", overrides=["train.epochs=3"])
    saved = config_lib.load_config("sequence", "simclr", overrides=["train.epochs=3"])
    saved["train"].update(steps=12, batch_size=16)  # what fit_budget wrote for a 16-item split
    (tmp_path / "config.yaml").write_text(config_lib.dump(saved))
    check_not_stale(cell, wanted)
    saved["train"]["batch_size"] = 64  # never grown: another setting
    (tmp_path / "config.yaml").write_text(config_lib.dump(saved))
    with pytest.raises(UserError, match="train.batch_size: 64 there, 32 now"):
        check_not_stale(cell, wanted)
    wanted = config_lib.load_config("sequence", "ts2vec")  # steps from train.steps_by_size
    saved = config_lib.load_config("sequence", "ts2vec")
    saved["train"]["steps"] = 200
    (tmp_path / "config.yaml").write_text(config_lib.dump(saved))
    check_not_stale(Cell("sequence", "ts2vec", 0, tmp_path, []), wanted)
    saved["train"]["steps_by_size"] = [100000, 300, 600]
    (tmp_path / "config.yaml").write_text(config_lib.dump(saved))
    with pytest.raises(UserError, match="train.steps"):
        check_not_stale(Cell("sequence", "ts2vec", 0, tmp_path, []), wanted)
