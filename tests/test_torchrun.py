"""torchrun with 2 gloo processes against one process with the same global batch.

``torchrun --nproc_per_node=2 run.py ... train.batch_size=B`` must train
exactly as ``run.py ... train.batch_size=2B``: same data (rank r takes the
r-th block of each global batch), same loss (the losses gather features
across ranks) and same gradient (averaged over ranks). The comparison is on
CLAP, which has no random views: views are seeded per (seed, rank, step) so
that ranks augment differently, which means a 2-process run and a 1-process
run see different views of the same samples. The sequence TCN has no
BatchNorm, whose batch statistics would also differ between B and 2B rows.
"""
from __future__ import annotations

import os
import subprocess
import sys

import torch
from conftest import ROOT, TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from training.data import eval_batches, train_batches

ARGS = ["--modality", "sequence", "--objective", "clap", *TINY["sequence"], "train.steps=2", "train.val_every=2",
        "train.val_batches=1", "train.progress=false", "eval.probe_epochs=5", "seed=3"]
B = 4  # per process; the one-process run uses 2B


def run(command: list[str], run_dir, batch_size: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run([sys.executable, *command, "--run-dir", str(run_dir), *ARGS,
                           f"train.batch_size={batch_size}"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    # The ranks' own messages come before torchrun's traceback and summary (about 2.5 kB); a rank
    # killed by a signal (an abort in C++) prints no Python traceback of its own.
    assert done.returncode == 0, done.stderr[-8000:]
    return done


def scalars(run_dir) -> dict:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(["run.py"], one, 2 * B)
    done = run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "run.py"], two, B)
    a, b = scalars(one), scalars(two)
    # The online classifier: gradients averaged over ranks (step 2's loss is after one update), and
    # rank 0 alone scores the same fixed val items and train bank at validation.
    for tag, step in [("train/loss", 1), ("train/grad_norm", 1), ("train/loss", 2), ("val/loss", 2),
                      ("train/online_probe_loss", 1), ("train/online_probe_loss", 2), ("val/online_probe_acc", 2),
                      ("val/knn_acc", 2), ("val/effective_rank", 2), ("val/output_std", 2)]:
        assert abs(a[tag][step] - b[tag][step]) < 1e-5 * max(1.0, abs(a[tag][step])), (tag, step, a[tag], b[tag])
    # Rank 0 alone wrote the run directory and printed the result line.
    assert len(list(two.glob("events.out.tfevents.*"))) == 1
    assert [p.name for p in (two / "checkpoints").iterdir()] == ["last.pt"]
    assert done.stdout.count("linear probe") == 1
    assert (two / "results.json").is_file()


class Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 23

    def __getitem__(self, i):
        return {"x": torch.tensor(i)}


def test_rank_blocks_make_the_one_process_batch_across_epochs():
    # 23 items, global batch 6: 3 steps per epoch; steps 2..7 cross two epoch boundaries.
    one = train_batches(Indices(), 6, seed=5, start_step=2)
    ranks = [train_batches(Indices(), 3, seed=5, start_step=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(6):
        together = torch.cat([next(r)["x"] for r in ranks])
        assert torch.equal(together, next(one)["x"])


def test_eval_batches_cover_a_split_once_in_equal_blocks():
    for n, batch, world in [(23, 4, 2), (10, 3, 3), (5, 8, 2)]:
        per_rank = [eval_batches(n, batch, r, world) for r in range(world)]
        seen = [i for rank in per_rank for b in rank for i in b]
        assert len(seen) == len(set(seen))  # nothing twice
        assert n - len(seen) < world  # at most world - 1 items of a partial global batch left out
        for step in zip(*per_rank, strict=True):  # every rank the same number of batches, equal sizes
            assert len({len(b) for b in step}) == 1
    assert eval_batches(10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_config_error_under_torchrun_is_printed_once(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "run.py", "--run-dir", str(tmp_path / "typo"), *ARGS, "train.batch_sise=4"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert done.stderr.count("train.batch_size") == 1, done.stderr  # the suggestion, from rank 0 only
    assert done.stderr.count("error: ") == 1, done.stderr
