"""The Markov chain of joint policies (Meta-MAPG section 2): every seat samples with its
current parameters, then each learning seat takes its inner-loop step.

With ``differentiable=True`` the inner steps stay in the autograd graph
(``create_graph``), so later parameters are functions of the initial ones: the
own-learning and peer-learning paths of the meta-gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from league.evaluators import Evaluator
from league.policies.base import Params
from league.updates import UpdateRule


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


def _learns(rule: UpdateRule | None) -> bool:
    return rule is not None and rule.learns


def unroll(evaluator: Evaluator, params0: Sequence[Params], rules: Sequence[UpdateRule | None],
           lrs: Sequence[torch.Tensor | None], length: int, differentiable: bool) -> list[ChainStep]:
    """Run the chain ``phi_0 .. phi_L`` (``length == L``).

    ``params0[k]`` has one row per chain; ``rules[k]`` is the seat's update rule
    (``league.updates``; ``None`` or ``Frozen`` for a seat that does not learn);
    ``lrs[k]`` is ``[B, L]`` (or ``[1, L]``), the learning rate of seat ``k`` at each step.
    Returns ``L + 1`` steps. Without ``differentiable`` each step's parameters are cut from
    the graph (meta-testing: first-order inner steps only).
    """
    if differentiable:  # a learning seat needs a graph to differentiate; keep existing ones
        params = [p if not _learns(rule) else
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
            if not _learns(rule):
                new.append(params[k])
                continue
            lr = lrs[k]
            if lr is None or lr.shape[-1] < length:
                raise ValueError(f"seat {k} learns but has no learning rate for each of {length} steps")
            updated = rule.update(evaluator, params, data, k, lrs, step, create_graph=differentiable)
            new.append(updated if differentiable else _fresh_leaf(updated))
        params = new
    return steps
