"""Deterministic, resumable batches.

The order of epoch e is a permutation seeded by (seed, e), so the batch of any
step can be found again from the step number alone: resuming at step s
continues exactly where an uninterrupted run would be. Under torchrun the
global batch of a step is the next ``batch_size * world_size`` indices of the
same permutation and rank r takes its r-th block of ``batch_size``: the ranks'
batches, concatenated in rank order (as the losses gather them), are exactly
the batch one process with ``batch_size * world_size`` would draw.
"""
from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader

from core.errors import UserError


def steps_per_epoch(n_items: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches per rank per epoch (the last partial batch is dropped).

    Raises:
        UserError: the split is smaller than one global batch.
    """
    steps = n_items // (batch_size * world_size)
    if steps == 0:
        raise UserError(f"the train split has {n_items} items, fewer than one batch of "
                         f"{batch_size} x {world_size} processes; lower train.batch_size")
    return steps


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGINT and SIGTERM.

    Ctrl-C reaches the terminal's whole process group, and batch schedulers
    signal every process of a job; a worker killed by it would make the main
    process's next fetch fail before it finishes its step and checkpoints
    (training/signals.py). Workers still exit with the main process: PyTorch's
    workers watch their parent.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def train_batches(dataset, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                  num_workers: int = 0, pin_memory: bool = False):
    """Yield batches forever, starting at ``start_step``."""
    per_epoch = steps_per_epoch(len(dataset), batch_size, world_size)
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        mine = order[: per_epoch * batch_size * world_size].view(per_epoch, world_size, batch_size)[:, rank]
        indices = mine[offset:].reshape(-1).tolist()
        # An explicit generator keeps DataLoader from drawing its base seed from the global RNG;
        # per rank, so worker-side randomness differs across ranks.
        generator = torch.Generator().manual_seed(seed + epoch + 1_000_003 * rank)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                            pin_memory=pin_memory, generator=generator, persistent_workers=False,
                            worker_init_fn=leave_stop_signals_to_the_main_process if num_workers else None)
        for batch in loader:
            yield batch
            step += 1


def eval_loader(dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """In-order batches of a whole split, for validation and embedding."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def eval_batches(n_items: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """In-order index batches of a split, each global batch of ``batch_size * world_size``
    split into equal per-rank blocks (as ``train_batches``); one process gets
    [0, B), [B, 2B), ... and a last partial batch. A partial global batch of m
    rows gives each rank m // world_size rows (all_gather needs equal shapes),
    so at most world_size - 1 items of a split are left out, never one repeated.
    """
    batches, glob = [], batch_size * world_size
    for start in range(0, n_items, glob):
        per_rank = min(glob, n_items - start) // world_size
        if per_rank:
            batches.append(list(range(start + rank * per_rank, start + (rank + 1) * per_rank)))
    return batches


def val_loader(dataset, batch_size: int, rank: int = 0, world_size: int = 1, num_workers: int = 0) -> DataLoader:
    """This rank's in-order validation batches (see ``eval_batches``)."""
    return DataLoader(dataset, batch_sampler=eval_batches(len(dataset), batch_size, rank, world_size),
                      num_workers=num_workers)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch to ``device``; other fields (captions) stay as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
