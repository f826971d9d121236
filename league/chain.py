"""The Markov chain of joint policies (Meta-MAPG section 2): every seat samples with its
current parameters, then each learning seat takes its inner-loop step.

With ``differentiable=True`` the inner steps stay in the autograd graph
(``create_graph``), so later parameters are functions of the initial ones: the
own-learning and peer-learning paths of the meta-gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from league.evaluators import Evaluator, SampledEvaluator
from league.policies.base import Params, Policy
from league.rollout import Episodes, score


class InnerRule(Protocol):
    """A seat's learning rule: the objective whose gradient it ascends."""

    def objective(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
                  lrs: Sequence[torch.Tensor], step: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class PolicyGradient:
    """Policy-gradient ascent on the seat's own return. ``see_peers`` keeps the other seats'
    parameters live in the objective (DiCE over every seat's log-probabilities), which is
    what makes this seat's next parameters a differentiable function of its peers'."""

    see_peers: bool = True
    plain: bool = False
    """Differentiate the step as a plain function of the parameters with the data held
    fixed (no magic box; ``see_peers`` then has no effect on the gradient)."""

    def objective(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
                  lrs: Sequence[torch.Tensor], step: int) -> torch.Tensor:
        live = range(evaluator.n_agents) if self.see_peers else (k,)
        return evaluator.inner_objective(data, k, live, plain=self.plain)


@dataclass(frozen=True)
class LolaDice:
    """LOLA-DiCE: ascend the own return after the peers take ``lookahead`` policy-gradient
    steps (each on fresh episodes, at their own learning rates), differentiating through
    those look-ahead steps."""

    lookahead: int = 1

    def objective(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
                  lrs: Sequence[torch.Tensor], step: int) -> torch.Tensor:
        everyone = range(evaluator.n_agents)
        ahead = list(params)
        for _ in range(self.lookahead):
            sample = evaluator.observe(ahead)
            ahead = [p if m == k else ascend(p, evaluator.inner_objective(sample, m, everyone),
                                             lrs[m][:, step], create_graph=True)
                     for m, p in enumerate(ahead)]
        return evaluator.inner_objective(evaluator.observe(ahead), k, everyone)


def ascend(params: Params, objective: torch.Tensor, lr: torch.Tensor, create_graph: bool) -> Params:
    """One gradient-ascent step per chain: ``phi + lr[b] * d objective[b] / d phi[b]``."""
    names = list(params)
    grads = torch.autograd.grad(objective.sum(), [params[n] for n in names], create_graph=create_graph)
    out = {}
    for name, g in zip(names, grads):
        v = params[name]
        out[name] = v + lr.reshape(-1, *([1] * (v.dim() - 1))) * g
    return out


@dataclass
class ChainStep:
    """Joint parameters ``phi_l`` and what the evaluator observed under them."""

    params: list[Params]
    data: Any


def expand_params(params: Params, n_chains: int) -> Params:
    """Broadcast shared (``B == 1``) parameters to ``n_chains`` rows without copying."""
    return {k: v.expand(n_chains, *v.shape[1:]) if v.shape[0] == 1 else v for k, v in params.items()}


def _fresh_leaf(params: Params) -> Params:
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


def unroll(evaluator: Evaluator, params0: Sequence[Params], rules: Sequence[InnerRule | None],
           lrs: Sequence[torch.Tensor | None], length: int, differentiable: bool) -> list[ChainStep]:
    """Run the chain ``phi_0 .. phi_L`` (``length == L``).

    ``params0[k]`` has one row per chain; ``rules[k]`` is ``None`` for a frozen seat;
    ``lrs[k]`` is ``[B, L]`` (or ``[1, L]``), the learning rate of seat ``k`` at each step.
    Returns ``L + 1`` steps. Without ``differentiable`` each step's parameters are cut from
    the graph (meta-testing: first-order inner steps only).
    """
    if differentiable:  # a learning seat needs a graph to differentiate; keep existing ones
        params = [p if rule is None else
                  {k: v if v.requires_grad else v.detach().requires_grad_(True) for k, v in p.items()}
                  for p, rule in zip(params0, rules)]
    else:
        params = [_fresh_leaf(p) for p in params0]
    steps: list[ChainStep] = []
    for step in range(length + 1):
        data = evaluator.observe(params)
        steps.append(ChainStep(params, data))
        if step == length:
            break
        new = []
        for k, rule in enumerate(rules):
            if rule is None:
                new.append(params[k])
                continue
            lr = lrs[k]
            if lr is None or lr.shape[-1] < length:
                raise ValueError(f"seat {k} learns but has no learning rate for each of {length} steps")
            objective = rule.objective(evaluator, params, data, k, lrs, step)
            updated = ascend(params[k], objective, lr[:, step], create_graph=differentiable)
            new.append(updated if differentiable else _fresh_leaf(updated))
        params = new
    return steps


def seat_step(evaluator: SampledEvaluator, policy: Policy, params: Params, episodes: Episodes,
              seat: int, lr: torch.Tensor) -> Params:
    """One first-order policy-gradient step of a single seat from played episodes: what an
    agent process does with a referee's broadcast, knowing only its own parameters. Its
    gradient equals the chain's :class:`PolicyGradient` step for that seat (other seats'
    log-probabilities contribute no first-order gradient to it)."""
    n = episodes.actions.shape[-1]
    live = _fresh_leaf(params)
    policies: list[Policy | None] = [policy if m == seat else None for m in range(n)]
    batch = score(policies, [live if m == seat else None for m in range(n)], episodes)
    objective = evaluator.inner_objective(batch, seat, (seat,))
    return {k: v.detach() for k, v in ascend(live, objective, lr, create_graph=False).items()}
