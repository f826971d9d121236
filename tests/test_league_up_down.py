"""`league up` starts the configured processes and reports their addresses; `league down`
stops every one of them (by the PIDs `league up` recorded); `league status` reads the
running league."""

import json
import os
import subprocess
import sys

import grpc
import pytest

from services.pki import load_credentials
from services.processes import referee_status
from tests.league_procs import env, wait_until

LEAGUE = """
name = "updown"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
chain_length = 2
rounds = 0

[[agents]]
id = "a"
role = "learner"
init = "random:1"
lr = [0.5]

[[agents]]
id = "b"
role = "learner"
init = "random:2"
lr = [0.5]
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split()[2] != "Z"


def test_up_status_down(tmp_path):
    config = tmp_path / "league.toml"
    config.write_text(LEAGUE)
    e = {**env(), "LEAGUE_STATE": str(tmp_path / "up.json")}
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up", str(config), "--out", str(tmp_path / "run")],
                          env=e, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def started() -> bool:
            assert up.poll() is None, up.stdout.read()
            return (tmp_path / "up.json").exists() and (tmp_path / "run" / "b.ready.json").exists()

        wait_until(started, 120, "league up to start every process")
        state = json.loads((tmp_path / "up.json").read_text())
        assert set(state["pids"]) == {"referee", "a", "b"}
        # secured by default: a CA and per-process credentials under the run directory, keys 0600
        pki = tmp_path / "run" / "pki"
        keys = sorted(pki.rglob("*.key")) + sorted(pki.rglob("key.pem"))
        assert {k.parent.name for k in keys} == {"ca", "referee", "admin", "a", "b"}
        assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
        admin = load_credentials(state["credentials"])
        assert admin.identity.role == "admin"
        wait_until(lambda: referee_status(state["referee"], credentials=admin).round >= 2, 60, "two rounds")
        with pytest.raises(grpc.RpcError) as plaintext:
            referee_status(state["referee"], timeout=5)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        status = subprocess.run([sys.executable, "-m", "services.cli", "status", state["referee"], "--json",
                                 "--credentials", state["credentials"]],
                                env=e, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        members = {m["agent_id"]: m for m in json.loads(status.stdout)["members"]}
        assert set(members) == {"a", "b"} and members["a"]["matches"] >= 1
        down = subprocess.run([sys.executable, "-m", "services.cli", "down"], env=e, capture_output=True, text=True,
                              timeout=60)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0  # `league up` notices, cleans up and prints its summary
        out = up.stdout.read()
        assert "league updown" in out
        for name, pid in state["pids"].items():
            assert not _alive(pid), f"{name} (pid {pid}) still running after league down"
        assert not (tmp_path / "up.json").exists()
    finally:
        if up.poll() is None:
            up.kill()


DETERMINISTIC = """
name = "same-seed"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
chain_length = 2
rounds = 6
seed = 3

[[agents]]
id = "meta"
role = "meta"
policy = "lstm"
hidden = 8
init = "random:0"
lr = [0.2]

[[agents]]
id = "persona"
role = "persona"
init = "persona:test:1"

[[agents]]
id = "l1"
role = "learner"
init = "random:1"
lr = [0.5]

[[agents]]
id = "l2"
role = "learner"
init = "random:2"
lr = [0.5]

[[agents]]
id = "l3"
role = "learner"
init = "random:3"
lr = [0.5]
"""


def test_same_seed_same_league(tmp_path):
    """Every match is pinned at a version fixed by the schedule (learners wait for their own
    update), so two runs of the same league config give the same numbers."""
    config = tmp_path / "league.toml"
    config.write_text(DETERMINISTIC)
    runs = []
    for i in range(2):
        proc = subprocess.run([sys.executable, "-m", "services.cli", "up", str(config), "--out", str(tmp_path / f"r{i}"),
                               "--json"], env={**env(), "LEAGUE_STATE": str(tmp_path / f"up{i}.json")},
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    assert runs[0]["rounds"] == 6 and runs[0]["aborted_matches"] == 0
    assert runs[0]["chains"] == runs[1]["chains"]
    assert runs[0]["members"] == runs[1]["members"]
    assert {m["agent_id"]: m["policy_version"] for m in runs[0]["members"]}["l1"] > 1
