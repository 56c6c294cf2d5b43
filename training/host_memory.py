"""Keep freed host memory in the process for reuse instead of handing it back to the OS (glibc malloc).

glibc gives freed memory back to the OS: chunks above its mmap threshold
(adaptive, at most 32 MiB on 64-bit) are unmapped on free, and free space at
the top of the heap beyond the trim threshold is trimmed. A CPU training
step's activations (audio CPC at batch 32: 26 MB per layer output for the
first convolution, its norm and its ReLU, and so on down the encoder) are
then mapped, page-faulted and zeroed by the kernel again on every step.
Raising the mmap and trim
thresholds to 1 GiB keeps that memory in the heap, where the next step reuses
it: what PyTorch's CUDA caching allocator does for GPU memory, and what the
environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
do when set before the process starts.

The cost is memory: the process keeps its peak heap. Faults, system time, wall
time and peak memory with and without it: benchmarks/RESULTS.md ("Cause found:
page faults").
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
