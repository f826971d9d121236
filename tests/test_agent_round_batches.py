"""An agent learns the batches of a round that seat it as one step: the header of each batch
says how many there are (``Seat.round_batches``), the agent waits for all of them, bounded by
``round_wait_seconds`` (a missing batch delays learning by at most that; then it learns what
it has), and a header without a count keeps the older rule (what arrives within 2 ms)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from prometheus_client import generate_latest

from agents.inbox import RoundInbox, round_batches
from agents.runtime import AgentProcess, AgentRuntimeConfig
from league.games import make_game
from league.rollout import play, reset_seed
from services.batches import batch_tensors, encode_batch, read_batches
from services.gen.league.v1 import referee_pb2
from services.league_config import AgentSpec, RefereeConfig, league_env
from services.referee import Match
from services.referee import round_batches as referee_round_batches
from tests.inprocess_league import InProcessLeague, description
from tests.league_procs import metric_value, metrics, start_league, wait_until

K, H, L = 4, 6, 2


def header(round_: int, chain: str, count: int, agent: str = "meta") -> referee_pb2.TrajectoryBatch:
    return referee_pb2.TrajectoryBatch(match_id=f"{chain}.0", round=round_, env="ipd", chain_id=chain, seats=[
        referee_pb2.Seat(agent_id=agent, behaviour_version=1, round_batches=count),
        referee_pb2.Seat(agent_id=f"p{chain}", behaviour_version=1, round_batches=1)])


def take_in_thread(inbox: RoundInbox, timeout: float) -> tuple[list, bool, float]:
    """``inbox.take()`` in a thread; its result and seconds taken, or a failure after ``timeout``."""
    got = {}

    def run():
        t0 = time.monotonic()
        got["result"] = inbox.take()
        got["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert "result" in got, f"take() still waiting after {timeout}s"
    return (*got["result"], got["seconds"])


def test_the_referee_states_per_agent_how_many_batches_of_a_round_seat_it():
    matches = [Match("c1.0", ["meta", "a", "b"], [], []), Match("c2.0", ["meta", "c", "d"], [], []),
               Match("r0.x-y", ["x", "y"], [], [])]
    assert referee_round_batches(matches) == {"meta": 2, "a": 1, "b": 1, "c": 1, "d": 1, "x": 1, "y": 1}
    assert round_batches(header(0, "c1", 2), "meta") == 2
    assert round_batches(header(0, "c1", 2), "pc1") == 1
    assert round_batches(header(0, "c1", 2), "nobody") == 0


def test_the_batches_a_header_announces_are_taken_together_though_they_arrive_apart():
    inbox = RoundInbox("meta", round_wait=5.0)
    inbox.put(header(0, "c1", 2))
    threading.Timer(0.1, inbox.put, args=(header(0, "c2", 2),)).start()  # 100 ms later: far over 2 ms
    batches, done, seconds = take_in_thread(inbox, 4.0)
    print(f"took {[b.chain_id for b in batches]} in {seconds:.3f}s")
    assert [b.chain_id for b in batches] == ["c1", "c2"] and not done
    assert 0.08 < seconds < 2.0


def test_a_missing_batch_is_learned_without_after_the_round_wait():
    inbox = RoundInbox("meta", round_wait=0.3)
    inbox.put(header(0, "c1", 2))  # the header says 2; the second never comes
    batches, done, seconds = take_in_thread(inbox, 4.0)
    print(f"took {[b.chain_id for b in batches]} in {seconds:.3f}s")
    assert [b.chain_id for b in batches] == ["c1"] and not done
    assert 0.29 < seconds < 2.0


def test_a_batch_of_the_next_round_ends_the_wait_and_comes_first_next():
    inbox = RoundInbox("meta", round_wait=30.0)
    for batch in (header(0, "c1", 2), header(1, "c1", 2), header(1, "c2", 2), None):
        inbox.put(batch)
    first, done, seconds = take_in_thread(inbox, 4.0)
    assert [(b.round, b.chain_id) for b in first] == [(0, "c1")] and not done and seconds < 1.0
    second, done, _ = take_in_thread(inbox, 4.0)
    assert [(b.round, b.chain_id) for b in second] == [(1, "c1"), (1, "c2")] and not done
    assert take_in_thread(inbox, 4.0)[:2] == ([], True)


def test_a_header_without_a_count_keeps_the_older_rule():
    inbox = RoundInbox("meta", round_wait=5.0)
    inbox.put(header(0, "c1", 0))
    threading.Timer(0.1, inbox.put, args=(header(0, "c2", 0),)).start()
    first, _, seconds = take_in_thread(inbox, 4.0)
    assert [b.chain_id for b in first] == ["c1"] and seconds < 0.09
    assert [b.chain_id for b in take_in_thread(inbox, 4.0)[0]] == ["c2"]
    inbox.put(header(0, "c3", 0))
    inbox.put(None)
    assert [[b.chain_id for b in batches] + [done] for batches, done, _ in [take_in_thread(inbox, 4.0)]] == \
        [["c3", True]]


# -- the agent process's learner, on real encoded batches --------------------------------

def meta_agent(tmp_path, round_wait: float) -> AgentProcess:
    spec = AgentSpec(id="meta", role="meta", policy="lstm", hidden=8, init="random:1", lr=[0.5])
    return AgentProcess(spec, AgentRuntimeConfig(referee="127.0.0.1:1", env="ipd", horizon=H, chain_length=L,
                                                 checkpoint_dir=str(tmp_path / "ckpt"),
                                                 round_wait_seconds=round_wait))


def played_batches(agent: AgentProcess, chains: list[str], count: int) -> list[referee_pb2.TrajectoryBatch]:
    """Step 0 of each of ``chains`` (the meta-agent against a uniform persona), played in one
    rollout and encoded as the referee encodes them, with ``count`` stated for the meta-agent."""
    env = league_env("ipd", {}, 2, H)
    persona = AgentProcess(AgentSpec(id="p", role="persona"), agent.cfg)
    n = len(chains)
    params = [{k: v.expand(n, *v.shape[1:]) for k, v in agent.store.snapshot("policy")[1].items()},
              {k: v.expand(n, *v.shape[1:]) for k, v in persona.store.snapshot("policy")[1].items()}]
    generator = torch.Generator().manual_seed(3)
    traj = play(env, [agent.policy, persona.policy], params, n, K, generator, seed=reset_seed(env, generator))
    version = agent.store.version("policy")
    batches = []
    for b, chain in enumerate(chains):
        head = referee_pb2.TrajectoryBatch(match_id=f"{chain}.0", round=0, env="ipd", chain_id=chain, step=0, seats=[
            referee_pb2.Seat(agent_id="meta", behaviour_version=version, round_batches=count),
            referee_pb2.Seat(agent_id=f"p{b}", behaviour_version=1, round_batches=1)])
        tensors = batch_tensors([o[b] for o in traj.obs], [a[b] for a in traj.actions], traj.rewards[b], traj.dones[b])
        (batch,) = read_batches(encode_batch(head, tensors))
        batches.append(batch)
    return batches


def learn_steps(agent: AgentProcess) -> tuple[float, float]:
    """(learning steps taken, batches taken in them), from the agent's own histogram."""
    text = generate_latest(agent.metrics.registry).decode()
    return (metric_value(text, "league_agent_learn_batches_count", agent_id="meta"),
            metric_value(text, "league_agent_learn_batches_sum", agent_id="meta"))


