"""Multi-process training under torchrun: process group, rank 0 duties, gradient averaging.

``torchrun --nproc_per_node=N run.py ...`` starts N copies of run.py with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. ``setup``
joins them into one process group (gloo on CPU, NCCL on CUDA with the GPU
``LOCAL_RANK``); without those variables (or with WORLD_SIZE=1) nothing is
initialized and every helper here is a no-op, so one process runs unchanged.

Gradients are averaged by hand instead of wrapping the model in
``DistributedDataParallel``: after ``backward`` every gradient is flattened
into one bucket per dtype, summed with one ``all_reduce`` and divided by the
world size. That is DDP's arithmetic (mean of per-rank gradients; the in-batch
losses gather features with gradient, so this mean equals the one-process
gradient of the global batch, see objectives/distributed.py) without DDP's
forward hooks, which do not fit objectives that call an encoder several times
per step (two views), keep a frozen momentum copy (MoCo) or call encoders
through ``model["encoders"]`` rather than through the wrapper's forward. The
cost is no overlap of communication with backward, negligible at this
codebase's model sizes.

Every rank must reach each collective in the same order: all ranks run the
same steps, and a parameter has a gradient on one rank exactly when it has
one on every rank (same code path, same objective). BatchNorm running
statistics are not synchronized (DDP broadcasts rank 0's each step); rank 0's
are the ones checkpointed and evaluated.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from core.process_group import is_distributed, launched_by_torchrun, world_size


def setup(device: torch.device) -> torch.device:
    """Join the torchrun process group when there is one; returns this process's device.

    gloo on CPU, NCCL on CUDA; on CUDA each process uses GPU ``LOCAL_RANK``
    (``device`` cuda -> cuda:LOCAL_RANK). The timeout is long (2 h) because
    ranks other than 0 may wait while rank 0 evaluates or writes a checkpoint.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))
    return device


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_other_rank() -> None:
    """End a rank other than 0 once its work is done: flush stdout/stderr, then ``os._exit(0)``,
    without Python's interpreter finalization.

    Why: a gloo worker thread may still be destroying the last collective's work
    object, which drops a reference to a Python-owned tensor; while the
    interpreter finalizes, that thread cannot take the GIL and the process
    aborts ("terminate called without an active exception", SIGABRT; core dump
    stack: ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork -> decref_pyobject ->
    take_gil -> pthread_exit), now and then (benchmarks/RESULTS.md, "Figures
    moved out of code comments"). These ranks have nothing left to write
    (rank 0 writes the run directory).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (any picklable value); ``obj`` itself on one process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (inits are seeded alike; this makes sure)."""
    if is_distributed():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor, in place, by its mean over ranks: one ``all_reduce`` per dtype.

    Used on the gradients after backward (DDP's averaging) with the step's
    logged scalars appended, so rank 0 logs the global-batch loss.
    """
    if not is_distributed() or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def average_step(params: list[torch.Tensor], out: dict) -> dict:
    """DDP's reduction for one step: gradients of ``params`` and the scalars of ``out``
    (the objective's loss and logs) replaced by their means over ranks, in one
    ``all_reduce``. Returns ``out`` itself on one process; under torchrun a dict
    of the same keys holding detached float32 means (for logging only: backward
    has run by then)."""
    if not is_distributed():
        return out
    device = out["loss"].device
    keys = list(out)
    scalars = torch.stack([torch.as_tensor(out[k], device=device).detach().float().reshape(()) for k in keys])
    all_reduce_mean([p.grad for p in params if p.grad is not None] + [scalars])
    return dict(zip(keys, scalars))
