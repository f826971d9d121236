"""Outer (meta-) gradient estimators of the Meta-MAPG family: a registry of three forms.

Each form turns an unrolled chain ``phi_0 .. phi_L`` (with the data sampled at every step)
into a per-chain surrogate whose gradient with respect to the meta-parameters estimates the
meta-gradient. What each one converges to is measured against an exact enumeration in
``league.exact_meta`` and ``tests/test_estimators.py``; ``docs/methods.md`` has the
definitions and the bias/variance table.

- ``dice``: inner steps are DiCE steps kept in the graph; the term of step ``l`` is the
  policy-gradient surrogate of ``tau_l`` through ``phi_l(phi_0)`` of the live seats. The
  dependence of the sampled data on ``phi_0`` enters only through DiCE's higher
  derivatives inside the inner steps.
- ``authors``: DiCE inner steps as well; for ``l >= 1`` the advantages of ``tau_l``
  multiply, per episode and time step, the log-probabilities of every trajectory
  ``tau_0 .. tau_l`` (current policy, own learning, peer learning: the authors' code); at
  ``l == 0`` only the entropy bonus.
- ``score``: the likelihood-ratio form of Theorem 1: plain inner steps (data held fixed),
  the policy-gradient surrogate of ``tau_l`` plus the whole-batch scores of every earlier
  trajectory times ``tau_l``'s return. Unbiased for the meta-value ``J`` when the
  advantages are returns-to-go.

Usage (inside :func:`league.meta.meta_objective`)::

    est = get_estimator("score")
    method = make_method("meta-mapg", estimator="score")  # plain inner steps
    steps = unroll(...)
    objective = est.objective(evaluator, OuterInputs(steps, method, advantages, returns, ...))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch

if TYPE_CHECKING:  # only for annotations: methods imports this module's registry
    from league.chain import ChainStep
    from league.methods import Method


@dataclass
class OuterInputs:
    """Everything an outer estimator needs from one unrolled meta-batch of ``B`` chains."""

    steps: "list[ChainStep]"
    """``phi_0 .. phi_L`` with the data observed under each."""
    method: "Method"
    """Which gradient paths are kept (``own``, ``peer``)."""
    advantages: Sequence[torch.Tensor | None]
    """Per step, the meta-agent's advantages ``[B, K, H]`` (detached, already scaled), or
    ``None`` for exact evaluators."""
    returns: Sequence[torch.Tensor | None]
    """Per step, the meta-agent's discounted episode returns ``[B, K]`` (detached, scaled)."""
    include_initial: bool
    """Whether the chain step ``l == 0`` (the pre-adaptation policy) is one of the terms."""
    normalize: bool
    """Standardise the score form's earlier-trajectory weights across chains."""
    chain_baseline: bool = True
    """Subtract the other chains' mean return from the score form's earlier-trajectory weight."""


class OuterEstimator(Protocol):
    """A form of the meta-gradient: how the inner steps are differentiated (``plain_inner``)
    and the per-chain surrogate whose gradient is the estimate."""

    name: str
    plain_inner: bool
    couples_chains: bool
    """Whether a chain's surrogate depends on the other chains of its meta-batch (then the
    chains cannot be built in micro-batches)."""

    def objective(self, evaluator: Any, x: OuterInputs) -> torch.Tensor: ...


def live_seats(method: "Method", step: int, n_agents: int) -> set[int]:
    """Seats whose log-probabilities at chain step ``step`` carry gradient paths: the
    current policy (seat 0) at ``l == 0``; for ``l >= 1`` own learning (seat 0) and peer
    learning (seats 1..n-1) as the method keeps them."""
    if step == 0:
        return {0}
    return ({0} if method.own else set()) | (set(range(1, n_agents)) if method.peer else set())


def _logp(step: "ChainStep", seats: set[int]) -> torch.Tensor | None:
    parts = [step.data.logp[m] for m in sorted(seats)]
    return sum(parts) if parts else None  # type: ignore[return-value]


def _zeros(x: OuterInputs) -> torch.Tensor:
    """A zero term ``[B]`` (a step whose every path is cut)."""
    p = next(iter(x.steps[0].params[0].values()))
    return torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)


def _terms(x: OuterInputs) -> range:
    return range(0 if x.include_initial else 1, len(x.steps))


@dataclass(frozen=True)
class Dice:
    """This project's original form (see the module docstring)."""

    name: str = "dice"
    plain_inner: bool = False
    couples_chains: bool = False

    def objective(self, evaluator: Any, x: OuterInputs) -> torch.Tensor:
        terms = []
        for l in _terms(x):
            live = live_seats(x.method, l, evaluator.n_agents)
            if not live:
                terms.append(_zeros(x))
                continue
            terms.append(evaluator.outer_objective(x.steps[l].data, 0, live, x.advantages[l]))
        return torch.stack(terms).mean(0)


@dataclass(frozen=True)
class Authors:
    """The authors' code's form (see the module docstring)."""

    name: str = "authors"
    plain_inner: bool = False
    couples_chains: bool = False

    def objective(self, evaluator: Any, x: OuterInputs) -> torch.Tensor:
        terms = []
        for l in _terms(x):
            if l == 0:  # only the entropy bonus, added by the caller
                terms.append(_zeros(x))
                continue
            mult = x.steps[0].data.logp[0]  # current policy: tau_0 under phi_0
            for lp in range(1, l + 1):
                part = _logp(x.steps[lp], live_seats(x.method, lp, evaluator.n_agents))
                if part is not None:
                    mult = mult + part
            terms.append((mult * x.advantages[l]).sum(-1).mean(-1))
        return torch.stack(terms).mean(0)


@dataclass(frozen=True)
class Score:
    """The likelihood-ratio form of Theorem 1 (see the module docstring). The weight of the
    earlier trajectories' scores is ``tau_l``'s mean discounted return minus the mean over
    the other chains of the meta-batch (independent of this chain's data, so unbiased)."""

    name: str = "score"
    plain_inner: bool = True
    couples_chains: bool = True  # the leave-one-out chain baseline

    def objective(self, evaluator: Any, x: OuterInputs) -> torch.Tensor:
        terms = []
        for l in _terms(x):
            live = live_seats(x.method, l, evaluator.n_agents)
            latest = _logp(x.steps[l], live)
            term = _zeros(x) if latest is None else (latest * x.advantages[l]).sum(-1).mean(-1)
            if l > 0:
                weight = _earlier_weight(x.returns[l], x.normalize, x.chain_baseline)
                for lp in range(l):
                    scored = _logp(x.steps[lp], live_seats(x.method, lp, evaluator.n_agents))
                    if scored is not None:  # log-probability of the whole batch tau_lp
                        term = term + weight * scored.sum(dim=(-1, -2))
            terms.append(term)
        return torch.stack(terms).mean(0)


def _earlier_weight(returns: torch.Tensor, normalize: bool, baseline: bool) -> torch.Tensor:
    """``[B]``: each chain's mean return minus the leave-one-out mean of the other chains."""
    r = returns.mean(-1).detach()
    n = r.shape[0]
    if baseline and n > 1:
        r = r - (r.sum() - r) / (n - 1)
        if normalize:
            r = r / (r.std() + 1e-8)
    return r


ESTIMATORS: dict[str, OuterEstimator] = {e.name: e for e in (Dice(), Authors(), Score())}


def get_estimator(name: str) -> OuterEstimator:
    """The registered estimator ``name`` (``dice``, ``authors``, ``score``)."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}") from None