def run_learner(agent: AgentProcess, inbox: RoundInbox) -> threading.Thread:
    thread = threading.Thread(target=agent._learn_loop, args=(inbox,), daemon=True)
    thread.start()
    return thread


def test_the_agent_learns_a_rounds_two_chains_as_one_step(tmp_path):
    agent = meta_agent(tmp_path, round_wait=5.0)
    first, second = played_batches(agent, ["c1", "c2"], count=2)
    inbox = RoundInbox("meta", agent.cfg.round_wait_seconds)
    learner = run_learner(agent, inbox)
    inbox.put(first)
    time.sleep(0.1)  # the second batch comes 100 ms later: one step all the same
    inbox.put(second)
    wait_until(lambda: "policy@c2" in agent.store.kinds() and "policy@c1" in agent.store.kinds(), 30, "phi_1 of both")
    inbox.put(None)
    learner.join(10)
    steps = learn_steps(agent)
    print(f"learning steps, batches: {steps}")
    assert steps == (1.0, 2.0)
    assert agent.store.version("policy@c1") == agent.store.version("policy@c2") == 1


def test_the_agent_learns_the_batch_it_has_after_the_round_wait(tmp_path):
    agent = meta_agent(tmp_path, round_wait=0.5)
    (first,) = played_batches(agent, ["c1"], count=2)  # the header says 2; only 1 arrives
    inbox = RoundInbox("meta", agent.cfg.round_wait_seconds)
    learner = run_learner(agent, inbox)
    t0 = time.monotonic()
    inbox.put(first)
    wait_until(lambda: "policy@c1" in agent.store.kinds(), 20, "phi_1 of chain c1 after the round wait")
    waited = time.monotonic() - t0
    print(f"phi_1 published {waited:.3f}s after the batch arrived; steps, batches: {learn_steps(agent)}")
    assert waited >= 0.5
    assert learn_steps(agent) == (1.0, 1.0)
    inbox.put(None)
    learner.join(10)


