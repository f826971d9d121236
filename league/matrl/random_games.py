"""Random 2x2 games of the classes of Pangallo et al. (2017), as the MATRL paper uses them.

The class of a 2-player 2-action game is fixed by the signs of its best-response pattern. With
``A = payoff[0]`` (row player) and ``B = payoff[1]`` (column player):

- the row player *follows* when ``A[0,0] > A[1,0]`` and ``A[1,1] > A[0,1]`` (its best reply copies
  the column's action) and *opposes* when both inequalities flip; the column player follows when
  ``B[0,0] > B[0,1]`` and ``B[1,1] > B[1,0]``.
- **coordination**: both follow (pure equilibria (0,0) and (1,1) plus one mixed);
- **anti-coordination**: both oppose (pure equilibria (0,1) and (1,0) plus one mixed);
- **cyclic**: one follows and the other opposes (the best replies cycle: only a mixed equilibrium).

Games are drawn with all 8 payoffs i.i.d. uniform on ``[0, 1)`` and conditioned on the class by
swapping the two entries of each inequality that is violated; by the symmetry of i.i.d. draws this
samples exactly the uniform distribution conditioned on the class (no rejection loop). Cyclic games
pick which player follows with probability 1/2. The paper's appendix gives the classes and says no
more; the authors' generators hard-code other ranges (REFERENCE.md), which we do not copy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from league.nash.solvers import equilibria_2x2

__all__ = ["GAME_CLASSES", "random_games", "game_equilibria"]


def _order(x: torch.Tensor, hi: tuple, lo: tuple, want: torch.Tensor) -> torch.Tensor:
    """Swap ``x[:, *hi]`` and ``x[:, *lo]`` where ``want`` asks for ``x[hi] > x[lo]`` and it is not,
    or for ``x[hi] < x[lo]`` (``want`` false) and it is not."""
    a, b = x[(slice(None), *hi)].clone(), x[(slice(None), *lo)].clone()
    swap = (a > b) != want
    x[(slice(None), *hi)] = torch.where(swap, b, a)
    x[(slice(None), *lo)] = torch.where(swap, a, b)
    return x


def _with_pattern(u: torch.Tensor, row_follows: torch.Tensor, col_follows: torch.Tensor) -> torch.Tensor:
    """Condition i.i.d. payoffs ``u [B, 2, 2, 2]`` on each player following (or opposing)."""
    u = _order(u, (0, 0, 0), (0, 1, 0), row_follows)
    u = _order(u, (0, 1, 1), (0, 0, 1), row_follows)
    u = _order(u, (1, 0, 0), (1, 0, 1), col_follows)
    u = _order(u, (1, 1, 1), (1, 1, 0), col_follows)
    return u


def _coordination(u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    yes = torch.ones(u.shape[0], dtype=torch.bool)
    return _with_pattern(u, yes, yes)


def _anti_coordination(u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    no = torch.zeros(u.shape[0], dtype=torch.bool)
    return _with_pattern(u, no, no)


def _cyclic(u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    row = torch.rand(u.shape[0], generator=g) < 0.5
    return _with_pattern(u, row, ~row)


#: Game classes by name: ``(iid_payoffs [B, 2, 2, 2], generator) -> payoffs of that class``.
GAME_CLASSES: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "coordination": _coordination,
    "anti-coordination": _anti_coordination,
    "cyclic": _cyclic,
}


def game_equilibria(payoff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every equilibrium of each game ``payoff [B, 2, 2, 2]`` as every seat's probability of
    action 0: ``(p0 [B, 5, 2], valid [B, 5])`` (the format of ``league.matrl.matrix.converged_to``);
    a mixed equilibrium counts only strictly inside the square, so each is listed once."""
    cands, ok = equilibria_2x2(payoff, interior_only=True)
    return 1.0 - cands, ok


def random_games(name: str, count: int, seed: int, dtype: torch.dtype = torch.float64
                 ) -> tuple[torch.Tensor, dict[str, int]]:
    """``count`` games of class ``name`` ``[count, 2, 2, 2]``, skipping (and redrawing) games with 2
    or 4 equilibria as the authors do; also how many were drawn and skipped."""
    try:
        make = GAME_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown game class {name!r}; known: {', '.join(GAME_CLASSES)}") from None
    g = torch.Generator().manual_seed(seed)
    kept, drawn = [], 0
    while sum(k.shape[0] for k in kept) < count:
        batch = make(torch.rand(count, 2, 2, 2, generator=g, dtype=dtype), g)
        drawn += count
        n_eq = game_equilibria(batch)[1].sum(-1)
        kept.append(batch[(n_eq != 2) & (n_eq != 4)])
    games = torch.cat(kept)[:count]
    return games, {"drawn": drawn, "skipped": drawn - sum(k.shape[0] for k in kept)}
