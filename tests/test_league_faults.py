"""Real processes on 127.0.0.1: an agent killed with SIGKILL mid-round is voided and the
league goes on; restarted under the same id it resumes from its checkpoint; a new agent
attached to the running league is matched, learns, and shows up in the metrics."""

import json
import os
import signal

import pytest

from services.processes import referee_status
from services.pki import load_credentials
from tests.league_procs import (agent_toml, league_credentials, learners_toml, metric_value, metrics,
                                promtool_check_metrics, start_league, wait_until)

LEAGUE = """
name = "faults"
[referee]
env = "ipd"
trajectories = 8
horizon = 20
chain_length = 2
rounds = 0
seed = 1
lease_seconds = 2.0
fetch_timeout = 3.0
""" + agent_toml("meta", "meta", policy="lstm", hidden=16, init="random:0", lr=[0.1]) \
    + agent_toml("persona", "persona", init="persona:test:0") + learners_toml("l1", "l2", "l3")
AGENTS = ("meta", "persona", "l1", "l2", "l3")

_ADMIN = {}  # referee address -> the admin credentials of its (secured) league


def _status(address):
    return referee_status(address, credentials=_ADMIN[address])


def _members(address):
    return {m.agent_id: m for m in _status(address).members}


@pytest.fixture
def league(tmp_path):
    creds = league_credentials(tmp_path, [*AGENTS, "newcomer"])  # a secured league
    lg = start_league(tmp_path, LEAGUE, AGENTS, creds, wait_for=len(AGENTS))
    _ADMIN[lg.ref["address"]] = load_credentials(creds["admin"])
    yield lg.ref, lg.start_agent, lg.procs, tmp_path
    lg.stop()


def test_sigkill_voids_the_match_and_the_agent_resumes(league):
    ref, start_agent, procs, tmp = league
    addr = ref["address"]
    wait_until(lambda: _members(addr).get("l1") and _members(addr)["l1"].policy_version >= 3, 60, "l1 learning")
    before = _members(addr)["l1"].policy_version
    os.kill(procs["l1"].pid, signal.SIGKILL)
    procs["l1"].wait(timeout=10)
    rounds_at_kill = _status(addr).round
    # the league keeps running: rounds go on and the survivors keep learning
    wait_until(lambda: _status(addr).round >= rounds_at_kill + 3, 60, "rounds after the kill")
    survivors = _members(addr)
    assert survivors["l2"].policy_version > 1 and survivors["meta"].matches > 0
    # the match that needed the dead agent was voided, not played or hung
    wait_until(lambda: _status(addr).aborted_matches >= 1, 30, "the dead agent's match to be voided")
    # the dead agent's lease expires and it leaves the league (its matches were voided or skipped)
    wait_until(lambda: "l1" not in _members(addr), 30, "l1's lease to expire")
    # restarted under the same id: it resumes from its checkpoint, not from scratch
    (tmp / "l1.json").unlink()
    info = start_agent("l1", "--config", str(tmp / "league.toml"))
    assert info["resumed"] is True
    m = wait_until(lambda: _members(addr).get("l1"), 30, "l1 to rejoin")
    assert m.policy_version >= before - 1  # the checkpoint holds its last published update
    wait_until(lambda: _members(addr)["l1"].policy_version > before, 60, "l1 to learn again after resuming")


def test_attached_agent_is_matched_learns_and_is_in_the_metrics(league):
    ref, start_agent, procs, tmp = league
    addr = ref["address"]
    wait_until(lambda: _status(addr).round >= 2, 60, "the league to run")
    info = start_agent("newcomer", "--role", "learner", "--policy", "tabular", "--init", "random:9", "--lr", "0.5")
    assert info["resumed"] is False
    m = wait_until(lambda: (_members(addr).get("newcomer") and _members(addr)["newcomer"].policy_version >= 3
                       and _members(addr)["newcomer"]), 60, "the newcomer to be matched and learn")
    assert m.matches >= 2 and m.episodes > 0
    agent_text = metrics(info["metrics"])
    assert metric_value(agent_text, "league_agent_updates_total", agent_id="newcomer") >= 2
    assert metric_value(agent_text, "league_agent_policy_version", agent_id="newcomer") >= 3
    referee_text = metrics(ref["metrics"])
    assert metric_value(referee_text, "league_episodes_total", agent_id="newcomer", role="learner") > 0
    assert metric_value(referee_text, "league_mean_step_reward", agent_id="newcomer") is not None


