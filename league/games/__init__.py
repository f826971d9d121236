"""Games: iterated matrix games, their exact values, and a name registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from league.games.iterated import IteratedMatrixGame, ipd, matrix_game, rps

__all__ = ["GAMES", "make_game", "IteratedMatrixGame", "ipd", "rps", "matrix_game"]

#: Game factories by name; keyword arguments of :func:`make_game` are passed through.
GAMES: dict[str, Callable[..., IteratedMatrixGame]] = {
    "ipd": ipd,
    "rps": rps,
}


def make_game(name: str, **kwargs: Any) -> IteratedMatrixGame:
    """Build a registered game by name, e.g. ``make_game("rps", n_players=3)``."""
    try:
        factory = GAMES[name]
    except KeyError:
        known = ", ".join(sorted(GAMES))
        raise ValueError(f"unknown game {name!r}; known games: {known}") from None
    return factory(**kwargs)
