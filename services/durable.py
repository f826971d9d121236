"""Atomic file writes for the processes' durable state (the referee's ``--state``, the
coordinator's ``--state``): write a temporary file beside the target, fsync it, rename it
over the target, so a crash at any moment leaves the previous file or the new one, never a
torn one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Callable


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create ``path``'s folder, call ``write`` on a binary temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
