"""``train.average_weights`` (training/weight_average.py): the encoders evaluated and saved are the
uniform average of their weights over the init and every step (TS2Vec's reference evaluates that).

Real runs in this process (medical BYOL: a ResNet with BatchNorm, so running statistics are averaged
too). The trajectory w_0 .. w_K comes from a run *without* averaging, stepped one step a session and
resumed (exact on CPU), w_0 from the model as it is built; the expected average is their float64
mean in NumPy.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import config as config_lib
from evaluation.command import evaluate_dir
from experiment import run_experiment
from training import checkpoint
from training.build import build_training

STEPS = 4


def config(*extra):
    return config_lib.load_config("medical", "byol", overrides=[
        *TINY["medical"], "train.batch_size=4", f"train.steps={STEPS}", "train.checkpoint_every=1",
        "train.val_every=0", "train.progress=false", "train.online_eval=false", "eval.probe_epochs=5",
        "objective.hidden_dim=16", "objective.proj_dim=8", "optim.warmup_steps=1", *extra])


def encoders_of(state: dict) -> dict:
    return {k[len("encoders."):]: v for k, v in state["model"].items() if k.startswith("encoders.")}


def test_the_average_is_the_mean_of_the_init_and_every_step_and_resumes_exactly(tmp_path):
    w0 = {k: v.clone() for k, v in build_training(config(), torch.device("cpu")).model["encoders"].state_dict().items()}
    plain = tmp_path / "plain"
    trajectory = [w0]
    for k in range(1, STEPS + 1):  # one step a session: w_k from the checkpoint of step k
        run_experiment(config("train.stop_after_steps=1"), plain, resume=k > 1)
        state = checkpoint.load(plain / "checkpoints" / "last.pt")
        assert state["step"] == k and "weight_average" not in state
        trajectory.append(encoders_of(state))

    averaged = tmp_path / "averaged"
    results = run_experiment(config("train.average_weights=true"), averaged)
    final = checkpoint.load(averaged / "checkpoints" / "last.pt")
    got = encoders_of(final)
    assert set(got) == set(w0)
    floating = [k for k, v in w0.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floating) and any(k.endswith("weight") for k in floating)
    for key in floating:
        expected = np.mean([w[key].double().numpy() for w in trajectory], axis=0)
        np.testing.assert_allclose(got[key].double().numpy(), expected, rtol=0, atol=1e-6, err_msg=key)
    for key in set(w0) - set(floating):  # BatchNorm's batch counts: the trained encoder's own
        assert torch.equal(got[key], trajectory[-1][key]), key
    assert not torch.allclose(got[floating[0]], trajectory[-1][floating[0]])  # not simply the last weights
    assert int(final["weight_average"]["n_averaged"]) == STEPS + 1

    # What the run evaluated is what it saved: evaluating the checkpoint again gives the same numbers.
    again = evaluate_dir(averaged)
    assert again["metrics"]["linear_probe_acc"] == results["metrics"]["linear_probe_acc"]
    assert again["metrics"]["effective_rank"] == pytest.approx(results["metrics"]["effective_rank"], abs=1e-9)

    # Interrupted after 2 steps and resumed: the same final encoders, bit for bit.
    resumed = tmp_path / "resumed"
    assert run_experiment(config("train.average_weights=true", "train.stop_after_steps=2"), resumed) == \
        {"stopped_at_step": 2, "steps": STEPS}
    run_experiment(config("train.average_weights=true"), resumed, resume=True)
    again = encoders_of(checkpoint.load(resumed / "checkpoints" / "last.pt"))
    assert all(torch.equal(again[k], got[k]) for k in got)


def test_resuming_a_run_trained_without_the_average_is_refused_with_the_way_out(tmp_path):
    run_experiment(config("train.stop_after_steps=1"), tmp_path / "run")
    with pytest.raises(checkpoint.CheckpointError, match="holds no weight average .* train.average_weights=false"):
        run_experiment(config("train.average_weights=true"), tmp_path / "run", resume=True)
