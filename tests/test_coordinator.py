"""The coordinator runs Algorithm 1 against live processes: one meta-training iteration
through the league gives the embedded iteration's meta-parameters and learning rates, and
an agent whose learning differs from the replica aborts the round with a clear error."""

import json
import os
import signal
import time
from pathlib import Path

import grpc

import numpy as np
import pytest
import torch

from league.config import load_config
from league.experiment import train_one
from services import server as srv
from services.client import fetch_parameters
from services.gen.league.v1 import agent_pb2
from services.gen.league.v1 import agent_pb2_grpc
from services.pki import load_credentials
from services.processes import referee_status
from tests.league_procs import (ROOT, league_credentials, metric_value, metrics, promtool_check_metrics, spawn,
                                start_league, wait_json, wait_until)


OVERRIDES = ['methods=["meta-mapg"]', "seeds=[0]", "chain.trajectories=4", "chain.horizon=10", "chain.length=2",
             "train.meta_batch=2", "train.iterations=1", "train.validate_every=1", "agent.hidden=8"]

def league_toml(persona_lrs: list[float], env: str = "ipd", n_players: int = 2, gamma: float | None = None) -> str:
    """A coordinator-driven league: the LSTM meta-agent and one persona process per entry of
    ``persona_lrs`` (ids p0, p1, ...), the referee at the tests' small shapes."""
    extra = f"n_players = {n_players}\n" + (f"gamma = {gamma}\n" if gamma is not None else "")
    personas = "".join(f'\n[[agents]]\nid = "p{i}"\nrole = "persona"\nlr = [{lr}]\n' for i, lr in enumerate(persona_lrs))
    return (f'name = "coordinated"\n[referee]\nenv = "{env}"\n{extra}trajectories = 4\nhorizon = 10\n'
            'chain_length = 2\nrounds = 0\nchains_by = "coordinator"\nfetch_timeout = 20.0\n\n'
            '[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm"\nhidden = 8\n' + personas)


def _assert_same_meta_parameters(result: dict, embedded) -> None:
    """The coordinator's results hold the embedded run's initial policy and learning rates (1e-5)."""
    for name, value in embedded.policy.items():
        np.testing.assert_allclose(np.array(result["policy"][name]), value.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.array(result["lr"]), embedded.lr.numpy(), atol=1e-5, rtol=0)


def _finished(results: Path) -> bool:
    """The coordinator's results file says it is done or aborted (it is rewritten, with state
    ``training``, after every iteration before that)."""
    return results.exists() and json.loads(results.read_text())["state"] not in ("waiting", "training")


def _coordinator_args(tmp_path, ref, creds, overrides, iterations: int = 1, *extra: str,
                      personas: tuple[str, ...] = ("p0", "p1"), mode: str = "meta-mapg") -> list[str]:
    return ["coordinator", "--join", ref["address"], "--experiment", str(tmp_path / "experiment.toml"),
            *sum((["--set", o] for o in overrides), []), "--meta", "meta", "--personas", ",".join(personas),
            "--mode", mode, "--iterations", str(iterations), "--results", str(tmp_path / "coord.json"),
            "--ready-file", str(tmp_path / "coord.ready.json"), "--credentials", str(creds["coordinator"]), *extra]


def _league(tmp_path, persona_lr: float, overrides=OVERRIDES, iterations: int = 1, *extra: str,
            league: str | None = None, experiment_config: str = "ipd_quick.toml",
            personas: tuple[str, ...] = ("p0", "p1"), mode: str = "meta-mapg", persona_access: str = "direct"):
    """A secured league of a meta-agent and its personas (``persona_access``: their
    ``--peer-access``), and a coordinator in ``mode`` driving it."""
    (tmp_path / "experiment.toml").write_text((ROOT / "configs" / experiment_config).read_text())
    ids = ("meta", *personas)
    creds = league_credentials(tmp_path, list(ids), coordinator=True)
    lg = start_league(tmp_path, league if league is not None else league_toml([persona_lr, 1.0]), ids, creds,
                      agent_extra={a: ["--peer-access", persona_access] for a in personas})
    coord = spawn(_coordinator_args(tmp_path, lg.ref, creds, overrides, iterations, *extra, personas=personas,
                                    mode=mode), tmp_path / "coord.log")
    lg.procs["coordinator"] = coord
    return lg, coord


