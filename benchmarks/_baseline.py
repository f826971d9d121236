"""Run a workload on today's tree and on an earlier commit side by side: the earlier commit
is exported with ``git archive`` (no checkout, nothing in the work tree changes) and each
variant runs in its own persistent worker process, so repetitions can alternate between
them and both see the same machine load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from _bench_common import ROOT


def export_commit(commit: str) -> Path:
    """The tree of ``commit`` in a temporary directory (reused while it exists)."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True,
                          text=True).stdout.strip()
    dest = Path(tempfile.gettempdir()) / f"league-baseline-{full[:12]}"
    if not (dest / "league").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", full], check=True,
                                 capture_output=True).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(dest, filter="data")
    return dest


class Worker:
    """A child Python process running ``script`` with ``root`` first on its import path. Each
    ``call(request)`` writes one JSON line to its stdin and reads one JSON line back."""

    def __init__(self, root: Path, script: Path, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
        self.root = root
        self.proc = subprocess.Popen([sys.executable, str(script), *args], cwd=root, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.hello = self._read()  # the worker's first line: which league it imported, its setup

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker in {self.root} exited with {self.proc.wait()}")
        return json.loads(line)

    def call(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
