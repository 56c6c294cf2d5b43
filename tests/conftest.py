"""Shared test settings: the repository on sys.path and tiny run overrides."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A run small enough for a test: 8 tiny clips per class, a 16-channel encoder.
TINY_AUDIO = [
    "data.audio_builtin.clip_samples=3200", "data.audio_builtin.train_per_class=4",
    "data.audio_builtin.val_per_class=2", "data.audio_builtin.test_per_class=2",
    "model.cpc_wave.width=16", "model.cpc_wave.context_dim=16", "objective.n_negatives=8",
    "train.batch_size=8", "train.val_every=2", "train.val_batches=1", "train.progress=false",
    "eval.probe_epochs=5", "optim.warmup_steps=1",
]


# Tiny overrides per modality, for tests that build every registered pair.
TINY = {
    "audio": [o for o in TINY_AUDIO if o.split("=")[0].split(".")[0] in ("data", "model")],
    "sequence": [
        "data.sequence_builtin.length=32", "data.sequence_builtin.train_per_class=2",
        "data.sequence_builtin.val_per_class=1", "data.sequence_builtin.test_per_class=1",
        "model.tcn.width=8", "model.tcn.depth=2",
        "model.ts2vec.hidden=8", "model.ts2vec.out_dim=8", "model.ts2vec.depth=2",  # ts2vec's default encoder
    ],
    "medical": [
        "data.medical_builtin.train_per_class=2", "data.medical_builtin.val_per_class=1",
        "data.medical_builtin.test_per_class=1", "model.resnet18.width=4",
    ],
}


def run_cli(*args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in a subprocess, as a user would type it."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# run.py's arguments for clap_run: audio CLAP on the built-in clips, small enough for a test.
TINY_CLAP = ["--modality", "audio", "--objective", "clap", "train.steps=3", "train.batch_size=8",
             "train.progress=false", "eval.probe_epochs=5", "objective.proj_dim=16",
             "model.text.text_transformer.width=16", "model.text.text_transformer.layers=1", *TINY["audio"]]


@pytest.fixture
def tiny_audio():
    return list(TINY_AUDIO)


@pytest.fixture(scope="session")
def clap_run(tmp_path_factory) -> Path:
    """The run directory of ``run.py TINY_CLAP``, trained once per session (3200-sample clips; train 4
    per class, val 2, test 2) and shared by test_model_card.py and test_inference_commands.py: a test
    that changes a run directory copies this one first.

    Raises:
        AssertionError: the run exits non-zero (the end of its stderr in the message).
    """
    run_dir = tmp_path_factory.mktemp("clap") / "run"
    done = run_cli(*TINY_CLAP, "--run-dir", run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


@contextlib.contextmanager
def gloo_group(rank: int, world: int, out_dir: str):
    """This process as rank ``rank`` of a ``world``-process gloo group, for a worker started by
    ``spawn_ranks``: a file rendezvous in ``out_dir`` (no port to race for), gloo pinned to
    loopback, one thread; the group is destroyed on exit."""
    import torch
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}",
                            rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def spawn_ranks(worker, world: int, out_dir: str) -> list:
    """Run ``worker(rank, out_dir)`` in ``world`` processes, each of which saves
    ``out_dir/rank{rank}.pt``; returns what they saved, in rank order."""
    import torch
    import torch.multiprocessing as mp

    files = [os.path.join(out_dir, f"rank{r}.pt") for r in range(world)]
    try:
        mp.spawn(worker, args=(out_dir,), nprocs=world, join=True)
    except mp.ProcessExitedException:
        # gloo now and then aborts a process while its threads shut down ("terminate called without
        # an active exception"), after the worker saved its result; a rank that did not save still fails.
        if not all(os.path.exists(f) for f in files):
            raise
    return [torch.load(f) for f in files]
