"""The bridge from the differentiable-game rules (``league.meva.rules.DIFFERENTIABLE_RULES``)
to the project-wide update-rule interface (``league.updates.UpdateRule``), so that
``league.updates.make_update_rule("lola", alpha=1.0)`` serves an embedded differentiable
league and an agent process alike.

Why the interfaces differ: an ``UpdateRule`` sees every seat's parameters, the data an
evaluator observed under them (episodes of a sampled game) and per-seat learning rates per
chain step, because its gradient is estimated from trajectories. A differentiable-game rule
sees the exact joint point ``x [B, n, d]`` and returns every seat's direction, because the
game's values are exact functions of ``x``: the joint point *is* the data, no sampling.

How the bridge works: a seat's parameters are ``{"x": [B, d]}`` (its row of the joint
point, ``B`` independent games, e.g. one per pairing), the evaluator is a
:class:`ExactGameEvaluator` that only carries the game, ``data`` is ignored (there is
nothing observed beyond the parameters), and the update of seat ``k`` is
``x_k + lrs[k][:, step] * rule(game, x)[:, k]``: the same step as
``league.meva.rules.step`` and ``league.meva.play.optimise`` for that seat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from league.games.differentiable import DifferentiableGame
from league.meva.rules import DIFFERENTIABLE_RULES, Rule

__all__ = ["PARAM_NAME", "ExactGameEvaluator", "ExactGameRule", "BridgedFactory", "joint_point", "BRIDGED_RULES"]

PARAM_NAME = "x"
"""The one tensor of a seat's parameter set in a differentiable game: ``[B, d]``."""


@dataclass(frozen=True)
class ExactGameEvaluator:
    """The evaluator of an exact differentiable game: no sampling, just the game."""

    game: DifferentiableGame
    """The game whose exact values the rules differentiate."""

    @property
    def n_agents(self) -> int:
        return self.game.n_players


def joint_point(params: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Every seat's ``{"x": [B, d]}`` stacked into the joint point ``[B, n, d]``."""
    return torch.stack([p[PARAM_NAME] for p in params], dim=-2)


@dataclass(frozen=True)
class ExactGameRule:
    """A ``league.updates.UpdateRule`` that follows a differentiable-game rule."""

    rule: Rule
    """The direction ``rule(game, x) -> [B, n, d]`` (a ``DIFFERENTIABLE_RULES`` entry)."""
    learns: bool = True
    """False for ``frozen`` (the chain keeps no graph for it)."""
    needs_rollouts: bool = False
    """Never: the game's values are exact, nothing is played."""

    def update(self, evaluator: ExactGameEvaluator, params: Sequence[dict[str, torch.Tensor]], data: Any, k: int,
               lrs: Sequence[torch.Tensor], step: int, create_graph: bool) -> dict[str, torch.Tensor]:
        """Seat ``k``'s next parameters ``x_k + lr * rule(game, x)_k``; ``lrs[k]`` is ``[B, L]``
        (or ``[B, 1]``), the step's column is used. ``data`` and ``create_graph`` are unused:
        the rules return detached directions."""
        x = joint_point(params)
        lr = lrs[k][:, min(step, lrs[k].shape[-1] - 1)]
        direction = self.rule(evaluator.game, x)[..., k, :]
        return {PARAM_NAME: params[k][PARAM_NAME].detach() + lr.reshape(-1, 1).to(x.dtype) * direction}


@dataclass(frozen=True)
class BridgedFactory:
    """``UPDATE_RULES`` entry of a differentiable-game rule: ``factory(**settings)`` is the
    :class:`ExactGameRule` of ``DIFFERENTIABLE_RULES[name](**settings)``."""

    name: str
    """The ``DIFFERENTIABLE_RULES`` name."""
    exact_game = True
    """Follows exact joint points of a differentiable game, not a sampled game's episodes
    (so a sampled league's agent process, ``services.league_config.validate_agent``, refuses it)."""

    def __call__(self, **settings: Any) -> ExactGameRule:
        return ExactGameRule(DIFFERENTIABLE_RULES[self.name](**settings), learns=self.name != "frozen")


BRIDGED_RULES: dict[str, Callable[..., ExactGameRule]] = {
    name: BridgedFactory(name) for name in DIFFERENTIABLE_RULES if name != "frozen"}
"""Update-rule factories of every differentiable-game rule but ``frozen`` (the project's
``frozen`` already returns the seat's parameters unchanged, for either kind of game)."""
