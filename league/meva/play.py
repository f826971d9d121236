"""Run learners on a differentiable game: batched optimisation trajectories where each seat
follows its own update rule (self-play when all seats share one), as used by the basin maps
of the logistic game and the IPD tournament."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from league.games.differentiable import DifferentiableGame
from league.meva.rules import Rule, make_rule

__all__ = ["optimise", "naive_best_response"]


def optimise(game: DifferentiableGame, rules: Sequence[Rule], x0: torch.Tensor, steps: int,
             lr: float | torch.Tensor = 1.0, record: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``steps`` simultaneous updates ``x_i += lr * rules[i](game, x)_i`` from ``x0 [B, n, d]``.

    ``lr`` is one step size, or one per seat as a tensor ``[n, 1]`` (rules with their own
    learning rates in one game, as the IPD tournament). Seats that share one rule object share one evaluation of it. Returns the final policies
    ``[B, n, d]`` and, when ``record`` (row indices) is given, the recorded rows' trajectories
    ``[steps + 1, len(record), n, d]``.
    """
    if len(rules) != game.n_players:
        raise ValueError(f"need one rule per seat ({game.n_players}), got {len(rules)}")
    x = x0.detach()
    path = [x[record]] if record is not None else None
    for _ in range(steps):
        cache: dict[int, torch.Tensor] = {}
        seats = []
        for i, rule in enumerate(rules):
            if id(rule) not in cache:
                cache[id(rule)] = rule(game, x)
            seats.append(cache[id(rule)][..., i, :])
        x = x + lr * torch.stack(seats, dim=-2)
        if path is not None:
            path.append(x[record])
    return x, (torch.stack(path) if path is not None else None)


def naive_best_response(game: DifferentiableGame, fixed: torch.Tensor, start: torch.Tensor, steps: int,
                        lr: float = 1.0) -> torch.Tensor:
    """A local best response to fixed policies: seat 0 holds ``fixed [B, d]`` (rule ``frozen``)
    and seat 1 follows the naive gradient for ``steps`` steps of ``lr`` from ``start [B, d]``.
    Returns the final joint policies ``[B, 2, d]`` (the exploitability test of the MeVa paper:
    "we hold one fixed and train (using the naive gradient) another agent against it")."""
    x, _ = optimise(game, [make_rule("frozen"), make_rule("naive")], torch.stack([fixed, start], dim=-2), steps, lr)
    return x
