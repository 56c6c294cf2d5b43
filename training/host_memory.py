"""Keep freed host memory in the process for reuse instead of handing it back to the OS (glibc malloc).

glibc serves every allocation above its mmap threshold (adaptive, at most
32 MiB on 64-bit) with a fresh ``mmap`` and gives it back with ``munmap`` on
free. A CPU training step's large activations (audio CPC's first convolution,
batch 32: 32 x 512 x 3200 float32 = 210 MB) are then mapped, page-faulted and
zeroed by the kernel again on every step. Raising the mmap and trim
thresholds to 1 GiB keeps them in the heap, where the next step reuses them:
what PyTorch's CUDA caching allocator does for GPU memory, and what the
environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
do when set before the process starts.

Measured on the 2-core CPU machine, ``python run.py`` (audio CPC, 300 steps):
23.6 M minor page faults and 50 s of system time in 105 s without it; 0.45 M
faults, 2 s and 72 s with it; peak resident memory 1.28 -> 1.49 GB (the
process keeps its peak heap). Numbers for other pairs in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30  # allocations above 1 GiB still get their own mapping, returned on free


def glibc():
    """The C library when it is glibc (it has ``gnu_get_libc_version``), else None (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_host_memory(enabled: bool) -> bool:
    """``train.keep_host_memory``: raise glibc's mmap and trim thresholds to ``KEEP_BYTES``.

    Process-wide and not undone by a later call with False. Returns whether the
    setting is now in effect from this call (False when disabled or not glibc).
    """
    libc = glibc() if enabled else None
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
