"""The coordinator's ``matrl`` mode with real processes on 127.0.0.1: a referee, agent processes
with rule ``matrl`` and a coordinator. A few rounds through the league give the embedded
``run_sampled_matrl``'s parameters; the mode exports its MATRL series; an agent killed during
the rounds voids its group's rounds (counted, one log line each) while the other group goes on."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.policy_factory import game_for, initial_state, make_policy
from league.matrl.sampled import run_sampled_matrl
from services.coordinator_matrl import load_matrl_config
from services.league_config import load_league_config
from tests.test_compose import (dashboard_queries, dashboard_variables, grafana_expand, has_data, needs_prometheus,
                                promql, rate_interval)
from tests.league_procs import (agent_toml, league_credentials, metric_value, metrics, promtool_check_metrics, spawn,
                                start_league, wait_json, wait_until)

LEAGUE = """
name = "matrl"
[referee]
env = "rps"
n_players = {n}
trajectories = 8
horizon = 3
rounds = 0
chains_by = "coordinator"
fetch_timeout = 20.0
lease_seconds = 3.0
"""

EXPERIMENT = """
env = "rps"
n_players = {n}
trajectories = 8
horizon = 3
gamma = 0.96
lr = {lrs}
trust_steps = {trust_steps}
kl_coef = {kl_coef}
br_lr = 0.8
clip = 0.5
"""


def _league(tmp_path, n: int, ids: list[str], lrs: list[float], iterations: int, *extra: str,
            kl_coef: float = 0.5, trust_steps: int = 2, prefix: list[str] | tuple[str, ...] = ()):
    """A secured league of ``ids`` (rule matrl, persona seats the coordinator alone schedules) and
    a coordinator in mode matrl driving them for ``iterations`` rounds (run by ``prefix``, if any)."""
    text = LEAGUE.format(n=n) + "".join(agent_toml(a, role="persona", rule="matrl", init=f"random:{i}",
                                                     lr=[lrs[i % len(lrs)]]) for i, a in enumerate(ids))
    (tmp_path / "matrl.toml").write_text(EXPERIMENT.format(n=n, lrs=[lrs[i % len(lrs)] for i in range(n)],
                                                           kl_coef=kl_coef, trust_steps=trust_steps))
    creds = league_credentials(tmp_path, ids, coordinator=True)
    lg = start_league(tmp_path, text, ids, creds)
    coord = spawn(_coordinator_args(tmp_path, lg, ids, iterations, *extra), tmp_path / "coord.log", prefix)
    lg.procs["coordinator"] = coord
    return lg, coord


def _coordinator_args(tmp_path, lg, ids: list[str], iterations: int, *extra: str) -> list[str]:
    """``league coordinator`` in mode matrl on ``lg`` (a restart passes the same arguments)."""
    return ["coordinator", "--join", lg.ref["address"], "--mode", "matrl", "--experiment",
            str(tmp_path / "matrl.toml"), "--agents", ",".join(ids), "--iterations", str(iterations),
            "--results", str(tmp_path / "coord.json"), "--ready-file", str(tmp_path / "coord.ready.json"),
            "--credentials", str(lg.creds["coordinator"]), *extra]


def _embedded(tmp_path, ids: list[str], n: int, rounds: int):
    """The embedded run of the same config, seed 0, from the agents' own initial parameters."""
    league = load_league_config(tmp_path / "league.toml")
    cfg = load_matrl_config(str(tmp_path / "matrl.toml"))
    game = game_for("rps", n)
    specs = {a.id: a for a in league.agents}
    policy = make_policy(specs[ids[0]], game)
    inits = [initial_state(specs[a], policy, game, 0, 3, "rps")[0] for a in ids]
    groups = [inits[i:i + n] for i in range(0, len(ids), n)]
    final, history = run_sampled_matrl(game, [policy] * n, groups, cfg, torch.Generator().manual_seed(0), rounds)
    return {a: final[i // n][i % n] for i, a in enumerate(ids)}, history


def _fractional(weights: list[list[float]], tol: float = 1e-6) -> list[int]:
    """The rounds (indices) in which some seat's Nash weight is strictly inside (0, 1)."""
    return [r for r, w in enumerate(weights) if any(tol <= x <= 1 - tol for x in w)]


#: Per seat count: the settings of the league-equals-embedded test. n = 2: the trust-region inner
#: loop overshoots (lr * kl_coef = 100, 3 inner steps), so a seat's step can lose on its own
#: estimate, and round 2's meta-game has no pure equilibrium: Nash weights (0.355, 0.562) from
#: support enumeration, in the last round, so that the coordinator's and each agent's weight gauge
#: show them too (docs/matrl.md, "When is a Nash weight fractional?": with gaining steps a
#: two-player zero-sum meta-game always has a pure equilibrium). n = 3: the earlier settings (pure
#: weights in every round).
SETTINGS = {2: {"lrs": [10.0, 10.0], "kl_coef": 10.0, "trust_steps": 3, "rounds": 2, "fractional": True},
            3: {"lrs": [0.5, 1.0, 0.7], "kl_coef": 0.5, "trust_steps": 2, "rounds": 3, "fractional": False}}


@pytest.mark.parametrize("n", [2, pytest.param(3, marks=pytest.mark.slow)])  # each about 30 s on the 2 shared cores
def test_league_rounds_equal_the_embedded_rounds(tmp_path, n):
    ids = [f"m{i}" for i in range(n)]
    setting = SETTINGS[n]
    rounds = setting["rounds"]
    lg, coord = _league(tmp_path, n, ids, setting["lrs"], rounds, "--linger", "3", "--pace", "1.5",
                        kl_coef=setting["kl_coef"], trust_steps=setting["trust_steps"])
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        wait_until(lambda: (tmp_path / "coord.json").exists() and json.loads(
            (tmp_path / "coord.json").read_text())["state"] == "done", 240, "the coordinator's rounds")
        text = metrics(ready["metrics"])
        promtool_check_metrics(text, "the matrl coordinator")
        assert coord.wait(timeout=60) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        embedded, history = _embedded(tmp_path, ids, n, rounds)
        for a in ids:
            np.testing.assert_allclose(np.array(result["params"][a]["logits"]), embedded[a]["logits"].numpy(),
                                       atol=1e-6, rtol=0, err_msg=a)
            assert not torch.allclose(embedded[a]["logits"], torch.zeros_like(embedded[a]["logits"]))  # it learned
        np.testing.assert_allclose(np.array([r["weights"] for r in result["rounds"]]),
                                   np.array([h["weights"] for h in history]), atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.array([r["metagame"] for r in result["rounds"]]),
                                   np.array([h["metagame"] for h in history]), atol=1e-6, rtol=0)
        if setting["fractional"]:  # the league's handling of a weight strictly inside (0, 1), not pushed by hand
            league_rounds, embedded_rounds = (_fractional([r["weights"] for r in result["rounds"]]),
                                              _fractional([h["weights"] for h in history]))
            print(f"fractional rounds: league {league_rounds}, embedded {embedded_rounds}; weights "
                  f"{[r['weights'] for r in result['rounds']]}")
            assert league_rounds and league_rounds == embedded_rounds
        # the MATRL series: weights and the last meta-game per agent, solve time, no voided round
        last = result["rounds"][-1]
        for k, a in enumerate(ids):
            assert metric_value(text, "league_matrl_nash_weight", agent_id=a) == pytest.approx(last["weights"][k])
            agent_text = metrics(json.loads((tmp_path / f"{a}.json").read_text())["metrics"])  # the weight it was sent
            assert metric_value(agent_text, "league_agent_matrl_nash_weight", agent_id=a) == pytest.approx(
                last["weights"][k])
            assert metric_value(text, "league_matrl_metagame_value", agent_id=a, corner="1" * n) == pytest.approx(
                last["metagame"][k * 2**n + 2**n - 1], abs=1e-6)
        assert metric_value(text, "league_matrl_solve_seconds_count") == rounds
        assert metric_value(text, "league_matrl_rounds_total") == rounds
        assert metric_value(text, "league_matrl_rounds_voided_total") == 0
        assert metric_value(text, "league_coordinator_iterations_total") == rounds
        # --pace: each round started at least 1.5 s after the one before
        starts = [it["started_s"] for it in result["iterations"]]
        assert len(starts) == rounds and min(np.diff(starts)) >= 1.5, starts
    finally:
        lg.stop()


@pytest.mark.slow  # about 40 s
def test_an_agent_killed_during_the_rounds_voids_its_groups_rounds_and_the_other_group_goes_on(tmp_path):
    ids = ["a0", "a1", "b0", "b1"]  # groups [a0, a1] and [b0, b1]
    rounds = 4
    lg, coord = _league(tmp_path, 2, ids, [0.5], rounds, "--timeout", "15", "--linger", "3")
    try:
        ready, result, voided = kill_b1_and_check_its_group_voided(tmp_path, coord, rounds, 240)
        text = metrics(ready["metrics"]) if coord.poll() is None else None
        if text is not None:
            assert metric_value(text, "league_matrl_rounds_voided_total") == voided
        # group 0's agents took every round's best response: policy version 1 + rounds
        assert [r["iteration"] for r in result["iterations"]] == list(range(1, rounds + 1))
        assert sum(r["groups_voided"] for r in result["iterations"]) == voided
    finally:
        lg.stop()


def kill_b1_and_check_its_group_voided(tmp_path, coord, rounds: int, first_rounds_timeout: float
                                       ) -> tuple[dict, dict, int]:
    """With groups [a0, a1] and [b0, b1]: once both groups played a round, SIGKILL agent b1
    (during round 2, or between rounds: its group's next round is voided); the coordinator
    still ends ``done``, group 0 played every round, group 1 at least one and not all, and each
    voided round is logged once with no traceback. Returns the ready file, the results and the
    number of voided rounds."""
    ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
    wait_until(lambda: (metric_value(metrics(ready["metrics"]), "league_matrl_rounds_total") or 0) >= 2,
               first_rounds_timeout, "the first round of both groups")
    os.kill(json.loads((tmp_path / "b1.json").read_text())["pid"], signal.SIGKILL)
    assert coord.wait(timeout=300) == 0, (tmp_path / "coord.log").read_text()[-3000:]
    result = json.loads((tmp_path / "coord.json").read_text())
    assert result["state"] == "done"
    played = [(r["group"], r["agents"]) for r in result["rounds"]]
    assert played.count((0, ["a0", "a1"])) == rounds  # the other group played every round
    b_rounds = played.count((1, ["b0", "b1"]))
    assert 1 <= b_rounds < rounds
    log = (tmp_path / "coord.log").read_text()
    assert log.count("of group 1 (b0, b1) voided") == rounds - b_rounds, log[-3000:]
    assert "Traceback" not in log
    return ready, result, rounds - b_rounds


def _strace_traces() -> bool:
    """strace is installed and may trace a child here (a container can forbid ptrace)."""
    strace = shutil.which("strace")
    return strace is not None and subprocess.run(
        [strace, "-f", "--seccomp-bpf", "-qq", "-o", os.devnull, "-e", "trace=rename", "true"], capture_output=True,
        timeout=30).returncode == 0


def _renames_delayed(at: str, seconds: float, trace: Path) -> list[str]:
    """The prefix that runs a process under strace as on a slow disk: each of its rename(2) calls
    (the last step of every atomic write, ``services.durable``: ``--state``, ``--results``)
    returns ``seconds`` late (``at="exit"``: the file is already replaced) or begins ``seconds``
    late (``at="enter"``: the previous file is still in place); no other call is touched. Only the
    thread that writes (the coordinator's main thread) waits, and it waits at that exact point,
    which a test polling the file cannot catch otherwise: the commit push follows the decision's
    rename by a few milliseconds of gRPC."""
    calls = "rename,renameat,renameat2"
    return [shutil.which("strace"), "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-o", str(trace),
            "-e", f"trace={calls}", "-e", f"inject={calls}:delay_{at}={round(seconds * 1e6)}"]


def _saved_mode_state(state) -> dict | None:
    """The matrl mode's part of the coordinator's ``--state`` file, or None before the first save."""
    return torch.load(state, weights_only=True)["mode_state"] if state.exists() else None


def _agent_versions(tmp_path, lg, ids: list[str]) -> dict[str, dict[str, int]]:
    """Each agent's ``policy`` version (its own ``league_agent_policy_version`` gauge) and the
    versions of its ``matrl-prepared`` and ``matrl-commit`` kinds (``Describe`` as ``admin``: one
    ``matrl-commit`` version per commit pushed to it)."""
    from services import server as srv
    from services.client import describe
    from services.gen.league.v1 import agent_pb2_grpc
    from services.pki import load_credentials

    out = {}
    for a in ids:
        info = json.loads((tmp_path / f"{a}.json").read_text())
        with srv.channel(info["address"], load_credentials(lg.creds["admin"])) as ch:
            versions = describe(agent_pb2_grpc.AgentStub(ch), timeout=10).versions
        out[a] = {"policy": int(metric_value(metrics(info["metrics"]), "league_agent_policy_version", agent_id=a)),
                  "prepared": versions["matrl-prepared"], "commit": versions["matrl-commit"]}
    return out


def _kill_in_commit_phase(tmp_path, lg, coord, state, ids: list[str], round_: int, committed: bool,
                          timeout: float = 120) -> dict:
    """SIGKILL the coordinator (by the PID of its ready file) as soon as its ``--state`` holds
    round ``round_`` (or later) and, with ``committed``, every agent publishes the policy version
    after that round's (they took its commit). Returns where the kill landed: the saved round, owed
    commits, iteration progress and rounds of the history, and the agents' versions after it."""
    pid = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)["pid"]

    def reached():
        assert coord.poll() is None, f"the coordinator exited ({coord.returncode}) before round {round_}'s commit " \
                                     f"phase:\n{_logs_tail(tmp_path)}"
        saved = _saved_mode_state(state)
        if saved is None or saved["round"] < round_:
            return None
        if committed and any(v["policy"] != round_ + 1 for v in _agent_versions(tmp_path, lg, ids).values()):
            return None
        return saved

    saved = wait_until(reached, timeout, f"a saved state of round {round_}" + (" and its commits" if committed else ""))
    os.kill(pid, signal.SIGKILL)
    coord.wait(timeout=30)
    time.sleep(0.5)  # a commit pushed just before the kill would be published by now
    return {"round": saved["round"], "owed": saved["owed"], "progress": saved["progress"],
            "rounds": [r["round"] for r in saved["history"]], "agents": _agent_versions(tmp_path, lg, ids)}


def _logs_tail(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("coord*.log")))


