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
from league.learn import discounted_returns, gae_advantages
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
        returns-to-go, from one pass of the value network over ``data.obs``."""
        values = self.net.values(self.params, data.obs)
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
                   include_initial: bool = True) -> MetaObjective:
    """The meta-agent (seat 0, ``policy`` with ``B == 1`` and learning rates ``lr[1, L]``)
    against ``B`` persona chains ``peers`` (seats 1..n-1). ``include_initial`` adds the
    return of ``phi_0`` itself (the current-policy term) as the authors' code does; the
    appendix's meta-value ``V_{0:L}`` leaves it out."""
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
        objective = method.meta_rule.objective(evaluator, params, data, 0, lrs, 0)
        steps = [ChainStep(params, data)]
        if entropy_weight:
            objective = objective + entropy_weight * data.entropy[0].mean(dim=(1, 2))
        return MetaObjective(objective, handles, steps, None)

    steps = unroll(evaluator, [meta_params, *peers], rules, lrs, length, differentiable=True)
    peer_seats = set(range(1, evaluator.n_agents))
    terms, value_losses = [], []
    for l, step in enumerate(steps):
        if l == 0 and not include_initial:
            continue
        live = {0} if l == 0 else ({0} if method.own else set()) | (peer_seats if method.peer else set())
        adv = None
        if critic is not None:
            adv, value_loss = critic.advantages_and_loss(step.data)
            value_losses.append(value_loss)
        if not live:
            terms.append(torch.zeros(n_chains, dtype=lr.dtype))
            continue
        term = evaluator.outer_objective(step.data, 0, live, adv)
        if l == 0 and entropy_weight:
            term = term + entropy_weight * step.data.entropy[0].mean(dim=(1, 2))
        terms.append(term)
    objective = torch.stack(terms).mean(0)
    value_loss = torch.stack(value_losses).mean() if value_losses else None
    return MetaObjective(objective, handles, steps, value_loss)


def per_chain_gradients(result: MetaObjective) -> dict[str, torch.Tensor]:
    """Gradient of each chain's objective w.r.t. the meta-parameters: ``name -> [B, ...]``."""
    names = list(result.handles)
    grads = torch.autograd.grad(result.objective.sum(), [result.handles[n] for n in names],
                                allow_unused=True)
    return {n: (torch.zeros_like(result.handles[n]) if g is None else g) for n, g in zip(names, grads)}