@pytest.mark.parametrize("estimator", ["dice", pytest.param("score", marks=pytest.mark.slow)])  # score: the same
# coordinator path with another estimator of the library (tests/test_estimators.py covers it embedded)
def test_one_coordinated_iteration_equals_the_embedded_iteration(tmp_path, estimator):
    """The coordinator computes the meta-gradient with the library's estimator code: the
    same numbers as embedded for the default form and for the score form (plain inner steps)."""
    overrides = [*OVERRIDES, f"train.estimator={estimator}"]
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", overrides)
    embedded = train_one(cfg, "meta-mapg", 0).final
    lg, coord = _league(tmp_path, 1.0, overrides, 1, "--linger", "3")
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        wait_until(lambda: _finished(tmp_path / "coord.json"), 240, "the coordinator's final results")
        text = metrics(ready["metrics"])  # scraped while it lingers
        promtool_check_metrics(text, "the coordinator")
        assert metric_value(text, "league_coordinator_iterations_total") == 1
        assert metric_value(text, "league_coordinator_iteration_seconds_count") == 1  # a histogram
        assert metric_value(text, "league_meta_learning_rate", step="1") is not None
        assert coord.wait(timeout=60) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done"
        _assert_same_meta_parameters(result, embedded)
        assert not torch.allclose(embedded.lr, torch.full_like(embedded.lr, cfg.agent.inner_lr))  # it moved
        # the meta-agent process now serves the new initial policy and learning rates
        meta = json.loads((tmp_path / "meta.json").read_text())
        with srv.channel(meta["address"], load_credentials(lg.creds["coordinator"])) as ch:
            served = fetch_parameters(agent_pb2_grpc.AgentStub(ch), "lr").params["lr"]
        np.testing.assert_allclose(served.numpy(), embedded.lr.numpy(), atol=1e-5, rtol=0)
    finally:
        lg.stop()


def test_a_peer_whose_update_differs_from_the_replica_aborts_the_round(tmp_path):
    lg, coord = _league(tmp_path, 0.5)  # p0 learns at 0.5; the coordinator replicates 1.0
    try:
        assert coord.wait(timeout=240) != 0
        log = (tmp_path / "coord.log").read_text()
        assert "p0's published step-1 update" in log and "differs from the coordinator's replica" in log
        assert "aborted" in json.loads((tmp_path / "coord.json").read_text())["state"]
    finally:
        lg.stop()


