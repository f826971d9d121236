"""Opponent modeling (Meta-MAPG Algorithms 3 and 4): the maximum-likelihood peer fit against
its closed form, the replicated peer update, and the meta-gradient against centralized
Meta-MAPG where the two must agree exactly.

Exact anchors:
- a tabular policy's maximum-likelihood fit is the empirical action frequency of every
  visited state (closed form);
- with a one-step chain (L = 1) and a fit that recovers the true peer exactly, Algorithm 3's
  meta-gradient is centralized Meta-MAPG's, to float64 precision: the peer's replicated update
  from the fit is the peer's update, and the random inferred ``hat phi_0`` enters no gradient.
"""

from __future__ import annotations

import torch

from league.config import load_config
from league.evaluators import SampledEvaluator
from league.games import ipd
from league.meta import Critic, meta_objective
from league.meta_training import MetaTraining
from league.methods import make_method
from league.opponent_model import InferredPeers, OpponentModelConfig, fit_policy, random_init
from league.policies import LSTMCategorical, LSTMValue, Tabular
from league.rollout import sample_episodes

F64 = torch.float64


def test_tabular_fit_is_the_empirical_frequency():
    """Algorithm 4 on a tabular peer: the fit's action probabilities equal the observed
    frequencies in every state where each action was seen (where the MLE is finite)."""
    game = ipd()
    g = torch.Generator().manual_seed(3)
    policy = Tabular(game.n_states, game.n_actions, F64)
    true = [{"logits": torch.randn(2, game.n_states, game.n_actions, generator=g, dtype=F64)} for _ in range(2)]
    episodes = sample_episodes(game, [policy, policy], true, 2, 32, 12, g, F64)
    seat = 1
    fit, info = fit_policy(policy, random_init(policy, 2, g, 0.1), episodes, seat, OpponentModelConfig())
    counts = torch.einsum("bkhs,bkha->bsa", episodes.obs,
                          torch.nn.functional.one_hot(episodes.actions[..., seat], game.n_actions).to(F64))
    full = (counts > 0).all(-1)  # [B, S]: states where every action was observed
    assert info.converged and full.sum() >= 4
    freq = counts / counts.sum(-1, keepdim=True)
    got = torch.softmax(fit["logits"], -1)
    assert torch.allclose(got[full], freq[full], atol=1e-5), (got[full] - freq[full]).abs().max()
    # the fit is of the peer's actions, not anyone else's: seat 0's frequencies differ
    other = torch.einsum("bkhs,bkha->bsa", episodes.obs,
                         torch.nn.functional.one_hot(episodes.actions[..., 0], game.n_actions).to(F64))
    assert not torch.allclose(got[full], (other / other.sum(-1, keepdim=True))[full], atol=1e-2)


class _OracleFit(InferredPeers):
    """Opponent modeling whose fit recovers the true peer exactly (a diagnostic: the limit of
    perfect inference); everything else is Algorithm 3's."""

    def infer(self, policy, predicted, episodes, seat):
        return {k: v.clone() for k, v in self.true_peers[seat - 1].items()}


def _meta_gradient(method_name: str, oracle: bool, seed: int = 0):
    game = ipd()
    h, L, B = 8, 1, 4
    meta_policy = LSTMCategorical(game.obs_dim, game.n_actions, h, F64)
    peer = Tabular(game.n_states, game.n_actions, F64)
    g = torch.Generator().manual_seed(seed)
    meta = {k: v.requires_grad_(True) for k, v in meta_policy.init_params(g).items()}
    value = LSTMValue(obs_dim=game.obs_dim, hidden=h, dtype=F64)
    critic = Critic(value, value.init_params(g), 0.96, 0.95)
    lr = torch.full((1, L), 0.7, dtype=F64, requires_grad=True)
    true_peers = [{"logits": torch.randn(B, game.n_states, game.n_actions, generator=g, dtype=F64)}]
    peer_lrs = [torch.full((B, L), 0.9, dtype=F64)]
    method = make_method(method_name)
    evaluator = SampledEvaluator(game, [meta_policy, peer], 16, 10, 0.96, torch.Generator().manual_seed(11), F64)
    replica = true_peers
    if method.peer_access == "inferred":
        cls = _OracleFit if oracle else InferredPeers
        evaluator = cls(evaluator, true_peers, peer_lrs, OpponentModelConfig())
        replica = [random_init(peer, B, torch.Generator().manual_seed(5), 0.5)]
    result = meta_objective(method, evaluator, meta, lr, replica, peer_lrs, L, critic, 0.1, True, True)
    leaves = [*meta.values(), lr]
    grads = torch.autograd.grad(result.objective.sum(), leaves, allow_unused=True)
    return torch.cat([gr.flatten() for gr in grads]), evaluator


def test_perfect_inference_gives_centralized_meta_gradient():
    central, _ = _meta_gradient("meta-mapg", oracle=False)
    inferred, _ = _meta_gradient("meta-mapg-om", oracle=True)
    pg, _ = _meta_gradient("meta-pg", oracle=False)
    assert torch.allclose(central, inferred, atol=1e-10, rtol=0), (central - inferred).abs().max()
    # sharp: the peer-learning term is not negligible here (Meta-PG drops it)
    assert (central - pg).abs().max() > 1e-3


def test_real_fit_meta_gradient_differs_but_never_touches_the_true_peers():
    """With the real (noisy) fit the meta-gradient moves away from the centralized one, and the
    true peers' parameters have no path into it (the meta-agent never reads them)."""
    central, _ = _meta_gradient("meta-mapg", oracle=False)
    inferred, evaluator = _meta_gradient("meta-mapg-om", oracle=False)
    assert torch.isfinite(inferred).all()
    assert (central - inferred).abs().max() > 1e-6
    assert all(not v.requires_grad for p in evaluator.true_peers for v in p.values())
    errors = evaluator.errors
    assert len(errors) == 2 and all(0 <= e <= 1 for step in errors for e in step["fit"] + step["predicted"])


def test_meta_training_reports_model_error_along_the_chain():
    cfg = load_config("configs/ipd_quick.toml", ["train.meta_batch=2", "chain.trajectories=64", "chain.horizon=20",
                                                 "chain.length=2", "dtype=\"float64\""])
    mt = MetaTraining.build(cfg, "meta-mapg-om", 0)
    stats = mt.iterate(mt.evaluator, mt.sample_peers())
    fit = [stats[f"om_fit_error_step{l}"] for l in range(3)]
    predicted = stats["om_predicted_error_step0"]
    # 1280 observed actions per chain: the fit is close; the random initial guess is not
    assert max(fit) < 0.1 and predicted > 2 * max(fit), (fit, predicted)
