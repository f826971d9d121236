"""Differentiable games: exact, differentiable values of joint policy parameters.

One small interface, ``values(x [*batch, n, d]) -> [*batch, n]`` (every player maximises its
own entry), so that the update rules of ``league.meva.rules`` run unchanged on any game and
batch a whole grid, tournament or training batch as the leading dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from league.games.exact import LOLA_IPD_OFFSET, exact_value, ipd_probs_from_lola
from league.games.iterated import IteratedMatrixGame, ipd
from league.games.logistic import LogisticGame

__all__ = ["DifferentiableGame", "ExactIPD", "DIFFERENTIABLE_GAMES", "make_differentiable_game"]


class DifferentiableGame(Protocol):
    """A game whose players' values are exact differentiable functions of their parameters."""

    n_players: int
    dim: int

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Values ``[*batch, n_players]`` of joint policies ``x [*batch, n_players, dim]``."""
        ...


@dataclass(frozen=True)
class ExactIPD:
    """The iterated prisoner's dilemma with memory-one policies and its exact value.

    Player ``i``'s parameters are the logits of P(cooperate) in the five states
    ``[s0, CC, CD, DC, DD]`` seen from its OWN perspective (own action first), as in LOLA and
    the MeVa paper; so ``f_1(x_1, x_2) = f_2(x_2, x_1)``, the symmetry the shared meta-value
    model relies on. The value is ``league.games.exact.exact_value`` (infinite horizon).
    """

    gamma: float = 0.96
    """Discount of the inner game (0.96 as in LOLA and MeVa)."""
    normalised: bool = True
    """Multiply values by ``1 - gamma`` (per-step scale, as the MeVa paper reports them)."""
    lola_payoff: bool = True
    """Report LOLA's payoff (CC -1, CD -3, DC 0, DD -2), i.e. the project's payoff minus 1.5."""
    n_players: int = 2
    """Seats (fixed: two)."""
    dim: int = 5
    """Parameters per player: one logit per state."""
    game: IteratedMatrixGame = field(default_factory=lambda: ipd(torch.float64), compare=False, repr=False)
    """The project's IPD (0 = C, 1 = D); ``exact_value`` casts its payoff to the parameters' dtype."""

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Both players' exact discounted values ``[*batch, 2]`` of logits ``x [*batch, 2, 5]``."""
        if x.shape[-2:] != (2, 5):
            raise ValueError(f"IPD policies must have shape [*batch, 2, 5], got {tuple(x.shape)}")
        p_coop = torch.sigmoid(x)
        probs = [ipd_probs_from_lola(p_coop[..., seat, :], seat) for seat in range(2)]
        v = exact_value(self.game, probs, self.gamma)  # casts the payoff to x's dtype
        if self.lola_payoff:
            v = v - LOLA_IPD_OFFSET / (1.0 - self.gamma)
        return v * (1.0 - self.gamma) if self.normalised else v


#: Differentiable games by name; each entry builds the game from keyword settings.
DIFFERENTIABLE_GAMES: dict[str, Callable[..., DifferentiableGame]] = {
    "logistic": LogisticGame,
    "ipd": ExactIPD,
}


def make_differentiable_game(name: str, **kwargs: Any) -> DifferentiableGame:
    """Build the registered differentiable game ``name``."""
    try:
        factory = DIFFERENTIABLE_GAMES[name]
    except KeyError:
        raise ValueError(f"unknown differentiable game {name!r}; known: {', '.join(sorted(DIFFERENTIABLE_GAMES))}") from None
    return factory(**kwargs)
