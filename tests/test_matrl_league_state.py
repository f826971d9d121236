"""Deep MATRL agents (rule ``ppo-matrl``) that survive a restart, voided rounds, and the ablations
(``il``, ``il_pp``, ``matrl_no_br``) in league mode.

In-process (no sockets, fast): ``AgentProcess`` objects learn from broadcast batches encoded as
the referee sends them, and the coordinator's half is ``services.coordinator_matrl``'s own
``round_settings`` / ``round_mixtures`` (what ``MatrlMode`` runs per group), with its episode
stream rolled back on a voided round as ``MatrlMode.iterate`` does:

- a seat checkpointed and rebuilt from its checkpoint between rounds continues exactly (0.0) as
  one that never stopped, and as the embedded ``run_deep_matrl``;
- a voided round (the mixture never comes; one agent restarted, the other survived with its
  pending round) leaves the run equal to the embedded run of its completed rounds;
- every variant of ``league.matrl.deep.VARIANTS`` through the league's round equals the embedded
  run of that variant over 2 rounds (1e-6).

Real processes (referee, two agents, coordinator): an agent SIGKILLed between rounds and started
again with the same id and checkpoint directory continues so that the coordinator's final
parameters, weights and meta-games equal the embedded run of the completed rounds; each ablation
through the league equals its embedded run over 2 rounds.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.matrl import COMMIT, MIXTURE, PREDICTED, PREPARED, TRUST, prepared_path, round_message
from agents.runtime import AgentProcess, AgentRuntimeConfig
from league.matrl.deep import VARIANTS, run_deep_matrl
from league.matrl.variant_protocol import PROTOCOLS
from league.rollout import Episodes, play, reset_seed
from services.batches import batch_tensors, encode_batch, read_batches
from services.coordinator import CoordinatorConfig
from services.coordinator_matrl import MatrlMode, load_matrl_config, round_mixtures, round_settings
from services.gen.league.v1 import referee_pb2
from services.league_config import league_env, load_league_config
from services.limits import check_pushed_range
from services.pki import load_credentials
from tests.league_procs import agent_toml, league_credentials, metric_value, metrics, start_league, wait_json, wait_until
from tests.test_matrl_deep_league import DEEP, SMALL, TOL, _league, _small_league, assert_league_equals_embedded
from tests.test_matrl_league import EXPERIMENT as SAMPLED_EXPERIMENT, LEAGUE as SAMPLED_LEAGUE

torch.set_num_threads(1)
SEED = 5


class InProcessRounds:
    """Two in-process agents of the small checkers league and the coordinator's half of each
    round (``round_mixtures``), from an episode stream seeded ``seed``. ``sampled``: the sampled
    MATRL league of ``tests/test_matrl_league.py`` (2-player RPS, rule ``matrl``) instead."""

    def __init__(self, tmp: Path, overrides: list[str] = (), seed: int = SEED, sampled: bool = False) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        experiment = DEEP
        if sampled:
            (tmp / "league.toml").write_text(SAMPLED_LEAGUE.format(n=2) + "".join(
                agent_toml(a, role="persona", rule="matrl", init=f"random:{i}", lr=[0.5]) for i, a in enumerate(["a0", "a1"])))
            experiment = tmp / "matrl.toml"
            experiment.write_text(SAMPLED_EXPERIMENT.format(n=2, lrs=[0.5, 0.5], kl_coef=0.5, trust_steps=2))
        else:
            (tmp / "league.toml").write_text(_small_league(tmp, ["a0", "a1"]))
        self.tmp, self.league = tmp, load_league_config(tmp / "league.toml")
        self.cfg = load_matrl_config(str(experiment), [*([] if sampled else SMALL), *overrides])
        self.settings = round_settings(self.cfg)
        r = self.league.referee
        self.env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
        self.seed, self.generator, self.round = seed, torch.Generator().manual_seed(seed), 0
        self.agents = [self.start(k) for k in range(2)]
        self.inits = [a.store.get("policy")[1] for a in self.agents]
        self.records: list[dict] = []

    def start(self, k: int) -> AgentProcess:
        """Agent ``k`` as ``league agent`` builds it: from its checkpoint if there is one."""
        r = self.league.referee
        return AgentProcess(self.league.agents[k], AgentRuntimeConfig(
            referee="127.0.0.1:1", env=r.env, n_players=r.n_players, horizon=r.horizon, gamma=r.gamma,
            chain_length=1, checkpoint_dir=str(self.tmp / "ckpt")))

    def restart(self, k: int) -> None:
        """Agent ``k`` gone (whatever it held in memory) and started again from its checkpoint."""
        self.agents[k] = self.start(k)
        assert self.agents[k].resumed

    @staticmethod
    def push(agent: AgentProcess, kind: str, message: dict) -> None:
        """A coordinator's push as the agent's service applies it (range check, compare-and-set, hook)."""
        check_pushed_range(kind, message)
        version = agent.store.compare_and_set(kind, agent.store.version(kind), message)
        agent._on_push(kind, version)

    def broadcast(self):
        """A round's first half: the trust settings, the referee's episodes at the agents' current
        versions (chunk-encoded as broadcast), every agent's step. Returns the versions, parameters,
        policies and the played trajectories."""
        self.round += 1
        for a in self.agents:
            self.push(a, TRUST, self.settings.trust(self.seed))
        versions, params = zip(*(a.store.snapshot("policy") for a in self.agents))
        policies = [a.policy for a in self.agents]
        traj = play(self.env, policies, list(params), 1, self.settings.episodes, self.generator,
                    seed=reset_seed(self.env, self.generator))
        header = referee_pb2.TrajectoryBatch(match_id=f"matrl.r{self.round}.g0", env=self.cfg.env, step=self.round,
                                             seats=[referee_pb2.Seat(agent_id=a.spec.id, behaviour_version=v)
                                                    for a, v in zip(self.agents, versions)])
        tensors = batch_tensors([o[0] for o in traj.obs], [x[0] for x in traj.actions], traj.rewards[0],
                                traj.dones[0])
        (batch,) = read_batches(encode_batch(header, tensors, limit=0, chunk_bytes=1 << 16))
        for a in self.agents:
            a.learn_many([batch])
        return versions, list(params), policies, traj

    def play_round(self, complete: bool = True, mixture_to: int | None = None, commit_to: int | None = None) -> None:
        """One round: :meth:`broadcast`; then (``complete``) the coordinator's mixtures, every
        agent's prepared response, the commits (to the first ``commit_to`` agents only, if given:
        the others owe theirs) and those agents' ``policy`` v+1; or (not ``complete``) the round
        voided after the agents' steps, once the mixture reached the first ``mixture_to`` agents
        (none by default), with the episode stream rolled back as ``MatrlMode.iterate`` rolls it
        back."""
        stream = self.generator.get_state()
        versions, params, policies, traj = self.broadcast()
        if not complete and not mixture_to:
            self.generator.set_state(stream)
            return
        out = self.mixtures(policies, params, traj)
        reached = self.agents if complete else self.agents[:mixture_to]
        for a, v, message in zip(reached, versions, out.messages):
            self.push(a, MIXTURE, message)
            assert a.store.version(PREPARED) == self.round and a.store.version("policy") == v  # prepared only
        if not complete:
            self.generator.set_state(stream)
            return
        for a, v in list(zip(self.agents, versions))[:commit_to]:
            self.push(a, COMMIT, round_message(self.round))
            assert a.store.version("policy") == v + 1
            assert not prepared_path(a).exists()  # a committed round leaves no prepared file
        self.records.append({"weights": out.weights.tolist(),
                             "metagame": None if out.metagame is None else out.metagame.flatten().tolist()})

    def mixtures(self, policies, params, traj):
        """The coordinator's step 3 of the current round from the agents' published predictions."""
        predicted = []
        for a in self.agents:
            version, p = a.store.snapshot(PREDICTED)
            assert version == self.round
            predicted.append(p)
        return round_mixtures(self.settings, self.round, policies, params, predicted, Episodes.of(traj))

    def state(self) -> list[tuple]:
        """Every agent's policy version and parameters and committed learner state (copies)."""
        return [copy.deepcopy((a.store.snapshot("policy"), a.coordinated.state_dict())) for a in self.agents]

    def params(self) -> list[dict[str, torch.Tensor]]:
        return [a.store.get("policy")[1] for a in self.agents]

    def critics(self) -> list[list[torch.Tensor]]:
        return [[w.detach().clone() for w in a.coordinated.rule.critic.weights] for a in self.agents]

    def embedded(self, rounds: int, variant: str | None = None):
        """``run_deep_matrl`` of the same config (``variant``) and seed from the agents' initial parameters."""
        cfg = self.cfg if variant is None else load_matrl_config(str(DEEP), [*SMALL, f"variant={variant}"])
        finals: list = []
        records = run_deep_matrl(cfg, self.seed, params=self.inits, iterations=rounds,
                                 checkpoint=lambda it, params: finals.append(params))
        return finals[-1], records


