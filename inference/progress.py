"""A one-line progress display on stderr for embedding: items done, items/s."""
from __future__ import annotations

import sys
import time


class ItemProgress:
    """Rewrites one line on a terminal (``embed test: 640/1024 items, 812 items/s``); on a pipe,
    prints a line every ~10% of the items and at the end."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=None):
        stream = sys.stderr if stream is None else stream  # looked up now: sys.stderr may have been replaced
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        self.tty = stream.isatty()
        self.began = time.perf_counter()
        self.every, self.shown = max(1, total // 10), 0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.perf_counter() - self.began, 1e-9)
        line = f"embed {self.label}: {done}/{self.total} items, {rate:.0f} items/s"
        if self.tty:
            self.stream.write("\r" + line.ljust(60) + ("\n" if done >= self.total else ""))
        elif done - self.shown >= self.every or done >= self.total:
            self.stream.write(line + "\n")
            self.shown = done
        self.stream.flush()
