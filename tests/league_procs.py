"""Helpers for tests that run real league processes on 127.0.0.1 (started with the
`league` CLI in fresh interpreters, stopped by their PIDs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def league_credentials(tmp: Path, agents: list[str], coordinator: bool = False) -> dict[str, Path]:
    """A league CA under ``tmp/pki`` and credentials for the referee, ``admin``, each agent
    and, with ``coordinator``, a ``coordinator`` (as ``league up`` makes them)."""
    from services.pki import issue
    from services.processes import make_league_credentials

    dirs = make_league_credentials(tmp / "pki", agents)
    if coordinator:
        dirs["coordinator"] = tmp / "pki" / "coordinator"
        issue(tmp / "pki" / "ca", "coordinator", "coordinator", dirs["coordinator"])
    return dirs


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env(), cwd=str(ROOT), start_new_session=True)


def wait_json(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process exited with {proc.returncode} before writing {path}"
        assert time.monotonic() < deadline, f"{path} not written within {timeout}s"
        time.sleep(0.05)
    return json.loads(path.read_text())


def wait_until(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def threads(pid: int) -> int:
    """The process's thread count (``Threads:`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise ValueError(f"no Threads line for process {pid}")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def promtool_check_metrics(text: str, where: str) -> None:
    """``promtool check metrics`` (Debian's prometheus) passes on a scrape: valid exposition,
    naming conventions (base units, ``_total`` counters), no lint problems."""
    import shutil

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/install-prometheus installs Debian's prometheus"
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), \
        f"promtool check metrics on {where}:\n{out.stdout}{out.stderr}"


def metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of a sample ``name{labels...}`` in Prometheus text format (None if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        got = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv) if rest else {}
        got = {k: v.strip('"') for k, v in got.items()}
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None
