"""`league up` starts the configured processes and reports their addresses; `league down`
stops every one of them (by the PIDs `league up` recorded); `league status` reads the
running league."""

import json
import os
import signal

import grpc
import pytest

from services.pki import load_credentials
from services.processes import referee_status
from tests.league_procs import agent_toml, end, gone, league_cli, league_up, learners_toml, wait_until

LEAGUE = """
name = "updown"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
chain_length = 2
rounds = 0
""" + learners_toml("a", "b")


def test_up_status_down(tmp_path):
    config = tmp_path / "league.toml"
    config.write_text(LEAGUE)
    up_state = str(tmp_path / "up.json")
    up = league_up(config, tmp_path / "run", tmp_path / "up.json", cwd=tmp_path, merge_stderr=True)
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
        status = league_cli("status", state["referee"], "--json", "--credentials", state["credentials"], timeout=60,
                            LEAGUE_STATE=up_state)
        assert status.returncode == 0, status.stderr
        members = {m["agent_id"]: m for m in json.loads(status.stdout)["members"]}
        assert set(members) == {"a", "b"} and members["a"]["matches"] >= 1
        down = league_cli("down", timeout=60, LEAGUE_STATE=up_state)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=60) == 0  # `league up` notices, cleans up and prints its summary
        out = up.stdout.read()
        assert "league updown" in out
        for name, pid in state["pids"].items():
            assert gone(pid), f"{name} (pid {pid}) still running after league down"
        assert not (tmp_path / "up.json").exists()
    finally:
        end(up)


def test_sigterm_stops_the_whole_league(tmp_path):
    """``kill PID`` (``docker stop``, systemd) on ``league up`` stops it like Ctrl-C: every
    process it started is ended, the summary is written and it exits 0. Only ``league up``
    itself is signalled, not its process group."""
    config = tmp_path / "league.toml"
    config.write_text(LEAGUE)
    up = league_up(config, tmp_path / "run", tmp_path / "up.json", "--insecure", cwd=tmp_path, merge_stderr=True)
    try:
        wait_until(lambda: (tmp_path / "up.json").exists() and (tmp_path / "run" / "b.ready.json").exists(), 120,
                   "league up to start every process")
        state = json.loads((tmp_path / "up.json").read_text())
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, up.stdout.read()
        assert "league: stopping" in up.stdout.read()
        for name, pid in state["pids"].items():
            assert gone(pid), f"{name} (pid {pid}) still running after league up was sent SIGTERM"
        assert (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "up.json").exists()
    finally:
        end(up)
        for pid in json.loads((tmp_path / "up.json").read_text())["pids"].values() if (tmp_path / "up.json").exists() else ():
            if not gone(pid):  # a league up that died without cleaning up leaves its processes: end them
                os.kill(pid, signal.SIGKILL)


DETERMINISTIC = """
name = "same-seed"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
chain_length = 2
rounds = 6
seed = 3
""" + agent_toml("meta", "meta", policy="lstm", hidden=8, init="random:0", lr=[0.2]) \
    + agent_toml("persona", "persona", init="persona:test:1") + learners_toml("l1", "l2", "l3")


@pytest.mark.slow  # two whole leagues (about 1 min idle); league == embedded, exactly, is in the default suite
def test_same_seed_same_league(tmp_path):
    """Every match is pinned at a version fixed by the schedule (learners wait for their own
    update), so two runs of the same league config give the same numbers."""
    config = tmp_path / "league.toml"
    config.write_text(DETERMINISTIC)
    runs = []
    for i in range(2):
        proc = league_cli("up", str(config), "--out", str(tmp_path / f"r{i}"), "--json", timeout=300,
                          LEAGUE_STATE=str(tmp_path / f"up{i}.json"))
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    assert runs[0]["rounds"] == 6 and runs[0]["aborted_matches"] == 0
    assert runs[0]["chains"] == runs[1]["chains"]
    assert runs[0]["members"] == runs[1]["members"]
    assert {m["agent_id"]: m["policy_version"] for m in runs[0]["members"]}["l1"] > 1