# -- through real processes ----------------------------------------------------------------

@pytest.mark.slow
def test_a_league_meta_agent_learns_each_round_in_one_step(tmp_path):
    """A referee, a meta-agent and 2 persona processes (IPD, 2 chains, L = 2): the meta-agent
    takes 2 batches per learning step, L + 1 steps; each persona 1 batch per step."""
    agents = '[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm"\nhidden = 8\ninit = "random:1"\n' + "".join(
        f'[[agents]]\nid = "p{i}"\nrole = "persona"\ninit = "persona:test:{i}"\nlr = [1.0]\n' for i in range(2))
    league = start_league(tmp_path, f'name = "rb"\npopulation_seed = 0\n[referee]\nenv = "ipd"\ntrajectories = {K}\n'
                                    f'horizon = {H}\nchain_length = {L}\nrounds = 0\nchains = 1\nseed = 5\n\n'
                                    + agents, ["meta", "p0", "p1"], wait_for=3)
    try:
        urls = {a: json.loads((tmp_path / f"{a}.json").read_text())["metrics"] for a in ("meta", "p0", "p1")}

        def steps(a):
            text = metrics(urls[a])
            return (metric_value(text, "league_agent_learn_batches_count", agent_id=a),
                    metric_value(text, "league_agent_learn_batches_sum", agent_id=a))

        wait_until(lambda: all(steps(a)[1] == (2 * (L + 1) if a == "meta" else L + 1) for a in urls), 120,
                   "every batch of the chains learned")
        got = {a: steps(a) for a in urls}
        print(f"(learning steps, batches) per agent: {got}")
        assert got == {"meta": (L + 1, 2 * (L + 1)), "p0": (L + 1, L + 1), "p1": (L + 1, L + 1)}
    finally:
        league.stop()


def test_the_last_step_of_a_chain_is_not_learned(tmp_path):
    """phi_L is the chain's last point: the agent drops the chain's parameters and spends no
    learning step on a phi_{L+1} nobody fetches."""
    agent = meta_agent(tmp_path, round_wait=1.0)
    (first,) = played_batches(agent, ["c1"], count=1)
    agent.learn_many([first])
    last = referee_pb2.TrajectoryBatch()
    last.CopyFrom(first)
    last.step, last.last_step, last.round = 1, True, 1
    last.seats[0].behaviour_version = agent.store.version("policy@c1")
    updates = lambda: metric_value(generate_latest(agent.metrics.registry).decode(),  # noqa: E731
                                   "league_agent_updates_total", agent_id="meta")
    assert updates() == 1.0
    agent.learn_many([last])
    assert "policy@c1" not in agent.store.kinds()
    assert updates() == 1.0


def test_a_referee_round_states_the_counts_and_play_matches_states_none():
    """A real referee (in-process, gRPC agents serving frozen tabular policies) plays one
    round of 2 chains of 3-player RPS: the meta-agent's seat says 2 in both batches, each
    persona's 1. A ``PlayMatches`` batch (the coordinator drives those) states 0."""
    game = make_game("rps", n_players=3)
    league = InProcessLeague(RefereeConfig(env="rps", n_players=3, trajectories=2, horizon=3, chain_length=2,
                                           chains=1, rounds=0, lease_seconds=600.0, fetch_timeout=10.0))
    try:
        for i, (agent, role) in enumerate([("meta", "meta"), ("a", "persona"), ("b", "persona"), ("c", "persona"),
                                           ("d", "persona")]):
            logits = torch.randn(1, game.n_states, 3, generator=torch.Generator().manual_seed(i))
            league.join(agent, league.serve({"logits": logits}, description(agent, game)), role=role)
        sent: list = []
        league.referee.subscribers[0] = ("", sent.extend)  # every batch's messages, as a stream would get them
        assert league.referee.play_round() == 2
        stated = [{s.agent_id: s.round_batches for s in batch.seats} for batch in sent]
        assert stated == [{"meta": 2, "a": 1, "b": 1}, {"meta": 2, "c": 1, "d": 1}], stated
        sent.clear()
        list(league.ref.PlayMatches(referee_pb2.PlayMatchesRequest(matches=[referee_pb2.MatchSpec(
            match_id="x.0", seats=[referee_pb2.PinnedSeat(agent_id=a, kind="policy", version=1)
                                   for a in ("meta", "a", "b")])]), timeout=60))
        assert [[s.round_batches for s in batch.seats] for batch in sent] == [[0, 0, 0]]
    finally:
        league.close()
