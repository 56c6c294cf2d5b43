"""Runs stopped from outside and resumed end where an uninterrupted run ends, bit for bit.

Real run.py subprocesses on CPU (one thread, train.deterministic=true): run A
goes straight to the end; run B is SIGKILLed once its checkpoint passes step
KILL_AFTER, then resumed; run C gets SIGTERM, finishes its step, checkpoints
and exits 143, then is resumed. Final parameters, optimizer state and the
TensorBoard loss curve must equal A's exactly, and so must the online classifier
(train.online_eval, on by default): its weights, its AdamW moments, its running standardization,
the rows it keeps for replay and its logged curves.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY_AUDIO, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

STEPS, KILL_AFTER = 40, 4
COMMON = [f"train.steps={STEPS}", "train.checkpoint_every=1", "train.deterministic=true", *TINY_AUDIO,
          "train.val_every=0"]


def start(run_dir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--run-dir", str(run_dir), *COMMON], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_step(run_dir) -> int:
    """The step of checkpoints/last.pt, 0 while there is none (it is replaced atomically, never half-written)."""
    try:
        return int(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"])
    except FileNotFoundError:
        return 0


def wait_for_step(proc, run_dir, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_step(run_dir) < step:
        assert proc.poll() is None, f"the run ended before step {step}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)


def losses(run_dir, tag: str = "train/loss") -> list:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def assert_same_final_state(a_dir, b_dir) -> None:
    a = torch.load(a_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(b_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == STEPS
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0, msg=key)
    for pid, state in a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(state[key], b["optimizer"]["state"][pid][key], rtol=0, atol=0)
    assert losses(a_dir) == losses(b_dir)
    probe_a, probe_b = a["online_probe"], b["online_probe"]
    for key, value in probe_a["linear"].items():
        assert value.abs().sum() > 0, key  # trained: it started at zero
        torch.testing.assert_close(value, probe_b["linear"][key], rtol=0, atol=0, msg=key)
    assert probe_a["optimizer"]["state"].keys() == probe_b["optimizer"]["state"].keys() == {0, 1}
    for pid, state in probe_a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(state[key], probe_b["optimizer"]["state"][pid][key], rtol=0, atol=0)
    for part in ("standardize", "recent"):  # running statistics and the rows kept for replay
        assert probe_a[part].keys() == probe_b[part].keys()
        for key, value in probe_a[part].items():
            torch.testing.assert_close(value, probe_b[part][key], rtol=0, atol=0, msg=f"{part}.{key}")
    assert len(probe_a["recent"]["sizes"]) > 1  # replay is on by default: rows of several steps are kept
    for tag in ("train/online_probe_loss", "train/online_probe_acc"):
        assert len(losses(a_dir, tag)) == STEPS and losses(a_dir, tag) == losses(b_dir, tag), tag


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Run A, uninterrupted; started at once so that it runs while B or C is being stopped."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    proc = start(run_dir)

    def finished():
        if proc.returncode is None:
            proc.communicate(timeout=300)
        assert proc.returncode == 0, f"the uninterrupted run failed (status {proc.returncode})"
        return run_dir

    yield finished
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigkill_mid_training_then_resume_ends_with_the_uninterrupted_parameters(tmp_path, straight):
    run_dir = tmp_path / "killed"
    proc = start(run_dir)
    wait_for_step(proc, run_dir, KILL_AFTER)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(run_dir)
    assert KILL_AFTER <= killed_at < STEPS, "the kill should land mid-training"
    assert not (run_dir / "results.json").exists()

    resumed = run_cli("--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_final_state(straight(), run_dir)


def test_sigterm_checkpoints_the_finished_step_exits_143_and_resumes_to_the_same_end(tmp_path, straight):
    run_dir = tmp_path / "terminated"
    proc = start(run_dir)
    wait_for_step(proc, run_dir, KILL_AFTER)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    stopped = checkpoint_step(run_dir)
    assert KILL_AFTER <= stopped < STEPS
    assert f"stopped by SIGTERM after step {stopped}/{STEPS}" in err
    assert f"python run.py --resume {run_dir}" in err
    # The checkpoint is the last finished step: TensorBoard (closed on exit) logged exactly up to it.
    assert [s for s, _ in losses(run_dir)] == list(range(1, stopped + 1))
    assert not (run_dir / "results.json").exists()

    resumed = run_cli("--resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_final_state(straight(), run_dir)