#: Where the coordinator is SIGKILLed, in turn: (round, after its commits were taken). Round 2:
#: the decision on disk, no commit pushed; round 3: the commits taken, the iteration's end not yet
#: saved; round 4, the last: no commit pushed and no later round to settle it but the restart's.
KILLS = [(2, False), (3, True), (4, False)]


@pytest.mark.slow  # about 50 s on the 2 shared cores
@pytest.mark.skipif(not _strace_traces(), reason="strace (the slow rename that lands the kill) is missing or may not "
                                                  "trace here")
def test_a_coordinator_sigkilled_in_commit_phases_resumes_to_the_embedded_rounds(tmp_path):
    """Real processes (referee, agents m0 and m1 with rule matrl, coordinator with ``--state``),
    4 rounds; the coordinator is SIGKILLed (by PID) in three commit phases (:data:`KILLS`), each
    time restarted with the same arguments:

    - before any commit push (rounds 2 and 4): the coordinator's renames return 2 s late
      (:func:`_renames_delayed`), so it is held right after the decision's rename; the agents hold
      the round prepared at the round's policy version, and the restart must re-send the commits
      (in round 4, the last, only the restart's settling can);
    - after the commits (round 3): the renames begin 2 s late, so it is held before the file
      saying the iteration ended replaces the one saying the commits are owed; the agents already
      published the next policy version, and the restart must not commit again.

    The last coordinator exits 0 and its rounds (numbered 1 to 4, once each), Nash weights,
    meta-games and final parameters equal the embedded ``run_sampled_matrl`` of 4 rounds (1e-6),
    with no commit owed."""
    ids, rounds, stall = ["m0", "m1"], 4, 2.0
    state = tmp_path / "coord.state"
    extra = ("--state", str(state), "--timeout", "10")

    def slow_renames(k: int, committed: bool) -> list[str]:
        return _renames_delayed("enter" if committed else "exit", stall, tmp_path / f"strace{k}.txt")

    lg, coord = _league(tmp_path, 2, ids, [0.5, 1.0], rounds, *extra, prefix=slow_renames(1, KILLS[0][1]))
    landed = []
    try:
        for k, (round_, committed) in enumerate(KILLS, start=1):
            if k > 1:
                (tmp_path / "coord.ready.json").unlink()
                coord = lg.procs["coordinator"] = spawn(_coordinator_args(tmp_path, lg, ids, rounds, *extra),
                                                        tmp_path / f"coord{k}.log", slow_renames(k, committed))
            landed.append(_kill_in_commit_phase(tmp_path, lg, coord, state, ids, round_, committed))
        (tmp_path / "coord.ready.json").unlink()
        coord = lg.procs["coordinator"] = spawn(_coordinator_args(tmp_path, lg, ids, rounds, *extra),
                                                tmp_path / f"coord{len(KILLS) + 1}.log")
        assert coord.wait(timeout=180) == 0, _logs_tail(tmp_path)
        final_versions = _agent_versions(tmp_path, lg, ids)
    finally:
        lg.stop()
    for (round_, committed), kill in zip(KILLS, landed):
        print(f"killed in round {round_}, {'after the commits' if committed else 'before any commit push'}: saved "
              f"round {kill['round']}, owed {kill['owed']}, progress {kill['progress']}, rounds {kill['rounds']}; "
              f"agents after the kill {kill['agents']}")
    result = json.loads((tmp_path / "coord.json").read_text())
    print(f"rounds {[r['round'] for r in result['rounds']]}, iterations {[i['iteration'] for i in result['iterations']]}, "
          f"owed {result['owed_commits']}; agents at the end {final_versions}")
    # where each kill landed: the decision on disk with its commits owed, none pushed or all taken
    for (round_, committed), kill in zip(KILLS, landed):
        assert kill == {"round": round_, "owed": {a: [round_, round_] for a in ids}, "progress": [1, 1, 0],
                        "rounds": list(range(1, round_ + 1)),
                        "agents": {a: {"policy": round_ + committed, "prepared": round_,
                                       "commit": round_ - 1 + committed} for a in ids}}, (round_, committed)
    # the run: every round once, no commit owed, the embedded run's numbers
    assert result["state"] == "done" and not result["owed_commits"]
    assert [r["round"] for r in result["rounds"]] == [1, 2, 3, 4]
    assert [i["iteration"] for i in result["iterations"]] == [1, 2, 3, 4]
    assert final_versions == {a: {"policy": 5, "prepared": 4, "commit": 4} for a in ids}
    for k, (round_, _) in enumerate(KILLS, start=2):  # each restart took the killed round's commits
        text = (tmp_path / f"coord{k}.log").read_text()
        assert "resumed from" in text and f"took round {round_}'s commit late" in text, _logs_tail(tmp_path)
    assert not any("Traceback" in p.read_text() for p in tmp_path.glob("*.log")), _logs_tail(tmp_path)
    embedded, history = _embedded(tmp_path, ids, 2, rounds)
    for a in ids:
        np.testing.assert_allclose(np.array(result["params"][a]["logits"]), embedded[a]["logits"].numpy(),
                                   atol=1e-6, rtol=0, err_msg=a)
        assert not torch.allclose(embedded[a]["logits"], torch.zeros_like(embedded[a]["logits"]))  # it learned
    for key in ("weights", "metagame"):
        np.testing.assert_allclose(np.array([r[key] for r in result["rounds"]]), np.array([h[key] for h in history]),
                                   atol=1e-6, rtol=0, err_msg=key)