@pytest.mark.slow  # about 2 minutes on the 2-core machine
def test_a_coordinator_killed_mid_iteration_resumes_to_the_uninterrupted_numbers(tmp_path):
    """SIGKILL of the coordinator during iteration 2 of 3 (after that iteration's first chain
    step was played), then a restart with the same arguments: it resumes from its --state at
    iteration 2, the referee voids and counts the abandoned chains, and the final policy and
    learning rates are the uninterrupted run's (the embedded train_one's, equal to a league
    run's by the test above)."""
    overrides = [*OVERRIDES[:-3], "train.iterations=3", "train.validate_every=3", "agent.hidden=8"]
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", overrides)
    embedded = train_one(cfg, "meta-mapg", 0).final
    state = tmp_path / "coord.state"
    lg, coord = _league(tmp_path, 1.0, overrides, 3, "--state", str(state))
    creds, referee = lg.creds, lg.ref
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)

        def iterations_done():
            return metric_value(metrics(ready["metrics"]), "league_coordinator_iterations_total")

        wait_until(lambda: iterations_done() == 1, 240, "the coordinator's first iteration")
        # each chain step is one PlayMatches of B=2 chains x K=4 episodes x H=10 steps; iteration 1
        # played steps 0..L=2. Kill as soon as iteration 2's first step is played: its chains are open
        per_step, steps = 2 * 4 * 10, lambda: metric_value(metrics(referee["metrics"]), "league_env_steps_total")
        deadline = time.monotonic() + 60
        while steps() <= 3 * per_step:
            assert time.monotonic() < deadline, "iteration 2's first chain step was not played within 60 s"
            time.sleep(0.01)
        os.kill(coord.pid, signal.SIGKILL)
        coord.wait(timeout=10)
        played = steps() / per_step - 3  # chain steps of iteration 2 played before the kill
        assert torch.load(state, weights_only=True)["mode_state"]["iteration"] == 1  # killed mid-iteration 2
        assert json.loads((tmp_path / "coord.json").read_text())["state"] == "training"
        (tmp_path / "coord.ready.json").unlink()
        coord = spawn(_coordinator_args(tmp_path, referee, creds, overrides, 3, "--state", str(state)),
                      tmp_path / "coord2.log")
        lg.procs["coordinator"] = coord
        assert coord.wait(timeout=300) == 0, (tmp_path / "coord2.log").read_text()[-3000:]
        assert "resumed from" in (tmp_path / "coord2.log").read_text()
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done"
        assert [r["iteration"] for r in result["iterations"]] == [1, 2, 3]  # iteration 1's record survived
        _assert_same_meta_parameters(result, embedded)
        # the killed iteration's two chains (one per persona), open unless the kill came after their
        # last step (L=2) was played, were voided and counted
        status = referee_status(referee["address"], credentials=load_credentials(creds["admin"]))
        log = (tmp_path / "referee.log").read_text()
        assert "Traceback" not in log
        if played < 3:
            assert status.aborted_matches == 2, played
            assert "voided chain it2.0" in log and "voided chain it2.1" in log
        else:
            assert status.aborted_matches == 0
    finally:
        lg.stop()


def test_opponent_modeling_mode_equals_embedded_and_reads_no_persona(tmp_path):
    """Algorithms 3 and 4 through the league: one ``opponent-modeling`` iteration gives the
    embedded ``meta-mapg-om`` iteration's meta-parameters, the personas' own metrics count
    zero parameter reads by the coordinator (and reads by the referee, which plays them),
    and a read attempted anyway with the coordinator's certificate is refused."""
    overrides = [o for o in OVERRIDES if not o.startswith("methods=")] + ['methods=["meta-mapg-om"]']
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", overrides)
    embedded = train_one(cfg, "meta-mapg-om", 0).final
    lg, coord = _league(tmp_path, 1.0, overrides, 1, "--linger", "3", mode="opponent-modeling",
                        persona_access="inferred")
    creds = lg.creds
    infos = {a: json.loads((tmp_path / f"{a}.json").read_text()) for a in ("meta", "p0", "p1")}
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord)
        wait_until(lambda: _finished(tmp_path / "coord.json"), 240, "the coordinator's final results")
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done", (tmp_path / "coord.log").read_text()[-3000:]
        assert result["mode"] == "opponent-modeling"
        coord_text = metrics(ready["metrics"])  # scraped while it lingers
        assert coord.wait(timeout=60) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        _assert_same_meta_parameters(result, embedded)
        # the model's error along the chain is a coordinator metric, measured from outside the gradient
        for step in ("0", "1", "2"):
            assert 0 <= metric_value(coord_text, "league_opponent_model_error", step=step, model="fit") <= 1
        assert result["iterations"][0]["om_fit_error_step0"] > 0
        # who read whom, counted by the read processes themselves
        def reads(text: str, caller: str) -> float:
            return metric_value(text, "league_rpc_authorised_total", grpc_method="GetParameters", caller=caller) or 0

        for persona in ("p0", "p1"):
            text = metrics(infos[persona]["metrics"])
            assert reads(text, "coordinator") == 0, f"the coordinator read {persona}'s parameters"
            assert reads(text, "referee") > 0  # the referee rolls the personas out
        assert reads(metrics(infos["meta"]["metrics"]), "coordinator") > 0  # it checks its own agent
        # a read attempted anyway is refused, counted, and changes nothing
        with srv.channel(infos["p0"]["address"], load_credentials(creds["coordinator"])) as ch:
            with pytest.raises(grpc.RpcError) as err:
                agent_pb2_grpc.AgentStub(ch).GetParameters(agent_pb2.GetParametersRequest(kind="policy"),
                                                           timeout=10).next()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        text = metrics(infos["p0"]["metrics"])
        assert metric_value(text, "league_rpc_refused_total", grpc_method="GetParameters", caller="coordinator",
                            grpc_code="PERMISSION_DENIED") == 1
        assert reads(text, "coordinator") == 0
        # nor does the coordinator learn a persona's learning rates from its description
        described = {}
        for role in ("coordinator", "referee"):
            with srv.channel(infos["p0"]["address"], load_credentials(creds[role])) as ch:
                described[role] = agent_pb2_grpc.AgentStub(ch).Describe(agent_pb2.DescribeRequest(), timeout=10)
        assert described["coordinator"].rule_config_json == "" and described["coordinator"].learning_rule == "pg"
        assert set(json.loads(described["referee"].rule_config_json)["lr"]) == {1.0}, described
    finally:
        lg.stop()


