"""One-line notes on stderr: what a run assumed about the user's data or settings."""
from __future__ import annotations

import sys

from core.process_group import launch_rank

_said: set[str] = set()


def say_once(message: str) -> None:
    """Print ``note: message`` on stderr once per process (rank 0 only under torchrun).

    The three splits of a dataset are built one after another from the same
    rows, so an assumption they share would otherwise be printed three times.
    """
    if message in _said or launch_rank() != 0:
        return
    _said.add(message)
    print(f"note: {message}", file=sys.stderr, flush=True)
