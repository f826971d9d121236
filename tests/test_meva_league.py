"""MeVa in the league (docs/meva.md, "League mode"), with real processes on 127.0.0.1:
differentiable-game agents (``league diff-agent``) following naive, LOLA and MeVa, the rounds
played by ``league coordinator --mode diffgame`` and MeVa's model trained and served by
``league coordinator --mode meva``. The league ends with the embedded run's parameters
(``league.meva.league.run_embedded``, one code path) to 1e-6; a MeVa agent whose model does
not arrive (its coordinator killed) keeps stepping with its last model, says so in its log
and counts it in its metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from agents.diffgame import DiffAgentConfig, DiffGameAgent
from league.meva.league import load_diff_league, pairings, run_embedded
from services import server as srv
from services.client import fetch_parameters
from services.coordinator import MODES, CoordinatorConfig
from services.gen.league.v1 import agent_pb2_grpc
from tests.league_procs import metric_value, metrics, spawn, stop, wait_json

pytestmark = pytest.mark.timeout(300)

CONFIG = """
game = "ipd"
rounds = {rounds}
seed = 0
train_steps = 2

[meva]
formulation = "U"
n_quantiles = 4
rho = 0.5
lr = 1e-2
seed = 0

[meva.net]
hidden = 16
tanh_head = true
"""
AGENT = '\n[[agents]]\nid = "{id}"\nrule = "{rule}"\ninit_seed = {seed}\n{extra}\n'


def league_toml(rounds: int, agents: list[tuple[str, str, str]]) -> str:
    return CONFIG.format(rounds=rounds) + "".join(
        AGENT.format(id=a, rule=rule, seed=i + 1, extra=extra) for i, (a, rule, extra) in enumerate(agents))


class DiffLeague:
    """Agents and the two coordinators of a differentiable league, started with the CLI."""

    def __init__(self, tmp: Path, text: str, model_wait: float = 60.0) -> None:
        self.tmp, self.config = tmp, tmp / "league.toml"
        self.config.write_text(text)
        self.cfg = load_diff_league(self.config)
        self.procs: dict[str, subprocess.Popen] = {}
        for a in self.cfg.agents:
            self.procs[a.id] = spawn(["diff-agent", "--config", str(self.config), "--id", a.id, "--insecure",
                                      "--model-wait", str(model_wait), "--ready-file", str(tmp / f"{a.id}.json")],
                                     tmp / f"{a.id}.log")
        self.info = {a.id: wait_json(tmp / f"{a.id}.json", self.procs[a.id], 120) for a in self.cfg.agents}
        self.agents_flag = ",".join(f"{a}={i['address']}" for a, i in self.info.items())

    def coordinator(self, mode: str, iterations: int) -> subprocess.Popen:
        self.procs[mode] = spawn(["coordinator", "--mode", mode, "--experiment", str(self.config), "--agents",
                                  self.agents_flag, "--iterations", str(iterations), "--insecure",
                                  "--results", str(self.tmp / f"{mode}.results.json"),
                                  "--ready-file", str(self.tmp / f"{mode}.json")], self.tmp / f"{mode}.log")
        return self.procs[mode]

    def x(self, agent: str) -> tuple[int, torch.Tensor]:
        with srv.channel(self.info[agent]["address"]) as ch:
            got = fetch_parameters(agent_pb2_grpc.AgentStub(ch), "x", timeout=10)
        return got.version, got.params["x"]

    def finish(self, mode: str, timeout: float = 240) -> None:
        proc = self.procs[mode]
        assert proc.wait(timeout=timeout) == 0, (self.tmp / f"{mode}.log").read_text()[-3000:]

    def stop(self) -> None:
        stop(list(self.procs.values()))


def run_league(tmp: Path, text: str, rounds: int) -> tuple[DiffLeague, dict]:
    league = DiffLeague(tmp, text)
    try:
        league.coordinator("meva", rounds)
        league.coordinator("diffgame", rounds)
        league.finish("diffgame")
        league.finish("meva")
        return league, {a.id: league.x(a.id) for a in league.cfg.agents}
    finally:
        league.stop()


def rounds_played(cfg, agent: str, rounds: int) -> int:
    return sum(agent in m for r in range(rounds) for m in pairings([a.id for a in cfg.agents], 2, cfg.seed, r))


def assert_same_as_embedded(league: DiffLeague, got: dict, rounds: int) -> None:
    embedded = run_embedded(league.cfg)
    worst = max(float((got[a][1] - embedded.x[a]).abs().max()) for a in embedded.x)
    moved = max(float((embedded.x[a] - embedded.history[0][a]).abs().max()) for a in embedded.x)
    print(f"largest |league - embedded| = {worst:.3g} (largest move since round 0: {moved:.3g})")
    assert moved > 1e-3  # the agents learned something the comparison can see
    assert worst <= 1e-6
    for a in embedded.x:
        played = rounds_played(league.cfg, a, rounds)
        assert got[a][0] == 1 + played, f"{a} published {got[a][0] - 1} steps, played {played} rounds"
    results = json.loads((league.tmp / "meva.results.json").read_text())
    assert results["model_version"] == 1 + rounds and results["state"] == "done"


@pytest.mark.slow
def test_naive_and_meva_agents_in_processes_match_the_embedded_run(tmp_path):
    """One naive and one MeVa agent, three rounds (about 60 s on the loaded 2-core machine;
    the default suite runs the same servers and modes in one process, below)."""
    rounds = 3
    text = league_toml(rounds, [("n", "naive", ""), ("m", "meva", "gamma = 0.9")])
    league, got = run_league(tmp_path, text, rounds)
    assert_same_as_embedded(league, got, rounds)


@pytest.mark.slow
def test_naive_lola_and_meva_agents_in_one_league_match_the_embedded_run(tmp_path):
    """Naive, LOLA and two MeVa agents (gammas 0.9 and 0.5), paired at random, four rounds."""
    rounds = 4
    text = league_toml(rounds, [("n", "naive", ""), ("l", "lola", "alpha = 1.0"), ("ma", "meva", "gamma = 0.9"),
                                ("mb", "meva", "gamma = 0.5")])
    league, got = run_league(tmp_path, text, rounds)
    assert_same_as_embedded(league, got, rounds)


# -- the same agents, modes and wire inside the test process (fast: the default suite) --------

class InProcessDiffLeague:
    """Every agent a real ``DiffGameAgent`` gRPC server on 127.0.0.1 in this process; the
    ``diffgame`` and ``meva`` modes built from ``MODES`` and driven round by round."""

    def __init__(self, text: str, tmp: Path, model_wait: float = 30.0, creds: dict | None = None) -> None:
        (tmp / "league.toml").write_text(text)
        self.cfg = load_diff_league(tmp / "league.toml")
        creds = creds or {}
        self.agents = {a.id: DiffGameAgent(self.cfg, a.id, DiffAgentConfig(model_wait=model_wait,
                                                                           credentials=creds.get(a.id)))
                       for a in self.cfg.agents}
        for agent in self.agents.values():
            agent.start()
        cc = CoordinatorConfig(referee="", meta_agent="", personas=[], timeout=30.0,
                               credentials=creds.get("coordinator"),
                               agents={a: f"127.0.0.1:{agent.port}" for a, agent in self.agents.items()})
        self.rounds = MODES["diffgame"](self.cfg, "rounds", 0, cc)
        self.meva = MODES["meva"](self.cfg, "meva", 0, cc)
        self.rounds.wait_for_members()
        self.meva.wait_for_members()

    def x(self) -> dict:
        """Every agent's (version, parameters ``[1, d]``) of kind ``x``."""
        out = {}
        for a, agent in self.agents.items():
            version, params = agent.store.snapshot("x")
            out[a] = (version, params["x"])
        return out

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()