def test_each_mode_refuses_the_other_modes_methods():
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", OVERRIDES)
    from services.coordinator import MODES, CoordinatorConfig

    unused = CoordinatorConfig(referee="127.0.0.1:1", meta_agent="meta", personas=["p0"])
    with pytest.raises(ValueError, match="'meta-mapg-om' runs in mode 'opponent-modeling'"):
        MODES["meta-mapg"](cfg, "meta-mapg-om", 0, unused)
    with pytest.raises(ValueError, match="'meta-mapg' runs in mode 'meta-mapg'"):
        MODES["opponent-modeling"](cfg, "meta-mapg", 0, unused)


@pytest.mark.slow  # ~1.5 min: 5 processes; the 2-player tests above cover the same path by default
def test_a_coordinated_three_player_iteration_equals_the_embedded_iteration(tmp_path):
    """3-player RPS: 2 chains x 2 persona seats (p0, p1 | p2, p3), every seat's update checked
    against the replica at every step, and the same meta-parameters as embedded."""
    overrides = ['methods=["meta-mapg"]', "seeds=[0]", "chain.trajectories=4", "chain.horizon=10",
                 "chain.length=2", "train.meta_batch=2", "train.iterations=1", "train.validate_every=1",
                 "agent.hidden=8", "agent.peer_lr=1.0"]
    cfg = load_config(ROOT / "configs" / "rps3.toml", overrides)
    embedded = train_one(cfg, "meta-mapg", 0).final
    lg, coord = _league(tmp_path, 1.0, overrides, league=league_toml([1.0] * 4, "rps", 3, 0.9),
                        experiment_config="rps3.toml", personas=("p0", "p1", "p2", "p3"))
    assert_coordinated_run_equals_embedded(tmp_path, lg, coord, embedded, cfg.agent.inner_lr)


def assert_coordinated_run_equals_embedded(tmp_path, lg, coord, embedded, inner_lr: float, timeout: float = 240) -> None:
    """The coordinator exits 0, says ``done``, and holds the embedded run's meta-parameters,
    whose learning rates moved from ``inner_lr``; the league is stopped either way."""
    try:
        assert coord.wait(timeout=timeout) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done"
        _assert_same_meta_parameters(result, embedded)
        assert not torch.allclose(embedded.lr, torch.full_like(embedded.lr, inner_lr))  # it moved
    finally:
        lg.stop()