@pytest.mark.slow  # about 45 s
@needs_prometheus
def test_the_dashboards_matrl_panels_have_data_on_a_real_prometheus(tmp_path):
    """Debian's Prometheus scrapes a matrl coordinator (labelled ``league`` as the project's
    scrape config labels its jobs) while it runs rounds; every query of every MATRL panel of the
    Grafana dashboard, expanded as Grafana sends it (All variables, ``$__rate_interval``),
    returns data."""
    lg, coord = _league(tmp_path, 2, ["m0", "m1"], [0.5], 2000)
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        target = ready["metrics"].split("//", 1)[1].split("/", 1)[0]
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: matrl-coordinator\n    static_configs:\n"
            f"      - targets: [\"{target}\"]\n        labels:\n          league: matrl\n")
        lg.procs["prometheus"] = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        every = {"__rate_interval": rate_interval(), **{n: v for n, (_, _, v) in dashboard_variables().items()}}
        pending = {(title, grafana_expand(expr, every)) for title, expr in dashboard_queries() if "league_matrl_" in expr}
        assert {t for t, _ in pending} >= {"MATRL Nash weights", "MATRL meta-game values", "MATRL meta-game solve time",
                                           "MATRL rounds"}
        deadline = time.monotonic() + 180
        while pending:
            assert coord.poll() is None, (tmp_path / "coord.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"MATRL panels without data: {sorted(pending)}"
            for title, expr in sorted(pending):
                try:
                    if has_data(promql(base, expr)):
                        pending.discard((title, expr))
                except OSError:  # Prometheus not up yet
                    break
            time.sleep(1.0)
    finally:
        lg.stop()


def test_a_mixture_push_is_checked_before_it_is_applied():
    """``matrl-mixture`` pushes: the Nash weight in [0, 1], the round, step size and clip in their
    ranges, the log-ratio finite and shaped like the agent's round; ``matrl-trust``: ``kl_coef``
    >= 0 and 1 to 100 inner steps. Nothing else is accepted."""
    from agents.matrl import MIXTURE, mixture_message
    from agents.params import ParameterStore
    from services.limits import check_pushed_range
    from services.wire import WireError

    ok = mixture_message(3, 0.25, torch.full((1, 8, 3), 1e6), 0.8, 0.5)
    check_pushed_range(MIXTURE, ok)
    for field, value, bad in [("nash_weight", 1.5, "nash_weight holds 1.5"), ("br_lr", -0.1, "br_lr holds -0.1"),
                              ("clip", 1e9, r"clip holds 1e\+09")]:
        message = dict(ok, **{field: torch.tensor([value])})
        with pytest.raises(WireError, match=bad):
            check_pushed_range(MIXTURE, message)
    with pytest.raises(WireError, match="round holds -1"):
        check_pushed_range(MIXTURE, dict(ok, round=torch.tensor([-1])))
    from agents.matrl import TRUST, trust_message

    check_pushed_range(TRUST, trust_message(0.5, 2))
    with pytest.raises(WireError, match="trust_steps holds 0"):
        check_pushed_range(TRUST, trust_message(0.5, 0))
    with pytest.raises(WireError, match="kl_coef holds -1"):
        check_pushed_range(TRUST, trust_message(-1.0, 1))
    store = ParameterStore()
    store.set(MIXTURE, mixture_message(0, 0.0, torch.zeros(1, 8, 3), 0.0, 0.0))
    with pytest.raises(WireError):
        store.compare_and_set(MIXTURE, 1, mixture_message(3, 0.5, torch.zeros(1, 8, 4), 0.8, 0.5))  # another round's K, H
    with pytest.raises(WireError):
        store.compare_and_set(MIXTURE, 1, mixture_message(3, 0.5, torch.full((1, 8, 3), float("nan")), 0.8, 0.5))
    assert store.version(MIXTURE) == 1
    assert store.compare_and_set(MIXTURE, 1, ok) == 2


@pytest.mark.parametrize("league_file", ["league_matrl_rps3.toml", "league_matrl_compose.toml"])
def test_the_committed_matrl_league_and_its_matrl_config_agree(league_file):
    """configs/league_matrl_rps3.toml (and the compose file's matrl profile's
    configs/league_matrl_compose.toml) and configs/matrl/rps3.toml describe one run: the same
    game, K, H and discount, every agent with rule matrl and the config's trust-region step size."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    league = load_league_config(root / "configs" / league_file)
    cfg = load_matrl_config(str(root / "configs" / "matrl" / "rps3.toml"))
    r = league.referee
    assert (r.env, r.n_players, r.trajectories, r.horizon, r.gamma) == (cfg.env, cfg.n_players, cfg.trajectories,
                                                                        cfg.horizon, cfg.gamma)
    assert r.chains_by == "coordinator" and len(league.agents) % cfg.n_players == 0
    for i, a in enumerate(league.agents):
        assert a.rule == "matrl" and a.lr[0] == cfg.seat_lr(i % cfg.n_players)