FOUR = [("n", "naive", ""), ("l", "lola", "alpha = 1.0"), ("ma", "meva", "gamma = 0.9"),
        ("mb", "meva", "gamma = 0.5")]


def test_league_over_the_wire_matches_the_embedded_run(tmp_path):
    """Naive, LOLA and two MeVa agents over gRPC, paired at random for three rounds, with the
    model trained and served between rounds: the embedded run's parameters to 1e-6."""
    rounds = 3
    lg = InProcessDiffLeague(league_toml(rounds, FOUR), tmp_path)
    try:
        for _ in range(rounds):
            lg.rounds.iterate()
            lg.meva.iterate()
        got = lg.x()
    finally:
        lg.stop()
    embedded = run_embedded(lg.cfg)
    worst = max(float((got[a][1] - embedded.x[a]).abs().max()) for a in embedded.x)
    moved = max(float((embedded.x[a] - embedded.history[0][a]).abs().max()) for a in embedded.x)
    print(f"largest |league - embedded| = {worst:.3g} (largest move since round 0: {moved:.3g})")
    assert moved > 1e-3 and worst <= 1e-6
    assert lg.meva.learner.version == 1 + rounds
    for a in embedded.x:
        assert got[a][0] == 1 + rounds_played(lg.cfg, a, rounds)


