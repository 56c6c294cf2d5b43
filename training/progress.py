"""A one-line progress display on stderr: step, epoch, loss, samples/s, time left."""
from __future__ import annotations

import sys
import time


class Progress:
    """Rewrites one line on a terminal; on a pipe, prints a line every ~5% of the run."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=sys.stderr,
                 steps_per_epoch: float | None = None):
        self.total, self.start, self.enabled, self.stream = total, start, enabled, stream
        self.steps_per_epoch = steps_per_epoch
        self.tty = stream.isatty()
        self.began = time.perf_counter()
        self.every = max(1, (total - start) // 20)

    def update(self, step: int, loss: float, samples_per_s: float) -> None:
        if not self.enabled:
            return
        done = step - self.start
        eta = (time.perf_counter() - self.began) / max(done, 1) * (self.total - step)
        line = f"step {step}/{self.total}"
        if self.steps_per_epoch:
            line += f" (epoch {step / self.steps_per_epoch:.1f}/{self.total / self.steps_per_epoch:.1f})"
        line += f"  loss {loss:.4f}  {samples_per_s:.1f} samples/s  eta {eta:.0f}s"
        if self.tty:
            self.stream.write("\r" + line.ljust(80))
            if step == self.total:
                self.stream.write("\n")
        elif done % self.every == 0 or step == self.total:
            self.stream.write(line + "\n")
        self.stream.flush()
