"""Deterministic, resumable batches.

The order of epoch e is a permutation seeded by (seed, e), so the batch of any
step can be found again from the step number alone: resuming at step s
continues exactly where an uninterrupted run would be. Under torchrun each rank
takes every world-th index of the same permutation (no sample twice per epoch).
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from errors import UserError


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


def train_batches(dataset, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                  num_workers: int = 0, pin_memory: bool = False):
    """Yield batches forever, starting at ``start_step``."""
    per_epoch = steps_per_epoch(len(dataset), batch_size, world_size)
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        mine = order[rank::world_size][: per_epoch * batch_size]
        indices = mine[offset * batch_size:].tolist()
        # An explicit generator keeps DataLoader from drawing its base seed from the global RNG.
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                            pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed + epoch),
                            persistent_workers=False)
        for batch in loader:
            yield batch
            step += 1


def eval_loader(dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """In-order batches of a whole split, for validation and embedding."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch to ``device``; other fields (captions) stay as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
