"""A dependency-free progress line for terminals (silent when output is not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total).update(done, note)`` redraws one line on a TTY; ``close()`` ends it."""

    def __init__(self, total: int, label: str = "", stream=None) -> None:
        self.total, self.label = max(total, 1), label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {elapsed:5.0f}s eta {eta:5.0f}s {note[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
