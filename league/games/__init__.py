"""Games: iterated matrix games, their exact values, and a name registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from league.games.iterated import IteratedMatrixGame, ipd, matrix_game, rps

__all__ = ["GAMES", "GameEntry", "make_game", "check_players", "IteratedMatrixGame", "ipd", "rps", "matrix_game"]


@dataclass(frozen=True)
class GameEntry:
    """A registered game: its factory and the seat counts experiments may ask for."""

    factory: Callable[..., IteratedMatrixGame]
    """Builds the game; takes ``n_players`` when ``min_players < max_players``."""
    min_players: int = 2
    max_players: int = 2
    """Largest supported seat count (tabular personas grow as ``1 + A**n`` states)."""

    def build(self, n_players: int | None = None, **kwargs: Any) -> IteratedMatrixGame:
        if n_players is not None and self.min_players < self.max_players:
            kwargs["n_players"] = n_players
        return self.factory(**kwargs)


#: Games by name. RPS stops at 4 players: the paper's Figure 4b goes to 4, and the persona
#: tables already hold 1 + 3**4 = 82 states there.
GAMES: dict[str, GameEntry] = {
    "ipd": GameEntry(ipd),
    "rps": GameEntry(rps, min_players=2, max_players=4),
}


def _entry(name: str) -> GameEntry:
    try:
        return GAMES[name]
    except KeyError:
        known = ", ".join(sorted(GAMES))
        raise ValueError(f"unknown game {name!r}; known games: {known}") from None


def check_players(name: str, n_players: int) -> None:
    """Raise ``ValueError`` naming the supported range unless ``name`` takes ``n_players`` seats."""
    e = _entry(name)
    if not e.min_players <= n_players <= e.max_players:
        span = str(e.min_players) if e.min_players == e.max_players else f"{e.min_players}..{e.max_players}"
        raise ValueError(f"game {name!r} takes {span} players, got n_players={n_players}")


def make_game(name: str, n_players: int | None = None, **kwargs: Any) -> IteratedMatrixGame:
    """Build a registered game by name, e.g. ``make_game("rps", n_players=3)``."""
    e = _entry(name)
    if n_players is not None:
        check_players(name, n_players)
    return e.build(n_players, **kwargs)
