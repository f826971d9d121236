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
from dataclasses import dataclass, field
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


def agent_toml(agent_id: str, role: str = "learner", **fields) -> str:
    """One ``[[agents]]`` table of a league TOML: strings quoted, numbers and lists as written."""
    lines = [f'id = "{agent_id}"', f'role = "{role}"']
    lines += [f"{k} = " + (f'"{v}"' if isinstance(v, str) else str(v)) for k, v in fields.items()]
    return "\n[[agents]]\n" + "\n".join(lines) + "\n"


def learners_toml(*ids: str, first_seed: int = 1, lr: float = 0.5) -> str:
    """``[[agents]]`` tables of tabular learners: ``ids[i]`` starts at ``random:first_seed+i``
    and learns at ``lr``."""
    return "".join(agent_toml(a, init=f"random:{first_seed + i}", lr=[lr]) for i, a in enumerate(ids))


@dataclass
class LocalLeague:
    """A referee and agents started with the ``league`` CLI; ready files (``NAME.json``),
    logs (``NAME.log``) and agent checkpoints (``ckpt/``) under ``tmp``. ``creds``: each
    process's credentials directory by name (``referee``, agent ids; see
    :func:`league_credentials`), or None for a plaintext (``--insecure``) league."""

    tmp: Path
    config: Path
    creds: dict[str, Path] | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ref: dict = field(default_factory=dict)

    def flags(self, name: str) -> list[str]:
        """The credential flags of process ``name``."""
        return ["--insecure"] if self.creds is None else ["--credentials", str(self.creds[name])]

    def start_referee(self, *extra: str) -> dict:
        self.procs["referee"] = spawn(["referee", str(self.config), "--ready-file", str(self.tmp / "referee.json"),
                                       *self.flags("referee"), *extra], self.tmp / "referee.log")
        self.ref = wait_json(self.tmp / "referee.json", self.procs["referee"], timeout=120)
        return self.ref

    def spawn_agent(self, agent_id: str, *extra: str) -> subprocess.Popen:
        (self.tmp / f"{agent_id}.json").unlink(missing_ok=True)
        self.procs[agent_id] = spawn(["agent", "--join", self.ref["address"], "--id", agent_id,
                                      "--checkpoint-dir", str(self.tmp / "ckpt"),
                                      "--ready-file", str(self.tmp / f"{agent_id}.json"), *self.flags(agent_id),
                                      *extra], self.tmp / f"{agent_id}.log")
        return self.procs[agent_id]

    def wait_agent(self, agent_id: str, timeout: float = 120.0) -> dict:
        """The agent's ready file ({agent_id, address, metrics, pid, resumed}) once it joined."""
        return wait_json(self.tmp / f"{agent_id}.json", self.procs[agent_id], timeout)

    def start_agent(self, agent_id: str, *extra: str) -> dict:
        self.spawn_agent(agent_id, *extra)
        return self.wait_agent(agent_id)

    def stop(self) -> None:
        stop(list(self.procs.values()))


def start_league(tmp: Path, config_text: str, agents: tuple[str, ...] | list[str], creds: dict[str, Path] | None = None,
                 wait_for: int = 0, agent_extra: dict[str, list[str]] | None = None) -> LocalLeague:
    """Write ``tmp/league.toml``, start its referee (waiting for ``wait_for`` members before
    the first round) and the configured ``agents`` (``--config``; ``agent_extra``: more flags
    per agent), and return once every agent has joined. Stop it with ``league.stop()``."""
    config = tmp / "league.toml"
    config.write_text(config_text)
    league = LocalLeague(tmp, config, creds)
    league.start_referee(*(["--wait-for", str(wait_for)] if wait_for else []))
    try:
        for a in agents:
            league.spawn_agent(a, "--config", str(config), *(agent_extra or {}).get(a, []))
        for a in agents:
            league.wait_agent(a)
    except BaseException:
        league.stop()
        raise
    return league


def spawn(args: list[str], log: Path, prefix: list[str] | tuple[str, ...] = ()) -> subprocess.Popen:
    """``league ARGS...`` in a fresh interpreter, output to ``log``; ``prefix``: a command that runs
    it (e.g. ``strace ...``; the process's own PID is then the one its ready file names)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([*prefix, sys.executable, "-m", "services.cli", *args], stdout=open(log, "w"),
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


def league_cli(*args: str, timeout: float = 120, **env_extra: str) -> subprocess.CompletedProcess:
    """Run ``league ARGS...`` to completion (a fresh interpreter, from the repository root)."""
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=str(ROOT), env={**env(), **env_extra},
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failure's last stderr line, which must be the one ``league: error: ...`` line."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("league: error: "), proc.stderr
    return last


def league_up(config: Path, run: Path, state: Path, *extra: str, cwd: Path = ROOT, merge_stderr: bool = False
              ) -> subprocess.Popen:
    """``league up CONFIG --out RUN EXTRA...`` in the background, recording its PIDs in
    ``state`` (``LEAGUE_STATE``); stdout (and stderr, or merged into stdout) piped as text."""
    return subprocess.Popen([sys.executable, "-m", "services.cli", "up", str(config), "--out", str(run), *extra],
                            env={**env(), "LEAGUE_STATE": str(state)}, cwd=str(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True,
                            start_new_session=True)


def end(proc: subprocess.Popen) -> None:
    """End ``proc``'s process group (SIGTERM) if it still runs, and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``: its (stdout, stderr) once it has ended by itself."""
    return proc.communicate(timeout=timeout)


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts: it holds no sockets any more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
