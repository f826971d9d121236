"""The meta-objective of Algorithm 1 and its batched per-chain gradients.

One call unrolls ``B`` chains at once (personas as a tensor dimension) and returns, per
chain, the objective the meta-agent maximises. Because the meta-parameters are expanded to
``B`` rows before the unroll, one backward pass yields every chain's own gradient, which
PCGrad then combines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from league.chain import ChainStep, expand_params, unroll
from league.evaluators import Evaluator
from league.estimators import OuterInputs, get_estimator
from league.learn import discount_weights, discounted_returns, gae_advantages
from league.methods import Method
from league.policies.base import Params
from league.policies.lstm import LSTMValue


@dataclass
class Critic:
    """The meta-agent's separate value network, used for GAE advantages in the outer loss."""

    net: LSTMValue
    params: Params  # B == 1
    gamma: float
    lam: float = 0.95
    normalize: bool = True

    def advantages_and_loss(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages (detached) and the value network's squared error to the discounted
        returns-to-go, from one pass of the value network over the meta-agent's observations."""
        values = self.net.values(self.params, data.obs_of(0))
        rewards = data.rewards[..., 0]
        loss = ((values - discounted_returns(rewards, self.gamma)) ** 2).mean()
        with torch.no_grad():
            adv = gae_advantages(rewards, values.detach(), self.gamma, self.lam)
            if self.normalize:  # per chain and step, so every step weighs alike
                adv = (adv - adv.mean(dim=(1, 2), keepdim=True)) / (adv.std(dim=(1, 2), keepdim=True) + 1e-8)
        return adv, loss


@dataclass
class MetaObjective:
    """Per-chain meta-objective ``[B]`` and the expanded tensors it is a function of."""

    objective: torch.Tensor
    handles: dict[str, torch.Tensor]  # name -> [B, ...] view of a meta-parameter
    steps: list[ChainStep]
    value_loss: torch.Tensor | None


def meta_objective(method: Method, evaluator: Evaluator, policy: Params, lr: torch.Tensor,
                   peers: Sequence[Params], peer_lrs: Sequence[torch.Tensor], length: int,
                   critic: Critic | None = None, entropy_weight: float = 0.0,
                   include_initial: bool = True, per_step: bool = False,
                   chain_baseline: bool = True) -> MetaObjective:
    """The meta-agent (seat 0, ``policy`` with ``B == 1`` and learning rates ``lr[1, L]``)
    against ``B`` persona chains ``peers`` (seats 1..n-1), in the form ``method.estimator``.

    ``include_initial`` adds the return of ``phi_0`` itself (the current-policy term) as the
    authors' code does; the appendix's meta-value ``V_{0:L}`` leaves it out. Advantages
    come from ``critic`` (GAE) or, without one, are the discounted returns-to-go
    ``gamma^t G_t`` (unbiased; used by the exact tests). ``per_step`` divides every term by
    the horizon ``H``, so the objective is on a per-step scale that does not grow with
    ``H`` (the entropy bonus, a per-step mean, is then on the same scale as the rest).
    ``chain_baseline``: the score form subtracts the other chains' mean return from a
    chain's earlier-trajectory weight (off only to enumerate an estimator's expectation)."""
    n_chains = peers[0][next(iter(peers[0]))].shape[0]
    handles = dict(expand_params(policy, n_chains))
    lr_b = lr.expand(n_chains, -1)
    if lr.requires_grad:
        handles["lr"] = lr_b
    meta_params = {k: v for k, v in handles.items() if k != "lr"}
    rules = [method.meta_rule] + [method.peer_rule] * len(peers)
    lrs = [lr_b, *peer_lrs]

    if method.outer == "initial":
        params = [meta_params, *[{k: v.detach().requires_grad_(True) for k, v in p.items()} for p in peers]]
        data = evaluator.observe(params)
        scale = _time_scale(data, per_step)
        objective = method.meta_rule.objective(evaluator, params, data, 0, lrs, 0) * scale
        steps = [ChainStep(params, data)]
        return MetaObjective(objective + _entropy_bonus(data, entropy_weight, scale), handles, steps, None)

    steps = unroll(evaluator, [meta_params, *peers], rules, lrs, length, differentiable=True)
    scale = _time_scale(steps[0].data, per_step)
    advantages, returns, value_losses = [], [], []
    for step in steps:
        adv, ret, value_loss = _advantages(step.data, critic, getattr(evaluator, "gamma", None))
        advantages.append(None if adv is None else adv * scale)
        returns.append(None if ret is None else ret * scale)
        if value_loss is not None:
            value_losses.append(value_loss)
    estimator = get_estimator(method.estimator)
    inputs = OuterInputs(steps, method, advantages, returns, include_initial,
                         normalize=critic is not None and critic.normalize, chain_baseline=chain_baseline)
    objective = estimator.objective(evaluator, inputs)
    if include_initial and entropy_weight:  # on phi_0, counted as one of the averaged terms
        objective = objective + _entropy_bonus(steps[0].data, entropy_weight, scale) / (length + 1)
    value_loss = torch.stack(value_losses).mean() if value_losses else None
    return MetaObjective(objective, handles, steps, value_loss)


def _time_scale(data, per_step: bool) -> float:
    """``1 / H`` for a per-step objective (sampled data only), else 1."""
    rewards = getattr(data, "rewards", None)
    return 1.0 / rewards.shape[-1] if per_step and rewards is not None else 1.0


def _entropy_bonus(data, weight: float, scale: float) -> torch.Tensor | float:
    """``weight * mean_K sum_t H(pi_0(. | s_t)) * scale`` of the meta-agent's policy."""
    if not weight or getattr(data, "entropy", None) is None:
        return 0.0
    return weight * data.entropy[0].sum(-1).mean(-1) * scale


def _advantages(data, critic: Critic | None, gamma: float | None):
    """The meta-agent's advantages ``[B, K, H]`` and discounted episode returns ``[B, K]``
    on one step's data (``None`` for exact evaluators), and the critic's loss."""
    if getattr(data, "rewards", None) is None:
        return None, None, None
    rewards = data.rewards[..., 0]
    w = discount_weights(rewards.shape[-1], gamma, dtype=rewards.dtype, device=rewards.device)
    episode_returns = (rewards * w).sum(-1)
    if critic is None:
        return w * discounted_returns(rewards, gamma), episode_returns, None
    adv, loss = critic.advantages_and_loss(data)
    return adv, episode_returns, loss


def per_chain_gradients(result: MetaObjective) -> dict[str, torch.Tensor]:
    """Gradient of each chain's objective w.r.t. the meta-parameters: ``name -> [B, ...]``."""
    names = list(result.handles)
    grads = torch.autograd.grad(result.objective.sum(), [result.handles[n] for n in names],
                                allow_unused=True)
    return {n: (torch.zeros_like(result.handles[n]) if g is None else g) for n, g in zip(names, grads)}
