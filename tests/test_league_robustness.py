"""Faults with real processes on 127.0.0.1 (started here, stopped by their PIDs): a join
under a live id is refused with one line; rogue agents serving wrong-shape and NaN
parameters void their matches, are dropped and refused again, and the referee goes on;
a SIGSTOPped agent delays the rounds by about one lease, its matches voided and logged,
and it rejoins after SIGCONT. Plus the process CLI's one-line failures. These leagues run in
plaintext (``--insecure``): the rogue agent is a bare gRPC server, and the faults are about
what a member serves, not who it is (tests/test_league_access.py covers access control)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.processes import referee_status
from tests.league_procs import (ROOT, end, env, finish, league_cli, league_up, learners_toml, one_line_error,
                                start_league, wait_json, wait_until)

pytestmark = pytest.mark.timeout(300)

LEASE = 2.0
LEARNERS = ("l1", "l2", "l3", "l4")
LEAGUE = f"""
name = "robust"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
rounds = 0
seed = 3
lease_seconds = {LEASE}
fetch_timeout = 60.0
""" + learners_toml(*LEARNERS)


def _members(address):
    return {m.agent_id: m for m in referee_status(address).members}


@pytest.fixture(scope="module")
def league(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    lg = start_league(tmp, LEAGUE, LEARNERS, wait_for=len(LEARNERS))  # plaintext: see the module's docstring
    ref, procs = lg.ref, lg.procs
    try:
        wait_until(lambda: referee_status(ref["address"]).round >= 2, 120, "the league to play")
        yield ref, procs, tmp, lg.config
    finally:
        for p in procs.values():  # a test may leave an agent stopped
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
        lg.stop()


@pytest.mark.slow  # the fuzz test checks the ALREADY_EXISTS answer itself in the default run
def test_a_join_under_a_live_id_is_refused_in_one_line(league):
    ref, procs, tmp, config = league
    proc = league_cli("agent", "--join", ref["address"], "--config", str(config), "--id", "l2",
                       "--checkpoint-dir", str(tmp / "intruder"), "--join-wait", "30", "--insecure")
    line = one_line_error(proc)
    assert "ALREADY_EXISTS" in line and "l2" in line
    assert procs["l2"].poll() is None and _members(ref["address"])["l2"].address != ""  # the holder stays


@pytest.mark.parametrize("mode", [pytest.param("shape", marks=pytest.mark.slow), "nan"])
def test_a_rogue_agent_voids_its_matches_and_the_league_goes_on(league, mode):
    ref, procs, tmp, _ = league
    addr = ref["address"]
    name = f"rogue-{mode}"
    before = referee_status(addr)
    procs[name] = subprocess.Popen([sys.executable, "-m", "tests.rogue_agent", "--join", addr, "--id", name,
                                    "--mode", mode, "--ready-file", str(tmp / f"{name}.json"), "--seconds", "60"],
                                   cwd=str(ROOT), env=env(), stdout=open(tmp / f"{name}.log", "w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
    wait_json(tmp / f"{name}.json", procs[name], timeout=120)
    # its next match is voided (the referee checks what it fetched), it is dropped, and a
    # join again is refused because of what it now serves
    wait_until(lambda: '"refused"' in (tmp / f"{name}.log").read_text(), 90, f"{name} to be dropped and refused")
    refused = [json.loads(line) for line in (tmp / f"{name}.log").read_text().splitlines()
               if line.startswith("{") and '"refused"' in line][0]
    assert refused["code"] == "FAILED_PRECONDITION"
    assert ("NaN" in refused["details"]) if mode == "nan" else ("shape" in refused["details"])
    after = referee_status(addr)
    assert after.aborted_matches > before.aborted_matches
    log = (tmp / "referee.log").read_text()
    assert f"{name} dropped from the league: it served invalid parameters" in log
    assert "Traceback" not in log
    # the referee is alive and the league goes on
    assert procs["referee"].poll() is None
    wait_until(lambda: referee_status(addr).round >= after.round + 3, 60, "rounds after the rogue")
    assert name not in _members(addr)
    os.kill(procs[name].pid, signal.SIGTERM)
    procs[name].wait(timeout=15)


def test_a_stopped_agent_delays_rounds_by_about_one_lease(league):
    ref, procs, tmp, _ = league
    addr = ref["address"]
    wait_until(lambda: {"l1", "l2", "l3", "l4"} <= set(_members(addr)), 60, "every learner to be a member")
    aborted = referee_status(addr).aborted_matches
    os.kill(procs["l3"].pid, signal.SIGSTOP)
    try:
        # watch the rounds for 4 leases: the longest stall is bounded by about one lease
        # (fetch_timeout is 60 s: without the lease bound the league would stall for a minute)
        stalls, last_round, last_change = [], referee_status(addr).round, time.monotonic()
        end = time.monotonic() + 4 * LEASE + 4
        while time.monotonic() < end:
            r = referee_status(addr).round
            now = time.monotonic()
            if r != last_round:
                stalls.append(now - last_change)
                last_round, last_change = r, now
            time.sleep(0.05)
        stalls.append(time.monotonic() - last_change)
        assert max(stalls) < 2 * LEASE + 4, stalls  # about one lease, generous for a loaded machine
        assert "l3" not in _members(addr)
        assert referee_status(addr).aborted_matches > aborted
        log = (tmp / "referee.log").read_text()
        assert "l3 missed its lease" in log and "voided match" in log and "l3" in log
    finally:
        os.kill(procs["l3"].pid, signal.SIGCONT)
    # woken up, it finds it was dropped, joins again and plays again
    wait_until(lambda: "l3" in _members(addr), 60, "l3 to join again")
    matches = _members(addr)["l3"].matches
    wait_until(lambda: _members(addr)["l3"].matches > matches, 60, "l3 to play again")


# -- one-line CLI failures ---------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_waits_for_an_absent_referee_then_fails_in_one_line(tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    proc = league_cli("agent", "--join", address, "--id", "lonely", "--env", "ipd", "--join-wait", "3",
                       "--checkpoint-dir", str(tmp_path), "--insecure")
    assert f"waiting for the referee at {address}" in proc.stderr
    line = one_line_error(proc)
    assert address in line and time.monotonic() - t0 < 120


@pytest.mark.slow
def test_coordinator_waits_for_an_absent_referee_then_fails_in_one_line():
    address = f"127.0.0.1:{_closed_port()}"
    proc = league_cli("coordinator", "--join", address, "--experiment", "configs/ipd_quick.toml", "--meta", "m",
                       "--personas", "p", "--join-wait", "2", "--insecure")
    assert f"waiting for the referee at {address}" in proc.stderr
    assert address in one_line_error(proc)


@pytest.mark.slow
def test_a_port_in_use_fails_in_one_line(tmp_path):
    config = tmp_path / "league.toml"
    config.write_text(LEAGUE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = league_cli("referee", str(config), "--port", str(port), "--insecure")
        assert str(port) in one_line_error(proc)
        proc = league_cli("agent", "--join", "127.0.0.1:1", "--id", "x", "--env", "ipd", "--port", str(port),
                           "--checkpoint-dir", str(tmp_path), "--insecure")
        assert str(port) in one_line_error(proc)


def test_down_signals_only_processes_that_are_the_leagues(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        state = tmp_path / "up.json"
        state.write_text(json.dumps({"run": str(tmp_path), "pids": {"referee": stranger.pid}}))
        proc = league_cli("down", timeout=60, LEAGUE_STATE=str(state))
        assert proc.returncode == 0, proc.stderr
        assert f"skipped referee (pid {stranger.pid})" in proc.stdout
        time.sleep(0.5)
        assert stranger.poll() is None  # not signalled
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


CHAIN_LENGTH = 3
RESTART_LEAGUE = LEAGUE.replace('name = "robust"', 'name = "restart"').replace(
    "rounds = 0", f"rounds = 40\nchain_length = {CHAIN_LENGTH}") + """