REFEREE_METRICS = ["league_rounds_total", "league_env_steps_total", "league_aborted_matches_total",
                   "league_episodes_total", "league_mean_step_reward", "league_policy_version", "league_members",
                   "league_parameter_fetch_seconds_count", "league_chain_mean_step_reward",
                   "league_grpc_server_handled_total", "league_grpc_server_handling_seconds_count"]
AGENT_METRICS = ["league_agent_episodes_total", "league_agent_updates_total", "league_agent_mean_step_reward",
                 "league_agent_policy_version", "league_agent_learning_rate",
                 "league_agent_last_update_timestamp_seconds", "league_agent_parameter_fetch_seconds_count",
                 "league_grpc_server_handled_total", "league_grpc_server_handling_seconds_count"]
ALLOWED_LABELS = {"agent_id", "role", "step", "le", "grpc_service", "grpc_method", "grpc_code",
                  "caller"}  # caller: the certificate role of a refused call (league_rpc_refused_total)
ROLES = {"meta", "persona", "learner"}  # `role` is always an agent's role, never a process's


def test_every_process_serves_the_metrics_contract(league):
    ref, _, procs, tmp = league
    wait_until(lambda: _status(ref["address"]).round >= 4, 60, "a few rounds")
    pages = {"referee": (metrics(ref["metrics"]), REFEREE_METRICS)}
    for a in ("meta", "persona", "l1"):
        info = json.loads((tmp / f"{a}.json").read_text())
        pages[a] = (metrics(info["metrics"]), AGENT_METRICS)
    for name, (text, expected) in pages.items():
        promtool_check_metrics(text, name)
        for metric in expected:
            assert metric_value(text, metric) is not None, f"{name} does not serve {metric}"
        assert "_created" not in text, f"{name} serves *_created series"
        info = [line for line in text.splitlines() if line.startswith("league_info{")]
        assert len(info) == 1 and 'env="ipd"' in info[0], f"{name}: one league_info with the constant labels"
        for line in text.splitlines():
            if line.startswith("league_") and "{" in line and not line.startswith("league_info{"):
                pairs = dict(kv.split("=") for kv in line[line.index("{") + 1:line.index("}")].split(","))
                assert set(pairs) <= ALLOWED_LABELS, f"{name}: unbounded labels in {line}"
                assert pairs.get("role", '"meta"').strip('"') in ROLES, f"{name}: role is not an agent role in {line}"
    assert 'component="referee"' in pages["referee"][0] and 'component="agent"' in pages["meta"][0]
    # per-RPC server metrics: the referee served every agent's Join, the agents served the referee's fetches
    assert metric_value(pages["referee"][0], "league_grpc_server_handled_total", grpc_service="league.v1.Referee",
                        grpc_method="Join", grpc_code="OK") >= 5
    assert metric_value(pages["l1"][0], "league_grpc_server_handled_total", grpc_service="league.v1.Agent",
                        grpc_method="GetParameters", grpc_code="OK") > 0
    assert metric_value(pages["referee"][0], "league_episodes_total", agent_id="meta", role="meta") > 0
    assert metric_value(pages["meta"][0], "league_agent_updates_total", agent_id="meta") > 0


def test_referee_serves_prometheus_service_discovery(league):
    ref, _, procs, tmp = league
    sd_url = ref["metrics"].replace("/metrics", "/sd")
    groups = wait_until(lambda: (g := json.loads(metrics(sd_url))) and len(g) == 5 and g, 30, "5 members in /sd")
    by_id = {g["labels"]["agent_id"]: g for g in groups}
    for a in ("meta", "persona", "l1", "l2", "l3"):
        info = json.loads((tmp / f"{a}.json").read_text())
        target = by_id[a]["targets"][0]
        assert info["metrics"] == f"http://{target}/metrics"
        assert metric_value(metrics(info["metrics"]), "league_agent_policy_version", agent_id=a) is not None