def test_a_meva_agent_without_its_next_model_steps_with_its_last_one(tmp_path):
    """The model stops arriving after round 0 (the meva mode no longer runs): the MeVa agent
    steps with version 2 in round 1 as scheduled, then in rounds 2 and 3 waits ``model_wait``,
    steps with version 2, logs it and counts it each time; its parameters are the embedded
    run's with the model schedule ``min(r + 1, 2)``."""
    rounds = 4
    lg = InProcessDiffLeague(league_toml(rounds, [("n", "naive", ""), ("m", "meva", "gamma = 0.9")]), tmp_path,
                             model_wait=0.2)
    try:
        lg.rounds.iterate()
        lg.meva.iterate()  # version 2, then no more
        for _ in range(rounds - 1):
            lg.rounds.iterate()
        got = lg.x()
        text = metrics(f"http://127.0.0.1:{lg.agents['m'].metrics_port}/metrics")
    finally:
        lg.stop()
    assert metric_value(text, "league_meva_model_fetch_failures_total", agent_id="m") == rounds - 2
    assert metric_value(text, "league_meva_model_version", agent_id="m") == 2
    assert got["m"][0] == 1 + rounds  # it kept stepping
    frozen = run_embedded(lg.cfg, model_version=lambda r: min(r + 1, 2))
    fresh = run_embedded(lg.cfg)
    assert float((got["m"][1] - frozen.x["m"]).abs().max()) <= 1e-6
    assert float((got["m"][1] - fresh.x["m"]).abs().max()) > 1e-6  # the fallback is visible in the numbers


@pytest.mark.slow
def test_killing_the_meva_coordinator_leaves_meva_agents_stepping_with_their_last_model(tmp_path):
    """SIGKILL of the ``meva`` coordinator process (by its PID) after it has served model
    version 2: the rounds go on, the MeVa agent steps every round with the last version it
    received, logs one line per round without its model, counts them in
    ``league_meva_model_fetch_failures_total``, and ends with the embedded run's parameters
    under that model schedule."""
    rounds = 5
    league = DiffLeague(tmp_path, league_toml(rounds, [("n", "naive", ""), ("m", "meva", "gamma = 0.9")]),
                        model_wait=8.0)
    try:
        coordinator = league.coordinator("meva", rounds)
        wait_json(tmp_path / "meva.json", coordinator, 120)
        url = league.info["m"]["metrics"]
        league.coordinator("diffgame", rounds)
        deadline = time.monotonic() + 120
        while (metric_value(metrics(url), "league_meva_model_version", agent_id="m") or 0) < 2:
            assert time.monotonic() < deadline, "model version 2 was never used"
            time.sleep(0.05)
        os.kill(coordinator.pid, signal.SIGKILL)
        coordinator.wait(timeout=10)
        league.finish("diffgame", timeout=300)
        text = metrics(url)
        got = league.x("m")
    finally:
        league.stop()
    last = int(metric_value(text, "league_meva_model_version", agent_id="m"))
    failures = metric_value(text, "league_meva_model_fetch_failures_total", agent_id="m")
    log_lines = [line for line in (tmp_path / "m.log").read_text().splitlines() if "did not arrive" in line]
    print(f"last model version {last}, failures {failures}, log: {log_lines[:1]}")
    assert 2 <= last < rounds and failures == rounds - last == len(log_lines)
    assert got[0] == 1 + rounds
    frozen = run_embedded(league.cfg, model_version=lambda r: min(r + 1, last))
    assert float((got[1] - frozen.x["m"]).abs().max()) <= 1e-6


