"""A meta-update built micro-batch by micro-batch equals the all-at-once update on the same
chains' data: Meta-MAPG with the LSTM meta-agent, its critic, PCGrad and Adam, the chains'
episodes replayed so that both paths see identical data."""

from __future__ import annotations

import pytest
import torch

from league.exact_meta import ReplayEvaluator
from league.games import ipd
from league.learner import MetaLearner, OuterConfig
from league.meta import Critic, meta_objective
from league.methods import make_method
from league.policies import LSTMCategorical, LSTMValue, Tabular
from league.rollout import Episodes, sample_episodes

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
