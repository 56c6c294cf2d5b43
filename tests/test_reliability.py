"""Non-finite steps (training/nonfinite.py), damaged checkpoints (training/checkpoint.py) and
loader workers under stop signals (training/data.py).

The non-finite run is a real training run in this process with a real
registered objective whose loss is NaN on chosen steps (as a diverging run's
would be); it records the encoder's parameters at every step, so the test can
see that a skipped step changed nothing. TensorBoard is read back from the
real event file.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import torch
from conftest import TINY_AUDIO, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import registry
from objectives.parts import encode_batch
from training import checkpoint
from training.data import train_batches
from training.nonfinite import NonFiniteError

NAN_STEPS = {3, 6, 7, 8, 10}  # step 3 alone, then three in a row: the run stops at step 8; after
# resuming from step 5, the 10th call is step 7
SEEN: list[dict] = []  # the encoder's parameters at the start of each training step


class NaNOnChosenSteps(nn.Module):
    """Mean squared embedding, multiplied by NaN on the training steps in NAN_STEPS."""

    def __init__(self, encoders: dict):
        super().__init__()

    def forward(self, encoders: dict, batch: dict) -> dict:
        SEEN.append({k: v.detach().clone() for k, v in encoders["x"].state_dict().items()})
        loss = encode_batch(encoders["x"], batch)["embedding"].pow(2).mean()
        return {"loss": loss * float("nan") if len(SEEN) in NAN_STEPS else loss}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def nan_objective():
    """NaNOnChosenSteps registered for one test (other tests list every registered objective)."""
    registry.register("objective", "nan_on_chosen_steps", needs=("embedding",))(NaNOnChosenSteps)
    SEEN.clear()
    yield "nan_on_chosen_steps"
    del registry._ENTRIES["objective"]["nan_on_chosen_steps"]  # the registry has no public unregister


def test_nonfinite_steps_are_skipped_counted_and_stop_the_run(tmp_path, nan_objective):
    from experiment import run_experiment

    cfg = config_lib.load_config("audio", nan_objective, overrides=[
        *(o for o in TINY_AUDIO if not o.startswith("objective.")), "train.steps=12", "train.checkpoint_every=1", "train.val_every=0", "train.max_nonfinite_in_row=3"])
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="non-finite .* for 3 steps in a row, up to step 8") as err:
        run_experiment(cfg, run_dir)
    assert "optim.lr" in str(err.value)
    assert len(SEEN) == 8
    # SEEN[i] holds the parameters before step i + 1: step 3 changed nothing, steps 2 and 4 did.
    assert same(SEEN[2], SEEN[3]) and not same(SEEN[1], SEEN[2]) and not same(SEEN[3], SEEN[4])
    assert same(SEEN[5], SEEN[6]) and same(SEEN[6], SEEN[7])
    # The checkpoint is the last good step's, with the parameters the NaN steps left untouched.
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 5
    saved = {k[len("encoders.x."):]: v for k, v in state["model"].items() if k.startswith("encoders.x.")}
    assert same(SEEN[7], saved)

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    counted = [(e.step, e.value) for e in acc.Scalars("train/nonfinite_steps")]
    assert counted == [(3, 1.0), (6, 2.0), (7, 3.0), (8, 4.0)]
    assert state["counters"] == {"nonfinite_steps": 1}  # as of step 5

    # Resumed from step 5: the count goes on from the checkpoint's 1 (steps 6-8 of the stopped session
    # are purged from the event file), and step 7 is the 2nd non-finite step of the run.
    # TensorBoard reads a run's event files in name order, and a name is time (whole seconds), host, pid and a
    # per-process writer count: a second later, the resumed session's file sorts after the first one's even
    # when this process has opened ten or more writers ("...10" < "...9" within one second).
    time.sleep(1.1)
    run_experiment(cfg, run_dir, resume=True)
    assert len(SEEN) == 8 + 7
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/nonfinite_steps")] == [(3, 1.0), (7, 2.0)]
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["counters"] == {"nonfinite_steps": 2}


def test_damaged_last_checkpoint_names_the_file_and_the_intact_previous_one(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--run-dir", run_dir, "train.steps=3", "train.checkpoint_every=1", "train.stop_after_steps=2",
                   *TINY_AUDIO)
    assert done.returncode == 0, done.stderr
    last, previous = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "previous.pt"
    assert torch.load(last, weights_only=True)["step"] == 2
    assert torch.load(previous, weights_only=True)["step"] == 1

    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or an interrupted copy
    failed = run_cli("--resume", run_dir)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    message = failed.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("error: ")
    assert f"'{last}' cannot be read" in message and f"'{previous}' (step 1) is intact" in message
    assert f"cp {previous} {last}" in message
    assert checkpoint.load(previous)["step"] == 1


def test_flipped_byte_inside_tensor_data_is_caught_by_the_checksum(tmp_path):
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = tmp_path / "last.pt"
    checkpoint.save(path, 1, model, optimizer, scheduler)
    assert checkpoint.load(path)["step"] == 1
    data = bytearray(path.read_bytes())
    at = bytes(data).find(model.weight.detach().numpy().tobytes())
    assert at > 0
    data[at] ^= 0x01  # torch.load alone reads this file without complaint
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)
    with pytest.raises(checkpoint.CheckpointError, match="checksum does not match"):
        checkpoint.load(path)


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i)])}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_loader_workers_leave_stop_signals_to_the_main_process(signum):
    """Ctrl-C reaches the terminal's whole process group and batch schedulers SIGTERM every process of
    a job: a DataLoader worker that died of it would make the main process's next fetch fail before it
    could finish its step and checkpoint (training/signals.py). The workers must keep serving."""
    others = {p.pid for p in multiprocessing.active_children()}  # e.g. workers of an earlier test's loader
    batches = train_batches(Numbers(), 4, seed=0, num_workers=2)
    seen = [next(batches)["x"], next(batches)["x"]]  # one batch from each worker: both are set up
    workers = [p for p in multiprocessing.active_children() if p.pid not in others]
    assert len(workers) == 2
    for worker in workers:
        os.kill(worker.pid, signum)
    time.sleep(0.5)
    # The rest of the epoch (16 batches; at most 4 were prefetched before the signal) from the same workers.
    seen += [next(batches)["x"] for _ in range(14)]
    assert sorted(torch.cat(seen).flatten().tolist()) == [float(i) for i in range(64)]
    assert all(w.is_alive() for w in workers)
    batches.close()