def test_a_secured_league_plays_and_an_agent_cannot_push_a_model_into_a_meva_agent(tmp_path):
    """Mutual TLS: the coordinators (role coordinator) play a round and serve a model with
    the access table as it is; an agent's credentials pushing ``meva-model`` into a MeVa
    agent are refused (PERMISSION_DENIED) and change nothing."""
    import grpc

    from services import pki
    from services.client import push_parameters
    from tests.league_procs import league_credentials

    dirs = league_credentials(tmp_path, ["n", "m"], coordinator=True)
    creds = {name: pki.load_credentials(d) for name, d in dirs.items()}
    lg = InProcessDiffLeague(league_toml(1, [("n", "naive", ""), ("m", "meva", "gamma = 0.9")]), tmp_path, creds=creds)
    try:
        lg.rounds.iterate()
        lg.meva.iterate()
        assert lg.agents["m"].store.version("meva-model") == 2 and lg.agents["n"].store.version("x") == 2
        version, model = lg.agents["m"].store.snapshot("meva-model")
        with srv.channel(f"127.0.0.1:{lg.agents['m'].port}", creds["n"]) as ch:
            with pytest.raises(grpc.RpcError) as err:
                push_parameters(agent_pb2_grpc.AgentStub(ch), "meva-model", {k: v + 1 for k, v in model.items()},
                                version, timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
        assert lg.agents["m"].store.version("meva-model") == version
    finally:
        lg.stop()


def test_docs_hold_the_kinds_table_as_the_code_has_it():
    from services import auth

    text = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    block = text.split("<!-- kinds-table:begin -->\n", 1)[1].split("\n<!-- kinds-table:end -->", 1)[0]
    assert block == auth.render_kinds_table(), "docs/security.md is stale: paste `python -m services.auth kinds`"
    assert {"x", "joint", "trajectory", "meva-model"} <= set(auth.KINDS)


@pytest.mark.parametrize("bad", ["seat", "nan", "shape", "round", "names"])
def test_a_malformed_joint_push_is_refused_and_changes_nothing(tmp_path, bad):
    """A pushed joint point out of the game (a seat it does not have, NaN, the wrong shape, a
    negative round, extra tensors) answers INVALID_ARGUMENT before it is applied: the agent
    neither steps nor stores it, and a good push afterwards steps as usual."""
    import grpc

    from services.client import push_parameters

    agent = DiffGameAgent(load_diff_league_text(tmp_path, league_toml(1, [("n", "naive", "")])), "n", DiffAgentConfig())
    agent.start()
    try:
        good = {"joint": torch.zeros(1, 2, 5), "seat": torch.tensor([0]), "round": torch.tensor([0])}
        planted = dict(good)
        if bad == "seat":
            planted["seat"] = torch.tensor([2])
        elif bad == "nan":
            planted["joint"] = torch.full((1, 2, 5), float("nan"))
        elif bad == "shape":
            planted["joint"] = torch.zeros(1, 3, 5)
        elif bad == "round":
            planted["round"] = torch.tensor([-1])
        else:
            planted["extra"] = torch.zeros(1)
        with srv.channel(f"127.0.0.1:{agent.port}") as ch:
            stub = agent_pb2_grpc.AgentStub(ch)
            joint_version = agent.store.version("joint")
            with pytest.raises(grpc.RpcError) as err:
                push_parameters(stub, "joint", planted, joint_version, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
            assert agent.store.version("joint") == joint_version and agent.store.version("x") == 1
            push_parameters(stub, "joint", good, joint_version, timeout=10)
            assert agent.store.version("x") == 2
    finally:
        agent.stop()


def load_diff_league_text(tmp: Path, text: str):
    (tmp / "league.toml").write_text(text)
    return load_diff_league(tmp / "league.toml")