def _max_gap(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    return max(float((x[n] - y[n]).abs().max()) for x, y in zip(a, b) for n in x)


def _max_list_gap(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> float:
    return max(float((x - y).abs().max()) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def test_a_seat_restored_from_its_checkpoint_continues_exactly(tmp_path):
    """Both agents rebuilt from their checkpoints after round 1, agent 1 again after round 2:
    policy, critic (weights and Adam state) and seat generator come back, so after 3 rounds every
    parameter and critic weight equals (0.0) the agents that never stopped, and the embedded run."""
    never, restarted = InProcessRounds(tmp_path / "never"), InProcessRounds(tmp_path / "restarted")
    for r in range(3):
        never.play_round()
        restarted.play_round()
        for k in {0: [0, 1], 1: [1]}.get(r, []):
            restarted.restart(k)
    gap, critic_gap = _max_gap(never.params(), restarted.params()), _max_list_gap(never.critics(), restarted.critics())
    print(f"max |restarted - never stopped|: parameters {gap:.3g}, critic weights {critic_gap:.3g}")
    assert gap == 0.0 and critic_gap == 0.0
    final, _ = never.embedded(3)
    assert _max_gap(never.params(), final) <= TOL
    assert _max_gap(never.inits, final) > 100 * TOL  # it learned


def test_a_voided_round_leaves_the_embedded_run_of_the_completed_rounds(tmp_path):
    """Round 2 is voided after both agents took their PPO step (agent 1 then restarted, as if
    killed mid-round; agent 0 survived with its pending round): its critic fit and minibatch draws
    are discarded with it, the episode stream is rolled back, so after rounds 1, (2 voided), 3, 4
    the agents equal the agents of 3 completed rounds (0.0) and the embedded run of 3 rounds."""
    voided, plain = InProcessRounds(tmp_path / "voided"), InProcessRounds(tmp_path / "plain")
    voided.play_round()
    voided.play_round(complete=False)
    voided.restart(1)
    _finish_and_compare_with_three_plain_rounds(voided, plain, "a voided round")


def _finish_and_compare_with_three_plain_rounds(voided, plain, what: str) -> None:
    """``voided`` (one completed round, then the voided one) plays 2 more rounds: its agents must
    equal ``plain``'s after 3 rounds exactly, and the embedded run of 3 rounds."""
    voided.play_round()
    voided.play_round()
    for _ in range(3):
        plain.play_round()
    gap, critic_gap = _max_gap(plain.params(), voided.params()), _max_list_gap(plain.critics(), voided.critics())
    print(f"max |with {what} - without|: parameters {gap:.3g}, critic weights {critic_gap:.3g}")
    assert gap == 0.0 and critic_gap == 0.0
    final, _ = plain.embedded(3)
    assert _max_gap(voided.params(), final) <= TOL


def _same(a, b) -> bool:
    """Exact equality of nested dicts, lists and tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_round_voided_after_the_mixture_reached_one_agent_leaves_the_group_as_before(tmp_path):
    """Two phases: round 2's mixture reaches agent 0 only (it prepares its response), then the
    round is voided (no commit). Both agents' policy versions, parameters and committed learner
    state (critic weights, Adam state, seat generator) equal those before the round exactly, as
    does agent 0 rebuilt from its checkpoint; rounds 1, (2 voided), 3, 4 then equal 3 plain rounds
    (0.0) and the embedded run of 3 rounds."""
    voided, plain = InProcessRounds(tmp_path / "voided"), InProcessRounds(tmp_path / "plain")
    voided.play_round()
    before = voided.state()
    voided.play_round(complete=False, mixture_to=1)
    prepared = voided.agents[0].coordinated.prepared
    assert prepared is not None and prepared.round == 2  # agent 0 did prepare a response
    assert _max_gap([prepared.response], [before[0][0][1]]) > 100 * TOL  # ... that would have moved it
    after = voided.state()
    for k in range(2):
        print(f"agent {k}: policy version {before[k][0][0]} -> {after[k][0][0]}, "
              f"parameters unchanged: {_same(before[k][0], after[k][0])}, "
              f"learner state unchanged: {_same(before[k][1], after[k][1])}")
        assert after[k][0][0] == before[k][0][0] == 2
        assert _same(before[k], after[k])
    from_disk = voided.start(0)
    assert _same(copy.deepcopy((from_disk.store.snapshot("policy"), from_disk.coordinated.state_dict())), before[0])
    _finish_and_compare_with_three_plain_rounds(voided, plain, "the half-pushed voided round")


@pytest.mark.parametrize("sampled", [False, True], ids=["ppo-matrl", "matrl"])
def test_a_commit_missed_by_a_restarted_agent_is_taken_from_its_prepared_file(tmp_path, sampled):
    """Round 2 prepared by both agents, its commit reaches agent 0 only; agent 1 is rebuilt from
    its checkpoint (round 1) and ``<id>.prepared.pt`` (round 2, held prepared) and the coordinator
    re-sends the commit: after rounds 3 and 4 both agents' policy versions, parameters and learner
    state (``ppo-matrl``: critic weights, Adam state, seat generator) equal 4 rounds of agents that
    never stopped exactly (0.0), and (``ppo-matrl``) the embedded run of 4 rounds."""
    resent = InProcessRounds(tmp_path / "resent", sampled=sampled)
    plain = InProcessRounds(tmp_path / "plain", sampled=sampled)
    resent.play_round()
    resent.play_round(commit_to=1)
    out_of_step = [a.store.version("policy") for a in resent.agents]
    resent.restart(1)
    a1 = resent.agents[1]
    held = (a1.coordinated.prepared and a1.coordinated.prepared.round, a1.store.version(PREPARED))
    resent.push(a1, COMMIT, round_message(2))  # the coordinator's re-sent commit
    taken = (a1.store.version("policy"), prepared_path(a1).exists())
    print(f"policy versions after round 2's commit reached agent 0 only: {out_of_step}; agent 1 restarted holds "
          f"(prepared round, matrl-prepared version) {held}; after the re-sent commit (policy version, file left) "
          f"{taken}")
    resent.play_round()
    resent.play_round()
    for _ in range(4):
        plain.play_round()
    gap = _max_gap(plain.params(), resent.params())
    print(f"max |re-sent commit - never stopped| after 4 rounds: parameters {gap:.3g}; policy versions and "
          f"learner state equal: {_same(plain.state(), resent.state())}")
    assert _same(plain.state(), resent.state())  # policy versions, parameters, critic, Adam state, generator
    assert _max_gap(resent.inits, resent.params()) > 100 * TOL  # it learned
    if not sampled:  # plain rounds equal the embedded run (the tests above; sampled: tests/test_matrl_league.py)
        final, _ = plain.embedded(4)
        print(f"max |re-sent commit - embedded| {_max_gap(resent.params(), final):.3g}")
        assert _max_gap(resent.params(), final) <= TOL
    assert out_of_step == [3, 2] and held == (2, 2) and taken == (3, False)


def test_a_prepared_file_of_another_round_is_not_committed(tmp_path):
    """Agent 1 restarted holding round 2 prepared (from disk): commits for rounds 1 and 3 change
    nothing (policy, parameters, learner state; round 2 stays prepared), the commit for round 2
    takes it. A prepared file left beside a checkpoint that already holds its round (a crash
    between the checkpoint and the file's removal) is dropped at start, not held; and the next
    broadcast drops a prepared round the coordinator never committed, file included."""
    rounds = InProcessRounds(tmp_path)
    rounds.play_round()
    rounds.play_round(commit_to=1)
    rounds.restart(1)
    a = rounds.agents[1]
    path, before = prepared_path(a), copy.deepcopy((a.store.snapshot("policy"), a.coordinated.state_dict()))
    for wrong in (1, 3):
        rounds.push(a, COMMIT, round_message(wrong))
        after = copy.deepcopy((a.store.snapshot("policy"), a.coordinated.state_dict()))
        print(f"commit for round {wrong}, round 2 prepared: policy version {before[0][0]} -> {after[0][0]}, "
              f"unchanged: {_same(before, after)}")
        assert _same(before, after) and a.coordinated.prepared.round == 2
    stale = path.read_bytes()
    rounds.push(a, COMMIT, round_message(2))
    assert a.store.version("policy") == 3 and not path.exists()
    path.write_bytes(stale)  # as if the agent died after its checkpoint, before removing the file
    rounds.restart(1)
    assert rounds.agents[1].coordinated.prepared is None and not path.exists()
    rounds.play_round(complete=False, mixture_to=2)  # round 3 prepared by both, never committed
    assert all(prepared_path(x).exists() for x in rounds.agents)
    rounds.broadcast()  # round 4's step voids it
    assert all(x.coordinated.prepared is None and not prepared_path(x).exists() for x in rounds.agents)


def test_a_commit_for_another_round_does_nothing(tmp_path):
    """``matrl-commit`` before the mixture, or for another round than the prepared one, is
    ignored (the agent's policy, parameters and learner state stay as they were, its prepared
    response stays pending); the commit for the prepared round then publishes ``policy`` v+1.
    A commit's round outside [0, 10000] is refused at the push."""
    from services.wire import WireError

    rounds = InProcessRounds(tmp_path)
    rounds.play_round()
    versions, params, policies, traj = rounds.broadcast()
    out = rounds.mixtures(policies, params, traj)
    a, r = rounds.agents[0], rounds.round
    before = rounds.state()
    rounds.push(a, COMMIT, round_message(r))  # no mixture yet: nothing prepared
    assert _same(rounds.state(), before)
    rounds.push(a, MIXTURE, out.messages[0])
    for wrong in (r - 1, r + 1, 0):
        rounds.push(a, COMMIT, round_message(wrong))
        assert _same(rounds.state(), before), f"a commit for round {wrong} changed the agent (pending round {r})"
    assert a.coordinated.prepared.round == r
    for bad in (-1, 10_001):
        with pytest.raises(WireError, match="outside the allowed"):
            check_pushed_range(COMMIT, round_message(bad))
    prepared = a.coordinated.prepared.response
    rounds.push(a, COMMIT, round_message(r))
    assert a.store.version("policy") == versions[0] + 1 and a.coordinated.pending is a.coordinated.prepared is None
    assert _same(a.store.get("policy")[1], prepared)  # the prepared response, published
    assert _max_gap([prepared], [params[0]]) > 100 * TOL


def test_every_variant_has_a_league_protocol():
    """A variant added to ``league.matrl.deep.VARIANTS`` needs its declaration in ``PROTOCOLS``
    before the coordinator can run it."""
    assert PROTOCOLS.keys() == VARIANTS.keys()


@pytest.mark.parametrize("variant", ["il", "il_pp", "matrl_no_br"])
def test_the_committed_ablation_configs_are_the_matrl_config_but_for_the_variant(variant):
    """configs/matrl/checkers_<variant>_league.toml pairs with configs/league_matrl_checkers.toml
    and differs from configs/matrl/checkers_league.toml in ``variant`` only."""
    from dataclasses import replace

    from services.coordinator_matrl import league_pair_mismatch
    from tests.test_matrl_deep_league import LEAGUE

    cfg = load_matrl_config(str(DEEP.parent / f"checkers_{variant}_league.toml"))
    assert cfg.variant == variant
    assert replace(cfg, variant="matrl") == load_matrl_config(str(DEEP))
    assert league_pair_mismatch(load_league_config(LEAGUE), cfg) is None


@pytest.mark.parametrize("variant", ["matrl_no_br", "matrl"])
def test_a_fractional_nash_weight_is_applied_as_the_embedded_variant_applies_it(tmp_path, variant):
    """On checkers the meta-game's equilibrium is "every seat predicted" (``w = 1``) in every round
    tried, so the league-equals-embedded runs above never push another weight. Here the mixtures
    carry ``w = (0.3, 0.8)``: each agent's response equals the embedded variant's arithmetic at
    those weights (``deep._Context.best_responses(w)`` for ``matrl``; ``(1 - w) theta + w
    theta_hat`` for ``matrl_no_br``), to 1e-6, from the same PPO steps."""
    from agents.matrl import mixture_message
    from league.matrl.deep import PPOTrustRegion, _Context
    from league.matrl.sampled import peer_log_ratios, score_round

    rounds = InProcessRounds(tmp_path, [f"variant={variant}"])
    a, cfg, env = rounds.agents, rounds.cfg, rounds.env
    _, params, policies, traj = rounds.broadcast()
    episodes = Episodes.of(traj)
    steps = [PPOTrustRegion.for_seat(policies[k], env.observation_spaces[k], cfg.ppo, rounds.seed, k).step(
        params[k], episodes, k) for k in range(2)]
    predicted = [s.params for s in steps]
    w = torch.tensor([[0.3, 0.8]], dtype=episodes.rewards.dtype)
    ctx = _Context(policies, params, predicted, [s.advantages for s in steps], [s.logp_old for s in steps],
                   episodes, cfg)
    expected = (ctx.best_responses(w) if variant == "matrl" else
                [{n: (1 - w[0, k]) * params[k][n] + w[0, k] * predicted[k][n] for n in params[k]} for k in range(2)])
    published = [agent.store.get(PREDICTED)[1] for agent in a]
    ratios = peer_log_ratios(score_round(policies, params, published, episodes), w)
    for k, agent in enumerate(a):
        rounds.push(agent, MIXTURE, mixture_message(1, float(w[0, k]), ratios[k], cfg.br_lr, cfg.br_clip))
    for agent in a:
        rounds.push(agent, COMMIT, round_message(1))
    got = rounds.params()
    gap = _max_gap(got, expected)
    print(f"{variant} at w = (0.3, 0.8): max |agent - embedded arithmetic| = {gap:.2e}; "
          f"moved from the prediction by {_max_gap(got, predicted):.3g}")
    assert gap <= TOL
    assert _max_gap(got, predicted) > 100 * TOL  # w < 1 is not the prediction


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_through_the_leagues_round_equals_its_embedded_run(tmp_path, variant):
    """2 rounds of ``variant`` with the coordinator's ``round_mixtures`` and the agents' responses
    (best response or interpolation, as ``PROTOCOLS`` declares) equal ``run_deep_matrl`` of the
    variant to 1e-6: parameters, and the weights and meta-game where the embedded run has them."""
    rounds = InProcessRounds(tmp_path, [f"variant={variant}"])
    for _ in range(2):
        rounds.play_round()
    final, records = rounds.embedded(2)
    gap = _max_gap(rounds.params(), final)
    print(f"{variant}: max |league round - embedded| = {gap:.2e}")
    assert gap <= TOL
    assert _max_gap(rounds.inits, final) > 100 * TOL  # it learned
    for mine, theirs in zip(rounds.records, records):
        if theirs["weights"] is not None:
            np.testing.assert_allclose(mine["weights"], theirs["weights"], atol=TOL, rtol=0)
        assert (mine["metagame"] is None) == (theirs["metagame"] is None)
        if theirs["metagame"] is not None:
            np.testing.assert_allclose(mine["metagame"], theirs["metagame"], atol=TOL, rtol=0)


@pytest.mark.slow  # about 60 s of CPU, 2 to 3 minutes of wall time on the 2 shared cores
def test_an_agent_killed_between_rounds_and_restarted_continues_as_the_embedded_run(tmp_path):
    """p1 is SIGKILLed right after round 2 completed (rounds are paced 6 s apart, so the kill
    lands between rounds) and, once the referee has dropped it (its lease ran out), started
    again with the same id and checkpoint directory; the rounds that find it gone are voided and
    draw nothing. The coordinator's final parameters, weights and meta-games equal
    ``run_deep_matrl`` of as many rounds as completed, to 1e-6."""
    ids, seed, rounds = ["p0", "p1"], 3, 8
    lg, coord = _league(tmp_path, ids, seed, rounds, "--pace", "6", "--timeout", "30", "--linger", "1")
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        wait_until(lambda: (metric_value(metrics(ready["metrics"]), "league_matrl_rounds_total") or 0) >= 2, 300,
                   "two completed rounds")
        os.kill(json.loads((tmp_path / "p1.json").read_text())["pid"], signal.SIGKILL)
        lg.procs["p1"].wait(timeout=30)
        wait_until(lambda: "p1 not a member" in (tmp_path / "coord.log").read_text(), 120,
                   "the referee to drop p1 (its lease to run out)")
        back = lg.start_agent("p1", "--config", str(lg.config))
        assert back["resumed"], back
        assert coord.wait(timeout=400) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done"
        completed = len(assert_league_equals_embedded(tmp_path, ids, seed, result))
        print(f"{completed} of {rounds} rounds completed")
        assert 3 <= completed < rounds  # rounds were voided, and rounds completed after the restart
        assert "Traceback" not in (tmp_path / "coord.log").read_text()
    finally:
        lg.stop()


@pytest.mark.slow  # each variant's round is checked in-process by default; the real-process matrl run is in
@pytest.mark.parametrize("variant", ["il_pp", "il", "matrl_no_br"])  # test_matrl_deep_league.py
def test_an_ablation_through_the_league_equals_its_embedded_run(tmp_path, variant):
    """2 rounds of the ablation through real processes (referee, two agents, coordinator; K 4,
    hidden 32) equal ``run_deep_matrl`` of the variant from the same seed to 1e-6 (about 40 s of
    wall time each, mostly starting the processes; one in the default suite)."""
    ids, seed, rounds = ["p0", "p1"], 4, 2
    lg, coord = _league(tmp_path, ids, seed, rounds, "--set", f"variant={variant}", "--linger", "1")
    try:
        wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        assert coord.wait(timeout=300) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done"
        assert len(assert_league_equals_embedded(tmp_path, ids, seed, result, [f"variant={variant}"])) == rounds
        protocol = PROTOCOLS[variant]
        assert all((r["metagame"] is None) != protocol.metagame for r in result["rounds"])
    finally:
        lg.stop()


def test_a_checkpoint_of_an_older_trust_layout_takes_the_new_pushes(tmp_path):
    """An agent restored from a checkpoint whose ``matrl-trust`` predates a field (here
    ``response``) serves the rule's current defaults instead, so the coordinator's pushes fit."""
    rounds = InProcessRounds(tmp_path)
    rounds.play_round()
    path = rounds.agents[0].checkpoint
    state = torch.load(path, weights_only=False)
    version, trust = state["kinds"][TRUST]
    state["kinds"][TRUST] = (version, {k: v for k, v in trust.items() if k != "response"})
    torch.save(state, path)
    rounds.restart(0)
    assert "response" in rounds.agents[0].store.snapshot(TRUST)[1]
    rounds.play_round()  # the pushes fit; the round completes
    assert rounds.agents[0].store.version("policy") == 3


@pytest.mark.slow  # about 30 s of CPU, 1 to 2 minutes of wall time (process starts, a 10 s lease to run out)
def test_an_agent_killed_after_it_prepared_takes_the_resent_commit(tmp_path, caplog):
    """Real referee and agent processes, the coordinator's ``MatrlMode`` in this process: in round
    2, once both agents published ``matrl-prepared`` and before any commit push (the harness's
    ``_commit``), p1 is SIGKILLed. p0 takes round 2, p1 owes its commit; the next round finds it
    gone and is voided (logged as owing round 2). p1 started again with the same id and checkpoint
    directory holds round 2 prepared from ``p1.prepared.pt``; the coordinator re-sends the commit
    before the group's next round, and after rounds 3 and 4 the coordinator's parameters, weights
    and meta-games equal ``run_deep_matrl`` of 4 rounds (1e-6)."""
    ids, seed = ["p0", "p1"], 3
    creds = league_credentials(tmp_path, ids, coordinator=True)
    lg = start_league(tmp_path, _small_league(tmp_path, ids), ids, creds)

    class KillBeforeCommit(MatrlMode):
        """Round 2's commit phase starts with p1 dead: it prepared and got no commit."""

        def _commit(self, g, r, seats, stubs, versions):
            if r == 2:
                os.kill(json.loads((tmp_path / "p1.json").read_text())["pid"], signal.SIGKILL)
                lg.procs["p1"].wait(timeout=30)
            return super()._commit(g, r, seats, stubs, versions)

    cfg = CoordinatorConfig(referee=lg.ref["address"], meta_agent="", personas=[], timeout=20.0,
                            credentials=load_credentials(creds["coordinator"]), agents={a: "" for a in ids})
    mode = KillBeforeCommit(load_matrl_config(str(DEEP), SMALL), "matrl", seed, cfg)
    caplog.set_level(logging.INFO, logger="league.coordinator")
    try:
        mode.wait_for_members()
        first = [mode.iterate()["groups_played"] for _ in range(2)]  # round 2 stands, for p0 and p1
        owed = {a: o.round for a, o in mode.owed.items()}
        on_disk = (tmp_path / "ckpt" / "p1.prepared.pt").exists()
        waiting = mode.iterate()["groups_voided"]  # p1 is gone: the group waits for it
        wait_until(lambda: "p1" not in mode._members(), 60, "the referee to drop p1 (its lease to run out)")
        assert lg.start_agent("p1", "--config", str(lg.config))["resumed"]
        wait_until(lambda: "p1" in mode._members(), 60, "p1 to join again")
        last = [mode.iterate()["groups_played"] for _ in range(2)]
        result = mode.result()
        print(f"rounds played {first} (p1 then owes {owed}, prepared file on disk: {on_disk}), voided "
              f"{waiting}, played {last}; rounds {[r['round'] for r in result['rounds']]}, still owed {mode.owed}")
        assert len(assert_league_equals_embedded(tmp_path, ids, seed, result)) == 4
        assert first == [1.0, 1.0] and owed == {"p1": 2} and on_disk and waiting == 1.0 and last == [1.0, 1.0]
        assert [r["round"] for r in result["rounds"]] == [1, 2, 4, 5]  # round 3 voided, its number not reused
        assert not mode.owed and not (tmp_path / "ckpt" / "p1.prepared.pt").exists()
        assert "p1 owes round 2's commit" in caplog.text and "p1 took round 2's commit late" in caplog.text
    finally:
        mode.channel.close()
        lg.stop()
