"""SIGTERM and SIGINT stop a run cleanly: the current step finishes, a checkpoint is written, then exit.

Batch schedulers send SIGTERM before killing a job; Ctrl-C sends SIGINT. While
``train`` runs, both only raise a flag; the loop checks it after each step and
calls ``exit``: checkpoint of that finished step, TensorBoard flushed and closed,
one line on stderr naming the step and the command that continues the run,
and exit status 128 + signal number (143 for SIGTERM, 130 for SIGINT), the
shell's convention for "ended by this signal". A second signal before the step
ends is not caught: the process stops at once (SIGINT raises KeyboardInterrupt),
``checkpoints/last.pt`` stays the previous complete one. DataLoader workers
ignore both signals (``training.data.leave_stop_signals_to_the_main_process``).

Under torchrun every rank must stop after the same step: ``requested`` is the
maximum of the ranks' flags (one small all_reduce per step).
"""
from __future__ import annotations

import functools
import signal
import sys
import threading

import torch
import torch.distributed as dist

from core.process_group import is_distributed

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Installs the flag-raising handlers on creation (main thread only); ``uninstall`` puts back the old ones."""

    def __init__(self):
        self.signum = 0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.signum:  # second signal: behave as if no handler were installed
            self.uninstall()
            signal.raise_signal(signum)
            return
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: finishing this step, then checkpointing "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def requested(self, device: torch.device) -> bool:
        """Whether any rank got a signal (the same answer on every rank)."""
        if is_distributed():
            flag = torch.tensor([self.signum], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signum = self.signum or int(flag.item())
        return bool(self.signum)

    def exit(self, step: int, steps: int, run_dir, writer) -> None:
        """After the step's checkpoint: close ``writer`` (None on ranks that do not log), print, exit 128 + signal."""
        if writer is not None:
            writer.close()
            print(f"{run_dir}: stopped by {signal.Signals(self.signum).name} after step {step}/{steps} "
                  f"(checkpoints/last.pt); continue with: python run.py --resume {run_dir}", file=sys.stderr, flush=True)
        self.uninstall()
        raise SystemExit(128 + self.signum)


def stops_gracefully(train):
    """Decorator: calls ``train(..., stop=GracefulStop())`` with the handlers installed for
    that call only (put back however it ends, exceptions included)."""
    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        stop = GracefulStop()
        try:
            return train(*args, stop=stop, **kwargs)
        finally:
            stop.uninstall()
    return wrapper
