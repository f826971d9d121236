"""A meta-update built micro-batch by micro-batch equals the all-at-once update on the same
chains' data: Meta-MAPG with the LSTM meta-agent, its critic, PCGrad and Adam, the chains'
episodes replayed so that both paths see identical data."""

from __future__ import annotations

import pytest
import torch

from league.config import load_config
from league.evaluators import SampledEvaluator
from league.exact_meta import ReplayEvaluator
from league.games import ipd
from league.learner import MetaLearner, OuterConfig
from league.meta import Critic, meta_objective
from league.meta_training import MetaTraining
from league.methods import make_method
from league.policies import LSTMCategorical, LSTMValue, Tabular
from league.rollout import Episodes, sample_episodes
from tests.league_procs import ROOT

pytestmark = pytest.mark.timeout(120)

B, K, H, L = 5, 4, 6, 2


def _setup(seed: int = 0):
    game = ipd()
    meta = LSTMCategorical(obs_dim=game.obs_dim, out_dim=2, hidden=8)
    value = LSTMValue(obs_dim=game.obs_dim, hidden=8)
    table = Tabular(game.n_states, game.n_actions)
    g = torch.Generator().manual_seed(seed)
    policy, critic_params = meta.init_params(g), value.init_params(g)
    peers = [{"logits": torch.randn(B, 5, 2, generator=g)}]
    # one batch of episodes per chain step, from random joint policies: replayed, not sampled
    episodes = [sample_episodes(game, [table, table], [{"logits": torch.randn(B, 5, 2, generator=g)}] * 2,
                                B, K, H, g) for _ in range(L + 1)]
    return game, meta, value, table, policy, critic_params, peers, episodes


def _learner(meta_policy, critic_params, value, seed: int) -> MetaLearner:
    critic = Critic(value, {k: v.clone() for k, v in critic_params.items()}, gamma=0.96)
    cfg = OuterConfig(actor_lr=0.05, critic_lr=0.05, grad_clip=None)
    return MetaLearner(meta_policy, torch.full((1, L), 0.3), True, critic, cfg, torch.Generator().manual_seed(seed))


def _objective(game, meta, table, learner, peers, episodes, start, stop):
    chunk = [Episodes(e.obs[start:stop], e.actions[start:stop], e.rewards[start:stop]) for e in episodes]
    evaluator = ReplayEvaluator(game, [meta, table], K, H, 0.96, torch.Generator(), episodes=chunk)
    chain_peers = [{k: v[start:stop] for k, v in p.items()} for p in peers]
    return meta_objective(make_method("meta-mapg"), evaluator, learner.policy, learner.lr, chain_peers,
                          [torch.full((stop - start, L), 0.5)], L, learner.critic, entropy_weight=0.1)


