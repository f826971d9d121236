"""Evaluators turn a joint policy into differentiable per-agent objectives.

The chain of joint policies (``league.chain``) is written once against this interface; an
evaluator decides whether objectives are exact (closed-form values: the bilinear zero-sum
game, tabular IPD) or sampled (DiCE surrogates of rolled-out trajectories).

``live`` is the set of seats whose parameters keep their autograd path into an objective;
every other seat's parameters are treated as constants. This one mechanism expresses
Meta-MAPG (peers' updates see the meta-agent live), Meta-PG (each update sees only its own
seat) and the ablations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol, Sequence

import torch

from league.envs.base import Environment
from league.games.iterated import IteratedMatrixGame
from league.learn import dice_objective, discount_weights, discounted_returns, linear_feature_baseline
from league.policies.base import Params, Policy
from league.rollout import Batch, Episodes, play_episodes, reset_seed, sample_episodes, score


class Evaluator(Protocol):
    """What the chain needs from a game: observe a joint policy, then score it.

    Typical use at one chain step::

        data = evaluator.observe(params)                      # sample (or not) once
        j = evaluator.inner_objective(data, k, live={0, 1})   # seat k's learning objective
        s = evaluator.outer_objective(data, 0, live, adv)     # the meta-objective's term
        r = evaluator.mean_rewards(data)                      # [B, n] for curves
    """

    n_agents: int

    def observe(self, params: Sequence[Params]) -> Any: ...

    def inner_objective(self, data: Any, k: int, live: Collection[int], plain: bool = False) -> torch.Tensor: ...

    def outer_objective(self, data: Any, k: int, live: Collection[int],
                        advantages: torch.Tensor | None = None) -> torch.Tensor: ...

    def mean_rewards(self, data: Any) -> torch.Tensor: ...


def _maybe_detach(params: Sequence[Params], live: Collection[int]) -> list[Params]:
    return [p if m in live else {name: v.detach() for name, v in p.items()} for m, p in enumerate(params)]


@dataclass
class ValueEvaluator:
    """Exact objectives from a differentiable ``value_fn(params) -> [B, n]``."""

    n_agents: int
    value_fn: Callable[[Sequence[Params]], torch.Tensor]

    def observe(self, params: Sequence[Params]) -> list[Params]:
        return list(params)

    def inner_objective(self, data: list[Params], k: int, live: Collection[int], plain: bool = False) -> torch.Tensor:
        """Seat ``k``'s exact value (no data, so ``plain`` changes nothing)."""
        return self.value_fn(_maybe_detach(data, live))[:, k]

    def outer_objective(self, data: list[Params], k: int, live: Collection[int],
                        advantages: torch.Tensor | None = None) -> torch.Tensor:
        """The exact value itself (its gradient is the exact policy gradient)."""
        return self.inner_objective(data, k, live)

    def mean_rewards(self, data: list[Params]) -> torch.Tensor:
        with torch.no_grad():
            return self.value_fn(data)


@dataclass
class SampledEvaluator:
    """DiCE objectives of ``n_episodes`` sampled episodes per chain, with the linear feature
    baseline refit on each seat's discounted returns-to-go (the inner loop of Meta-MAPG).

    The episodes come from ``game`` (an iterated matrix game of ``horizon`` rounds) or, when
    ``env`` is given, from that environment (any :class:`~league.envs.Environment`: per-seat
    observations, ``Box`` actions, episodes that end on their own, at most ``env.max_steps``)."""

    game: IteratedMatrixGame | None
    policies: Sequence[Policy]
    n_episodes: int
    horizon: int
    gamma: float
    generator: torch.Generator
    dtype: torch.dtype = torch.float32
    use_baseline: bool = True
    env: Environment | None = None

    @property
    def n_agents(self) -> int:
        return self.env.n_agents if self.env is not None else self.game.n_agents  # type: ignore[union-attr]

    def play(self, params: Sequence[Params]) -> Episodes:
        """Sample ``n_episodes`` episodes per chain of the joint policy ``params`` (no graph).
        The one place a sampled chain step meets the environment: the league's coordinator
        overrides it to have the referee play the step with the agents' published parameters."""
        n_chains = max(p[next(iter(p))].shape[0] for p in params)
        if self.env is not None:  # the reset seed comes from the generator too: the same stream, the same episodes
            return play_episodes(self.env, self.policies, params, n_chains, self.n_episodes, self.generator, self.dtype,
                                 seed=reset_seed(self.env, self.generator))
        return sample_episodes(self.game, self.policies, params, n_chains, self.n_episodes, self.horizon,  # type: ignore[arg-type]
                               self.generator, self.dtype)

    def observe(self, params: Sequence[Params]) -> Batch:
        """Play the step, then score the episodes with ``params`` (differentiably)."""
        return score(self.policies, params, self.play(params))

    def inner_objective(self, data: Batch, k: int, live: Collection[int], plain: bool = False) -> torch.Tensor:
        """Seat ``k``'s surrogate of its discounted return on ``data``, per chain ``[B]``.

        DiCE (default): its first derivative is the policy-gradient estimate and its higher
        derivatives also carry how the sampled data depend on every live seat's parameters.
        ``plain``: ``mean_K sum_t log pi_k(a_t | s_t) * w_t`` with the weights
        ``w_t = gamma^t (G_t - b_t)`` detached: the same first derivative, but its higher
        derivatives are those of that estimate as a plain function of the parameters with
        the data held fixed (the inner step of the likelihood-ratio ``score`` form)."""
        if k not in live:
            raise ValueError(f"seat {k}'s own parameters must be live in its objective")
        rewards = data.rewards[..., k]
        returns = discounted_returns(rewards, self.gamma)
        baseline = linear_feature_baseline(data.obs_of(k), returns) if self.use_baseline else None
        if plain:
            w = discount_weights(rewards.shape[-1], self.gamma, dtype=rewards.dtype, device=rewards.device)
            weights = w * (returns if baseline is None else returns - baseline)
            return (data.logp[k] * weights.detach()).sum(-1).mean(-1)
        deps = sum(data.logp[m] for m in sorted(live))
        return dice_objective(deps, rewards, self.gamma, baseline=baseline)

    def mean_rewards(self, data: Batch) -> torch.Tensor:
        return data.rewards.mean(dim=(1, 2))

    def outer_objective(self, data: Batch, k: int, live: Collection[int],
                        advantages: torch.Tensor | None = None) -> torch.Tensor:
        """Score-function surrogate ``mean_K sum_t (sum_{m in live} log pi_m) * A_t``: its
        gradient is seat ``k``'s policy gradient through every live seat's parameters."""
        if advantages is None:
            raise ValueError("a sampled outer objective needs advantages from a critic")
        logp = sum(data.logp[m] for m in sorted(live))
        return (logp * advantages.detach()).sum(-1).mean(-1)