[[agents]]
id = "meta"
role = "meta"
policy = "lstm"
hidden = 8
init = "random:0"
lr = [0.1]

[[agents]]
id = "persona"
role = "persona"
init = "persona:test:0"
"""


@pytest.mark.slow
def test_league_up_restarts_a_killed_referee_and_loses_no_round(tmp_path):
    """SIGKILL of the referee mid-league, while a meta-agent's chain is between its steps:
    `league up` restarts it on the same address, it resumes from its persisted state (round
    counter, results, chains), the agents reconnect and re-register, the interrupted chain is
    voided and counted and a new one starts, and the final summary holds every completed
    round and chain step once: no duplicates, no gaps."""
    config = tmp_path / "league.toml"
    config.write_text(RESTART_LEAGUE)
    run, up_state = tmp_path / "run", tmp_path / "up.json"
    up = league_up(config, run, up_state, "--json", "--insecure")
    try:
        wait_until(lambda: up_state.exists() and (run / "persona.ready.json").exists(), 180, "league up")
        address = json.loads(up_state.read_text())["referee"]
        wait_until(lambda: referee_status(address).round >= 8, 120, "eight rounds")

        def mid_chain():  # the persisted chain has played steps 0..l-1 with 1 <= l < L: it is open
            chains = json.loads((run / "referee_state.json").read_text())["chains"]
            return chains and 1 <= chains[0][4] < CHAIN_LENGTH

        wait_until(mid_chain, 60, "a chain between its steps")
        before = referee_status(address)
        os.kill(json.loads(up_state.read_text())["pids"]["referee"], signal.SIGKILL)
        out, err = finish(up, 240)
    finally:
        end(up)
    assert up.returncode == 0, err
    assert "restarting it on" in err and address in err
    summary = json.loads(out)
    assert summary["rounds"] == 40 and summary["referee_restarts"] == 1 and "partial" not in summary
    log = (run / "logs" / "referee.log").read_text()
    resumed_at = int(log.split("at round ")[1].split()[0])
    assert resumed_at >= before.round  # nothing completed before the kill was lost
    by_id = {m["agent_id"]: m for m in summary["members"]}
    assert set(by_id) == {"l1", "l2", "l3", "l4", "meta", "persona"}
    seen = {m.agent_id: m.episodes for m in before.members}
    assert all(by_id[a]["episodes"] > seen[a] for a in by_id)  # records carried over and grown
    for a in by_id:
        agent_log = (run / "logs" / f"{a}.log").read_text()
        assert "lost the referee" in agent_log and "reconnected to the referee" in agent_log
    # chains: numbered without gaps or repeats; the one open at the kill is voided, counted and
    # marked; every chain step the meta-agent played is in exactly one chain's record
    chains = summary["chains"]
    assert [c["chain"] for c in chains] == [f"c{i}" for i in range(1, len(chains) + 1)]
    interrupted = [c for c in chains if c.get("interrupted")]
    assert len(interrupted) == 1 and 1 <= len(interrupted[0]["rewards"]) <= CHAIN_LENGTH, interrupted
    assert f"interrupted chains voided: {interrupted[0]['chain']}" in log
    assert sum(len(c["rewards"]) for c in chains) == by_id["meta"]["matches"]
    # a chain short of its L+1 steps (the last may still be running) was interrupted or had a step
    # voided (e.g. a seat not yet reconnected): each one is a counted voided match
    short = [c for c in chains[:-1] if len(c["rewards"]) < CHAIN_LENGTH + 1]
    assert 1 <= len(short) <= summary["aborted_matches"], (short, summary["aborted_matches"])


GIVE_UP_LEAGUE = LEAGUE.replace('name = "robust"', 'name = "give-up"')


def _persisted_round(run: Path) -> int:
    """The round in the referee's state file (written atomically; 0 before the first save)."""
    try:
        return json.loads((run / "referee_state.json").read_text())["round"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow
def test_league_up_gives_up_on_a_referee_that_cannot_come_back(tmp_path):
    """SIGKILL of the referee after its config was made invalid: the restart (a budget of one)
    rejects the config and exits, and `league up` ends non-zero in one line that says it gave
    up, with the partial summary of every round the referee persisted. (The config, not an
    occupied port: the dead referee's port, picked by the kernel from the ephemeral range,
    can be held a moment by sockets in TIME_WAIT or by another connection's source port.)"""
    config = tmp_path / "league.toml"
    config.write_text(GIVE_UP_LEAGUE)
    run, up_state = tmp_path / "run", tmp_path / "up.json"
    up = league_up(config, run, up_state, "--json", "--insecure", "--referee-restarts", "1")
    try:
        wait_until(lambda: up_state.exists() and (run / "l4.ready.json").exists(), 180, "league up")
        recorded = json.loads(up_state.read_text())
        # three rounds *saved*: the status counts a round before its state is on disk, and a
        # kill between the two (the fsync) leaves round 2 persisted, as the contract allows
        wait_until(lambda: _persisted_round(run) >= 3, 120, "three saved rounds")
        config.write_text(GIVE_UP_LEAGUE.replace("trajectories = 4", "trajectories = -4"))  # the restart rejects it
        os.kill(recorded["pids"]["referee"], signal.SIGKILL)
        out, err = finish(up, 240)
    finally:
        end(up)
    assert up.returncode != 0
    assert "restarting it on" in err and "(1/1)" in err and "did not come up" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("league: error: gave up on the referee") and "1 of 1 restarts" in last, err
    assert str(run / "summary.json") in last and "Traceback" not in err
    summary = json.loads(out)
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["partial"] is True and summary["referee_restarts"] == 1 and summary["referee_exit_code"] != 0
    persisted = json.loads((run / "referee_state.json").read_text())
    assert summary["rounds"] == persisted["round"] >= 3  # every round the referee completed and saved
    assert {m["agent_id"] for m in summary["members"]} == {"l1", "l2", "l3", "l4"}
    assert "trajectories" in (run / "logs" / "referee.log").read_text().splitlines()[-1]
