"""Update rules: how a seat's parameters change after it has played, as functions that return
the new parameters. One registry (:data:`UPDATE_RULES`) serves the embedded chain
(``league.chain.unroll``), agent processes (:func:`seat_step`) and the coordinator's replica,
so all three call the same entry (the differentiable-game rules ``naive``, ``lola``,
``lola-taylor``, ``hola``, ``cola`` and ``meva`` come in through ``league.meva.bridge``)::

    rule = make_update_rule("pg")
    new_params = rule.update(evaluator, params, data, k, lrs, step, create_graph)

``params`` are every seat's parameters (one row per chain), ``data`` what the evaluator
observed under them, ``k`` the seat that updates, ``lrs[k]`` its learning rates ``[B, L]``
(decided in one place, :class:`league.setting.Setting`), ``step`` the chain step. With
``create_graph`` the step stays in the autograd graph (the meta-gradient's paths through
learning). A rule that learns by gradient ascent only supplies ``objective``; frozen seats,
trust-region steps, best responses and followers of a learned value return parameters their
own way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from league.evaluators import Evaluator, SampledEvaluator
from league.policies.base import Params, Policy
from league.rollout import Episodes, score


class UpdateRule(Protocol):
    """A seat's learning rule."""

    learns: bool
    """False for a seat whose parameters never change (the chain keeps no graph for it)."""
    needs_rollouts: bool
    """True when the rule plays episodes of its own (look-ahead), which an agent process that
    only sees the referee's broadcasts cannot do."""

    def update(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
               lrs: Sequence[torch.Tensor], step: int, create_graph: bool) -> Params: ...


def ascend(params: Params, objective: torch.Tensor, lr: torch.Tensor, create_graph: bool) -> Params:
    """One gradient-ascent step per chain: ``phi + lr[b] * d objective[b] / d phi[b]``."""
    names = list(params)
    grads = torch.autograd.grad(objective.sum(), [params[n] for n in names], create_graph=create_graph)
    out = {}
    for name, g in zip(names, grads):
        v = params[name]
        out[name] = v + lr.reshape(-1, *([1] * (v.dim() - 1))) * g
    return out


class GradientAscent(ABC):
    """Base of the rules that take one ascent step on an objective at the seat's learning
    rate for the chain step; subclasses define ``objective``."""

    learns = True
    needs_rollouts = False

    @abstractmethod
    def objective(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
                  lrs: Sequence[torch.Tensor], step: int) -> torch.Tensor:
        """Seat ``k``'s surrogate per chain ``[B]``, whose gradient the step ascends."""

    def update(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
               lrs: Sequence[torch.Tensor], step: int, create_graph: bool) -> Params:
        lr = lrs[k]
        if lr is None or lr.shape[-1] <= step:
            raise ValueError(f"seat {k} learns but has no learning rate for chain step {step}")
        return ascend(params[k], self.objective(evaluator, params, data, k, lrs, step), lr[:, step], create_graph)


@dataclass(frozen=True)
class PolicyGradient(GradientAscent):
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
class LolaDice(GradientAscent):
    """LOLA-DiCE: ascend the own return after the peers take ``lookahead`` policy-gradient
    steps (each on fresh episodes, at their own learning rates), differentiating through
    those look-ahead steps."""

    lookahead: int = 1
    needs_rollouts = True

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


@dataclass(frozen=True)
class Frozen:
    """A seat that never learns (a fixed persona, an opponent held still)."""

    learns = False
    needs_rollouts = False

    def update(self, evaluator: Evaluator, params: Sequence[Params], data: Any, k: int,
               lrs: Sequence[torch.Tensor], step: int, create_graph: bool) -> Params:
        return params[k]


def _matrl_trust_region(**hyper: Any) -> UpdateRule:
    from league.matrl.sampled import MatrlTrustRegion  # league.matrl imports the rollout this module serves

    return MatrlTrustRegion(**hyper)


def _ppo_trust_region(**hyper: Any) -> UpdateRule:
    from league.matrl.deep import PPOTrustRegion

    return PPOTrustRegion(**hyper)


#: Update rules by name; each entry builds a rule from its hyperparameters.
UPDATE_RULES: dict[str, Callable[..., UpdateRule]] = {
    "pg": PolicyGradient,
    "lola-dice": LolaDice,
    "frozen": Frozen,
    "matrl": _matrl_trust_region,  # MATRL's trust-region step: the predicted parameters (league.matrl.sampled)
    "ppo-matrl": _ppo_trust_region,  # deep MATRL's PPO trust-region step, critic and seat generator (league.matrl.deep)
}
# The differentiable-game rules (exact joint points, no episodes) through one bridge, so an
# embedded differentiable league and an agent process call the same entry (docs/meva.md).
from league.meva.bridge import BRIDGED_RULES  # noqa: E402  (after the classes the bridge mirrors)

UPDATE_RULES.update(BRIDGED_RULES)


def make_update_rule(name: str, **hyper: Any) -> UpdateRule:
    """The registered rule ``name`` built with ``hyper`` (e.g. ``lookahead=2``)."""
    if name not in UPDATE_RULES:
        raise ValueError(f"unknown update rule {name!r}; known: {', '.join(UPDATE_RULES)}")
    return UPDATE_RULES[name](**hyper)


def _fresh_leaf(params: Params) -> Params:
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


def seat_step(rule: UpdateRule, evaluator: SampledEvaluator, policy: Policy, params: Params,
              episodes: Episodes, seat: int, lr: torch.Tensor) -> Params:
    """One first-order update of a single seat from played episodes: what an agent process
    does with a referee's broadcast, knowing only its own parameters. For a policy-gradient
    rule its gradient equals the chain's step for that seat (the other seats'
    log-probabilities contribute no first-order gradient to it); ``lr`` is ``[B]``."""
    if not rule.learns:
        return params
    if rule.needs_rollouts:
        raise ValueError(f"{type(rule).__name__} plays look-ahead episodes of its own; an agent process "
                         "learns only from the referee's broadcasts")
    n = episodes.n_agents
    live = _fresh_leaf(params)
    policies: list[Policy | None] = [policy if m == seat else None for m in range(n)]
    seats: list[Params | None] = [live if m == seat else None for m in range(n)]
    batch = score(policies, seats, episodes)
    lrs: list[torch.Tensor | None] = [None] * n
    lrs[seat] = lr.reshape(-1, 1)
    new = rule.update(_SingleSeat(evaluator, seat), seats, batch, seat, lrs, 0, create_graph=False)  # type: ignore[arg-type]
    return {k: v.detach() for k, v in new.items()}


class _SingleSeat:
    """An evaluator view for one seat that knows only its own parameters: its objective keeps
    only that seat's log-probabilities live."""

    def __init__(self, evaluator: SampledEvaluator, seat: int) -> None:
        self.evaluator, self.seat = evaluator, seat
        self.n_agents = evaluator.n_agents

    def inner_objective(self, data: Any, k: int, live: Any, plain: bool = False) -> torch.Tensor:
        return self.evaluator.inner_objective(data, k, (self.seat,), plain=plain)