@pytest.mark.parametrize("micro_batch", [1, 2, 5])
def test_micro_batched_update_equals_the_all_at_once_update(micro_batch: int) -> None:
    game, meta, value, table, policy, critic_params, peers, episodes = _setup()
    whole = _learner(policy, critic_params, value, seed=3)
    parts = _learner(policy, critic_params, value, seed=3)
    for _ in range(2):  # two updates: the second starts from the first's (Adam state included)
        stats_whole = whole.step(_objective(game, meta, table, whole, peers, episodes, 0, B))
        stats_parts = parts.step_micro_batched(
            lambda s, e: _objective(game, meta, table, parts, peers, episodes, s, e), B, micro_batch)
        assert stats_whole["grad_norm"] > 1e-3
        for key in ("objective", "grad_norm", "value_loss"):
            assert stats_parts[key] == pytest.approx(stats_whole[key], rel=1e-5, abs=1e-7), key
    for name in whole.policy:
        torch.testing.assert_close(parts.policy[name], whole.policy[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.lr, whole.lr, rtol=1e-5, atol=1e-6)
    for name in whole.critic.params:
        torch.testing.assert_close(parts.critic.params[name], whole.critic.params[name], rtol=1e-5, atol=1e-6)
    moved = max(float((whole.policy[n] - policy[n]).detach().abs().max()) for n in policy)
    assert moved > 1e-3  # the updates did move the parameters


def test_micro_batch_must_be_positive_and_objectives_sized() -> None:
    game, meta, value, table, policy, critic_params, peers, episodes = _setup()
    learner = _learner(policy, critic_params, value, seed=0)
    with pytest.raises(ValueError, match="micro_batch"):
        learner.step_micro_batched(lambda s, e: None, B, 0)
    with pytest.raises(ValueError, match="returned 5 chains"):
        learner.step_micro_batched(lambda s, e: _objective(game, meta, table, learner, peers, episodes, 0, B), B, 2)


class _Recording(SampledEvaluator):
    """Samples as usual and keeps every chain step's episodes."""

    def __init__(self, base: SampledEvaluator) -> None:
        super().__init__(base.game, base.policies, base.n_episodes, base.horizon, base.gamma, base.generator)
        self.played: list[Episodes] = []

    def play(self, params):
        self.played.append(super().play(params))
        return self.played[-1]


class _Replaying(SampledEvaluator):
    """Replays recorded chain steps to the micro-batches in turn: the chains ``start:stop``
    of every step, then the next micro-batch's."""

    def __init__(self, base: SampledEvaluator, played: list[Episodes]) -> None:
        super().__init__(base.game, base.policies, base.n_episodes, base.horizon, base.gamma, base.generator)
        self.played, self.start, self.step = played, 0, 0

    def play(self, params):
        n = max(p[next(iter(p))].shape[0] for p in params)
        e = self.played[self.step]
        out = Episodes(*(x[self.start:self.start + n] for x in (e.obs, e.actions, e.rewards)))
        self.step += 1
        if self.step == len(self.played):
            self.start, self.step = self.start + n, 0
        return out


def _quick(*overrides: str):
    return load_config(ROOT / "configs" / "ipd_quick.toml",
                       ["chain.trajectories=4", "chain.horizon=6", "chain.length=2", "train.meta_batch=4",
                        "agent.hidden=8", *overrides])


def test_train_micro_batch_gives_the_all_at_once_iteration_on_the_same_episodes() -> None:
    """``train.micro_batch`` wires ``step_micro_batched`` into meta-training: one iteration
    of ``MetaTraining`` in micro-batches of 2 equals the all-at-once iteration when both see
    the same episodes (the micro-batched path draws its own, so they are replayed here)."""
    whole = MetaTraining.build(_quick(), "meta-mapg", 0)
    peers = whole.sample_peers()
    recording = _Recording(whole.evaluator)
    stats_whole = whole.iterate(recording, peers)
    parts = MetaTraining.build(_quick("train.micro_batch=2"), "meta-mapg", 0)
    stats_parts = parts.iterate(_Replaying(parts.evaluator, recording.played), peers)
    assert stats_whole["grad_norm"] > 1e-3
    for key in ("objective", "grad_norm", "meta_reward"):
        assert stats_parts[key] == pytest.approx(stats_whole[key], rel=1e-5, abs=1e-7), key
    for name in whole.learner.policy:
        torch.testing.assert_close(parts.learner.policy[name], whole.learner.policy[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.learner.lr, whole.learner.lr, rtol=1e-5, atol=1e-6)


def test_train_micro_batch_refuses_an_estimator_that_couples_chains() -> None:
    mt = MetaTraining.build(_quick("train.micro_batch=2", "train.estimator=score"), "meta-mapg", 0)
    with pytest.raises(ValueError, match="'score' estimator couples the chains"):
        mt.iterate(mt.evaluator, mt.sample_peers())


def test_train_micro_batch_runs_opponent_modeling_and_reports_its_error() -> None:
    mt = MetaTraining.build(_quick("train.micro_batch=2"), "meta-mapg-om", 0)
    stats = mt.iterate(mt.evaluator, mt.sample_peers())
    assert all(0 < stats[f"om_fit_error_step{l}"] <= 1 for l in range(3))
