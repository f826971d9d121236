"""Atomic file writes for the processes' durable state (the referee's ``--state``, the
coordinator's ``--state``) and for the files other processes poll for (ready files,
results, summaries): write a temporary file beside the target, fsync it, rename it over the
target, so a crash or a reader at any moment sees the previous file or the new one, never a
torn one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create ``path``'s folder, call ``write`` on a binary temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path | str, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically, so a process polling for ``path`` (a
    ready file, a results file, a summary) never reads half of it."""
    text = json.dumps(data, indent=indent).encode()
    write_atomically(Path(path), lambda f: f.write(text))
