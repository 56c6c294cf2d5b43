"""The base of every error that is the user's to fix (a bad name, key, file or pair), and how
the entry points report one: ``error: <one sentence>`` on stderr, exit status 2. Anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

from core.process_group import launch_rank

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error in the user's input, reported without a traceback."""


def report(err: UserError, every_rank: bool = False) -> int:
    """Print ``error: err`` on stderr; returns the exit status (2).

    Under torchrun an input error is the same on every rank, so only rank 0 prints it, unless
    ``every_rank`` (an error that came up while training, which may be one rank's own: it is
    printed as ``error (rank r): ...``).
    """
    rank = launch_rank()
    if every_rank or rank == 0:
        print(f"error{'' if rank == 0 else f' (rank {rank})'}: {err}", file=sys.stderr)
    return EXIT_USER_ERROR
