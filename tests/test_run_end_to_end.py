"""run.py as a subprocess, as a user types it: run directory, TensorBoard tags, results, errors, resume."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import objectives  # noqa: F401  (registers every objective)
from conftest import run_cli
from core import registry


def scalars(run_dir) -> dict:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_two_step_run_writes_config_events_checkpoint_and_results(tmp_path, tiny_audio):
    run_dir = tmp_path / "run"
    done = run_cli("--run-dir", run_dir, "train.steps=2", *tiny_audio)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert "steps: 2" in (run_dir / "config.yaml").read_text()

    tags = scalars(run_dir)
    for tag in ["train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/cpc/acc",
                "train/cpc/acc_step1", "train/cpc/acc_step12", "val/loss", "eval/linear_probe_acc",
                "eval/floor_linear_probe_acc"]:
        assert tag in tags, f"missing TensorBoard tag {tag}; have {sorted(tags)}"
    assert [step for step, _ in tags["train/loss"]] == [1, 2]
    # Online evaluation, on by default: the classifier every step, the representation at validation (step 2).
    for tag in ["train/online_probe_acc", "train/online_probe_loss"]:
        assert [step for step, _ in tags[tag]] == [1, 2], tag
    for tag in ["val/online_probe_acc", "val/knn_acc", "val/effective_rank", "val/output_std"]:
        assert [step for step, _ in tags[tag]] == [2], f"missing TensorBoard tag {tag}; have {sorted(tags)}"
    for tag in ["train/online_probe_acc", "val/online_probe_acc", "val/knn_acc"]:
        assert 0 <= tags[tag][-1][1] <= 1, tag
    assert tags["val/output_std"][0][1] > 0 and tags["val/effective_rank"][0][1] >= 1

    results = json.loads((run_dir / "results.json").read_text())
    assert results["modality"] == "audio" and results["objective"] == "cpc" and results["steps"] == 2
    for part in ("metrics", "floor"):  # a count of the 16 test clips (2 per class)
        acc = results[part]["linear_probe_acc"]
        assert acc * 16 == pytest.approx(round(acc * 16), abs=1e-6), part
    # samples/s of the session = all samples over all step time: the harmonic mean of the logged per-step rates.
    rates = [value for _, value in tags["train/samples_per_s"]]
    assert results["samples_per_s"] == pytest.approx(len(rates) / sum(1 / r for r in rates), rel=1e-2)
    assert results["wall_time_s"] >= results["eval_time_s"]  # the run's wall time includes its evaluation
    assert results["chance_acc"] == 1 / 8
    assert tags["eval/linear_probe_acc"] == [(2, pytest.approx(results["metrics"]["linear_probe_acc"]))]


def test_resume_continues_at_the_right_step_with_the_same_state(tmp_path, tiny_audio):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    common = ["train.steps=4", "train.checkpoint_every=1", *tiny_audio]
    assert run_cli("--run-dir", straight, *common).returncode == 0

    first = run_cli("--run-dir", stopped, "train.stop_after_steps=2", *common)
    assert first.returncode == 0 and "stopped at step 2/4" in first.stdout, first.stderr
    assert torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert not (stopped / "results.json").exists()

    second = run_cli("--resume", stopped, "train.stop_after_steps=0")
    assert second.returncode == 0, second.stderr
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    for pid, state in a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(state[key], b["optimizer"]["state"][pid][key], rtol=0, atol=0)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4

    # TensorBoard continues the same curve: every step once, the same values as the straight run.
    assert scalars(stopped)["train/loss"] == scalars(straight)["train/loss"]
    assert json.loads((stopped / "results.json").read_text())["resumed_from_step"] == 2


def test_list_prints_the_matrix_from_the_registry():
    done = run_cli("--list")
    assert done.returncode == 0
    matrix, legend = done.stdout.strip().split("\n\n")
    assert [line.split(":")[0] for line in legend.splitlines()] == list(registry.CAPABILITIES)
    header, *rows = [line.split("  ") for line in matrix.splitlines()]
    header = [cell.strip() for cell in header if cell.strip()]
    assert header == ["objective", "needs", "audio", "medical", "sequence"]
    table = {cells[0]: cells[1:] for cells in ([c.strip() for c in row if c.strip()] for row in rows)}
    assert set(table) == set(registry.names("objective"))
    assert table["cpc"] == ["sequence", "ok", "ok", "ok"]
    assert table["clap"][0] == "embedding, text"
    assert table["ts2vec"] == ["sequence, series", "ok", "lacks series", "ok"]  # medical x is an image


def assert_one_sentence_error(done, *fragments):
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_objective_and_config_typo_fail_in_one_sentence():
    assert_one_sentence_error(run_cli("--modality", "audio", "--objective", "nonexistent"),
                              "unknown objective 'nonexistent'", "cpc")
    assert_one_sentence_error(run_cli("train.stepz=3"), "'train.stepz'", "did you mean 'train.steps'")
    assert_one_sentence_error(run_cli("--modality", "audoi"), "did you mean 'audio'")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_audio):
    run_dir = tmp_path / "run"
    assert run_cli("--run-dir", run_dir, "train.steps=1", *tiny_audio).returncode == 0
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert_one_sentence_error(run_cli("--resume", run_dir), "cannot be read", "last.pt")


def test_impossible_pair_fails_before_building_and_names_the_missing_capability():
    done = run_cli("--modality", "audio", "--objective", "supcon", "views.name=null")
    assert_one_sentence_error(done, "objective 'supcon' needs views", "pairs that work: ", "audio/cpc")
