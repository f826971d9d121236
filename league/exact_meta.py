"""The exact meta-value of a small chain, by enumerating every trajectory of every step, and
the exact expectation of any outer estimator: the ground truth the estimators of
``league.estimators`` are measured against (``tests/test_estimators.py``,
``scripts/estimator_table.py``).

The chain (tabular seats, ``K`` episodes of ``H`` steps per chain step, ``L`` inner steps):
``phi_{l+1}^m = phi_l^m + alpha_l^m g^m(phi_l^m; tau_l)`` with the REINFORCE estimate
``g^m = 1/K sum_{k,t} grad log pi_m(a_t^m | s_t) * sum_{t' >= t} gamma^t' r_t'^m`` (no
baseline). The meta-value averages the meta-agent's exact expected discounted return
``V^0(phi_l)`` over the chain steps ``l in S`` (``S = 0..L`` with ``include_initial``, else
``1..L``)::

    J(phi_0^0, alpha^0) = sum over (tau_0 .. tau_{L-1}) of  P(tau_0..tau_{L-1}) * mean_{l in S} V^0(phi_l)

with the sequence probability ``P`` a function of the meta-parameters and every inner step
a plain function of its (fixed) data, so no magic box appears. This module computes ``J``
independently of the chain code (closed-form tabular scores, its own loop), so that a bug
in ``league.chain`` or ``league.estimators`` cannot hide in the target.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import torch

from league.evaluators import SampledEvaluator
from league.games.exact import exact_value
from league.games.iterated import IteratedMatrixGame
from league.meta import meta_objective, per_chain_gradients
from league.methods import Method
from league.policies.tabular import Tabular
from league.rollout import Batch, Episodes, score


def enumerate_episodes(game: IteratedMatrixGame, n_episodes: int, horizon: int,
                       dtype: torch.dtype = torch.float64) -> Episodes:
    """Every possible batch of ``n_episodes`` episodes of ``horizon`` steps: ``M = (A^n)^(H K)``
    outcomes as ``Episodes`` with ``B == M`` (the start state is fixed, the game is
    deterministic given the joint actions)."""
    n, a = game.n_agents, game.n_actions
    joint = torch.tensor(list(itertools.product(range(a), repeat=n)), dtype=torch.long)  # [A^n, n]
    cells = n_episodes * horizon
    idx = torch.tensor(list(itertools.product(range(joint.shape[0]), repeat=cells)), dtype=torch.long)
    actions = joint[idx].reshape(-1, n_episodes, horizon, n)  # [M, K, H, n]
    state = game.reset(actions.shape[:2])
    obs, rewards = [], []
    for t in range(horizon):
        obs.append(game.observe(state, dtype=dtype))
        state, r = game.step(state, actions[:, :, t])
        rewards.append(r.to(dtype))
    return Episodes(torch.stack(obs, 2), actions, torch.stack(rewards, 2))


def sequence_episodes(outcomes: Episodes, n_steps: int) -> list[Episodes]:
    """All ``M^n_steps`` sequences of outcomes, one ``Episodes`` per chain step; chain ``b``
    plays outcome ``(b // M^(n_steps-1-l)) % M`` at step ``l``."""
    m = outcomes.actions.shape[0]
    b = torch.arange(m ** n_steps)
    out = []
    for l in range(n_steps):
        i = (b // m ** (n_steps - 1 - l)) % m
        out.append(Episodes(outcomes.obs[i], outcomes.actions[i], outcomes.rewards[i]))
    return out


def _log_softmax_at(logits: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log pi(a | s)`` of tabular logits ``[B, S, A]`` at one-hot states ``obs [B, K, H, S]``."""
    logp = torch.log_softmax(logits, -1)  # [B, S, A]
    per_state = torch.einsum("bkhs,bsa->bkha", obs, logp)
    return per_state.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _reinforce_step(logits: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """The REINFORCE estimate for tabular logits in closed form:
    ``1/K sum_{k,t} e_{s_t} (e_{a_t} - pi(. | s_t))^T * sum_{t' >= t} gamma^t' r_t'``."""
    horizon = rewards.shape[-1]
    disc = gamma ** torch.arange(horizon, dtype=rewards.dtype)
    weights = torch.flip(torch.cumsum(torch.flip(rewards * disc, [-1]), -1), [-1])  # [B, K, H]
    probs = torch.softmax(logits, -1)
    onehot_a = torch.nn.functional.one_hot(actions, logits.shape[-1]).to(logits.dtype)  # [B, K, H, A]
    pi_s = torch.einsum("bkhs,bsa->bkha", obs, probs)
    return torch.einsum("bkhs,bkha,bkh->bsa", obs, onehot_a - pi_s, weights) / rewards.shape[1]


def exact_meta_value(game: IteratedMatrixGame, logits: Sequence[torch.Tensor], lrs: Sequence[torch.Tensor],
                     length: int, n_episodes: int, horizon: int, gamma: float,
                     include_initial: bool = True) -> torch.Tensor:
    """``J`` (a scalar) for seat ``m``'s initial logits ``logits[m] [S, A]`` and per-step
    learning rates ``lrs[m] [L]`` (zeros: a frozen seat); differentiable with respect to
    every input. Seat 0 is the meta-agent."""
    outcomes = enumerate_episodes(game, n_episodes, horizon, logits[0].dtype)
    data = sequence_episodes(outcomes, length)
    n_seq = data[0].actions.shape[0] if length else 1
    params = [p.unsqueeze(0).expand(n_seq, -1, -1) for p in logits]
    values = [exact_value(game, [torch.softmax(p, -1) for p in params], gamma, horizon)[:, 0]]
    log_prob = torch.zeros(n_seq, dtype=logits[0].dtype)
    for l in range(length):
        ep = data[l]
        new = []
        for m, p in enumerate(params):
            log_prob = log_prob + _log_softmax_at(p, ep.obs, ep.actions[..., m]).sum(dim=(1, 2))
            new.append(p + lrs[m][l] * _reinforce_step(p, ep.obs, ep.actions[..., m], ep.rewards[..., m], gamma))
        params = new
        values.append(exact_value(game, [torch.softmax(p, -1) for p in params], gamma, horizon)[:, 0])
    terms = torch.stack(values if include_initial else values[1:])  # [|S|, n_seq]
    return (log_prob.exp() * terms.mean(0)).sum()


@dataclass
class ReplayEvaluator(SampledEvaluator):
    """A sampled evaluator that plays given episodes instead of sampling: chain step ``l``
    is scored on ``episodes[l]`` (used to enumerate an estimator's every outcome)."""

    episodes: list[Episodes] = field(default_factory=list)
    cursor: int = 0

    def observe(self, params: Sequence[dict[str, torch.Tensor]]) -> Batch:
        ep = self.episodes[self.cursor]
        self.cursor += 1
        return score(self.policies, params, ep)


@dataclass
class ChainSpec:
    """A small chain to enumerate: the game, seat 0's initial logits and learning rates, the
    peers' initial logits and fixed learning rates, and its sizes."""

    game: IteratedMatrixGame
    meta_logits: torch.Tensor  # [S, A]
    meta_lr: torch.Tensor  # [L]
    peer_logits: list[torch.Tensor]  # each [S, A]
    peer_lr: float
    length: int
    n_episodes: int
    horizon: int
    gamma: float
    include_initial: bool = True

    def exact_gradient(self) -> dict[str, torch.Tensor]:
        """``grad J`` with respect to seat 0's logits and learning rates (exact)."""
        theta = self.meta_logits.detach().clone().requires_grad_(True)
        lr = self.meta_lr.detach().clone().requires_grad_(True)
        peer_lrs = [torch.full((self.length,), self.peer_lr, dtype=theta.dtype)] * len(self.peer_logits)
        j = exact_meta_value(self.game, [theta, *self.peer_logits], [lr, *peer_lrs], self.length,
                             self.n_episodes, self.horizon, self.gamma, self.include_initial)
        g_theta, g_lr = torch.autograd.grad(j, [theta, lr])
        return {"logits": g_theta, "lr": g_lr}

    def _objective(self, method: Method, evaluator: SampledEvaluator, n_chains: int, chain_baseline: bool):
        dtype = self.meta_logits.dtype
        policy = {"logits": self.meta_logits.detach().clone().unsqueeze(0)}
        lr = self.meta_lr.detach().clone().unsqueeze(0).requires_grad_(True)
        peers = [{"logits": p.detach().unsqueeze(0).expand(n_chains, -1, -1).clone()} for p in self.peer_logits]
        peer_lrs = [torch.full((n_chains, self.length), self.peer_lr, dtype=dtype)] * len(peers)
        policy = {k: v.requires_grad_(True) for k, v in policy.items()}
        return meta_objective(method, evaluator, policy, lr, peers, peer_lrs, self.length, critic=None,
                              include_initial=self.include_initial, chain_baseline=chain_baseline)

    def _evaluator(self, generator: torch.Generator | None = None, episodes: list[Episodes] | None = None):
        game, dtype = self.game, self.meta_logits.dtype
        tab = Tabular(game.n_states, game.n_actions, dtype)
        common = dict(game=game, policies=[tab] * game.n_agents, n_episodes=self.n_episodes,
                      horizon=self.horizon, gamma=self.gamma, generator=generator or torch.Generator(),
                      dtype=dtype, use_baseline=False)
        if episodes is None:
            return SampledEvaluator(**common)
        return ReplayEvaluator(**common, episodes=episodes)

    def estimator_expectation(self, method: Method) -> dict[str, torch.Tensor]:
        """The exact expectation of ``method``'s sampled meta-gradient (its own target): the
        per-chain estimate on every sequence ``tau_0 .. tau_L``, weighted by the sequence's
        probability. (The leave-one-out chain baseline is off: enumerated chains are not
        independent samples; it is unbiased, so the target is the same.)"""
        outcomes = enumerate_episodes(self.game, self.n_episodes, self.horizon, self.meta_logits.dtype)
        data = sequence_episodes(outcomes, self.length + 1)
        n = data[0].actions.shape[0]
        result = self._objective(method, self._evaluator(episodes=data), n, chain_baseline=False)
        grads = per_chain_gradients(result)
        with torch.no_grad():
            log_p = sum(step.data.logp[m].sum(dim=(1, 2)) for step in result.steps
                        for m in range(self.game.n_agents))
            w = log_p.exp()
        return {k: torch.einsum("b,b...->...", w, v.detach()) for k, v in grads.items()}

    def sampled_gradients(self, method: Method, n_chains: int, seed: int,
                          chain_baseline: bool = True) -> dict[str, torch.Tensor]:
        """``n_chains`` independent sampled estimates ``name -> [n_chains, ...]``."""
        g = torch.Generator().manual_seed(seed)
        result = self._objective(method, self._evaluator(generator=g), n_chains, chain_baseline)
        return {k: v.detach() for k, v in per_chain_gradients(result).items()}
