"""Progress of a run in units of work, shown as a redrawn line on a terminal or as
timestamped log lines elsewhere (a file, a pipe, CI), and the work model that weighs an
iteration of each method by what it costs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

METHOD_COST = {"meta-mapg": 6.0, "meta-pg": 5.0, "no-own-learning": 5.0, "lola-dice": 0.3, "reinforce": 0.25}
"""Cost of one persona x chain step of meta-training, in units of one persona x chain step of
evaluation (validation, meta-test: no meta-gradient). Measured on configs/ipd_quick.toml with
one torch thread: Meta-MAPG differentiates through the whole chain, REINFORCE and LOLA-DiCE
do not. A method not listed counts 1."""


@dataclass(frozen=True)
class JobWork:
    """The work of one (method, seed) job, in evaluation persona x chain steps."""

    iteration: float
    """One meta-training iteration: meta_batch x (L+1) x the method's cost."""
    validation: float
    """One validation pass: validation personas x (L+1)."""
    meta_test: float
    """The meta-test: test personas x (L+1)."""
    total: float
    """Every iteration, every validation pass (at iteration 0, every ``validate_every`` and the
    last) and the meta-test."""


def job_work(method: str, iterations: int, meta_batch: int, chain_length: int, validate_every: int,
             n_val: int, n_test: int) -> JobWork:
    steps = chain_length + 1
    it = METHOD_COST.get(method, 1.0) * meta_batch * steps
    val, test = float(n_val * steps), float(n_test * steps)
    passes = 1 + sum(1 for i in range(1, iterations + 1) if i % validate_every == 0 or i == iterations)
    return JobWork(it, val, test, iterations * it + passes * val + test)


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN, inf: not known yet
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """``update(done, note)`` redraws one line on a terminal; ``log(message)`` prints a
    timestamped line with the fraction of work done, elapsed time and ETA where the stream
    is not a terminal (so a run under nohup, in CI or piped to a file can be followed)."""

    def __init__(self, total: float, label: str = "", stream=None) -> None:
        self.total, self.label = max(float(total), 1e-9), label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self.done = 0.0

    def _times(self) -> tuple[float, float, float]:
        frac = min(self.done / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        return frac, elapsed, eta

    def update(self, done: float, note: str = "") -> None:
        self.done = done
        if not self.tty:
            return
        frac, elapsed, eta = self._times()
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%} {_clock(elapsed)} eta {_clock(eta)} {note[:50]:<50}")
        self.stream.flush()

    def log(self, message: str) -> None:
        if self.tty:
            return
        frac, elapsed, eta = self._times()
        stamp = time.strftime("%H:%M:%S")
        self.stream.write(f"[{stamp}] {self.label} {frac:4.0%} elapsed {_clock(elapsed)} eta {_clock(eta)} | {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
