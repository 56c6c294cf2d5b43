"""Facts about the process group, for every layer: which rank this is, how many there are.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each process's
environment; ``training/distributed.py`` joins the processes into a
``torch.distributed`` process group. Before that group exists (while the input is
checked) only the environment says which rank a process is (``launch_rank``);
afterwards ``rank`` and ``world_size`` read the group. Without torchrun every
function here describes one process: rank 0 of 1.
"""
from __future__ import annotations

import os

import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    """This process's rank as torchrun set it in the environment (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    """True when a process group is initialized with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 when torch.distributed is not initialized."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks, 1 when torch.distributed is not initialized."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs, writes files and evaluates."""
    return rank() == 0
