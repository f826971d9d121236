"""The checkpoint cross-play matrix of the MATRL paper's Figure 6: every checkpoint of one
training run (the *rows*, in one seat) plays every checkpoint of another (the *columns*, in the
other seat) of a two-seat game, and the matrix holds the mean undiscounted return of the row
over ``N`` evaluation episodes, with a 95% t-interval over those episodes.

A run is a list of checkpoints; a checkpoint is the parameters of each seat. The row plays
with its seat-``row_seat`` parameters and the column with its other seat's, so a run trained in
self-play (one network per side of an asymmetric game such as Pong, whose two paddles stand on
opposite sides) meets the other run with the networks trained for the seats they sit in.

All pairs of one row play in one batched call (chains ``B`` = the columns, ``K = N``
episodes each); rows are played one after another so at most ``C x N`` environment copies
exist at once (an Atari emulator each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from league.envs.base import Environment
from league.eval.stats import mean_ci, t_critical_975
from league.policies.base import Params, Policy
from league.rollout import play_episodes

__all__ = ["CrossPlay", "cross_play", "stack_params", "transitivity"]


def stack_params(checkpoints: Sequence[Params]) -> Params:
    """Checkpoints with a chain dimension of 1 each -> one ``Params`` with ``B = len(checkpoints)``."""
    return {name: torch.cat([c[name] for c in checkpoints], dim=0) for name in checkpoints[0]}


@dataclass
class CrossPlay:
    """Returns of every (row, column) pair of checkpoints."""

    returns: torch.Tensor
    """``[R, C, N, n]`` each episode's undiscounted return of every seat."""
    row_seat: int
    """The seat the rows played in."""

    def score(self, margin: bool = False) -> torch.Tensor:
        """``[R, C, N]`` the row's return per episode, or (``margin``) the row's return minus
        the column's (the point difference in Pong)."""
        row = self.returns[..., self.row_seat]
        return row - self.returns[..., 1 - self.row_seat] if margin else row

    def summary(self, margin: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(mean [R, C], half-width [R, C])`` of the 95% t-interval over the ``N`` episodes."""
        scores = self.score(margin).permute(2, 0, 1).double().numpy()  # episodes first
        mean, half = mean_ci(scores)
        return np.asarray(mean), np.asarray(half)

    def overall(self, margin: bool = False) -> tuple[float, float]:
        """The mean over all ``R x C`` cells of their means and the half-width of its 95%
        t-interval: the cells are independent, so its variance is ``sum_cells s^2 / N`` over
        ``(R C)^2``, with ``R C (N - 1)`` degrees of freedom (``s^2``: a cell's sample variance)."""
        scores = self.score(margin).double()  # [R, C, N]
        cells, n = scores.shape[0] * scores.shape[1], scores.shape[2]
        if n < 2:
            return float(scores.mean()), float("nan")
        se = float((scores.var(dim=2, unbiased=True) / n).sum().sqrt()) / cells
        return float(scores.mean()), t_critical_975(cells * (n - 1)) * se


@torch.no_grad()
def cross_play(env: Environment, policies: Sequence[Policy], rows: Sequence[Sequence[Params]],
               columns: Sequence[Sequence[Params]], episodes: int, generator: torch.Generator,
               row_seat: int = 0) -> CrossPlay:
    """Every checkpoint of ``rows`` (seat ``row_seat``) against every checkpoint of ``columns``
    (the other seat) of a two-seat ``env``, ``episodes`` episodes per pair. ``policies[k]`` is
    seat ``k``'s policy class; ``rows[i][k]`` checkpoint ``i``'s parameters of seat ``k``
    (chain dimension 1)."""
    if env.n_agents != 2:
        raise ValueError(f"cross-play needs a two-seat game, {env.name} has {env.n_agents}")
    if row_seat not in (0, 1):
        raise ValueError(f"row_seat must be 0 or 1, got {row_seat}")
    col_seat = 1 - row_seat
    dtype = getattr(env, "dtype", torch.float32)  # the observations' and rewards' dtype
    n_cols = len(columns)
    col_params = stack_params([c[col_seat] for c in columns])  # [C, ...]
    out = []
    for row in rows:
        row_params = {k: v.expand(n_cols, *v.shape[1:]) for k, v in row[row_seat].items()}
        seats: list[Params] = [{}, {}]
        seats[row_seat], seats[col_seat] = row_params, col_params
        played = play_episodes(env, policies, seats, n_cols, episodes, generator, dtype=dtype)
        out.append(played.rewards.sum(2))  # [C, N, n]
    return CrossPlay(torch.stack(out), row_seat)


def transitivity(mean: np.ndarray) -> float:
    """For a run's checkpoints against themselves (``mean[i, j]``: checkpoint ``i`` in the row
    seat against checkpoint ``j``, in training order): the fraction of off-diagonal pairs in
    which the later checkpoint outscores the earlier one (``sign(mean[i, j]) = sign(i - j)``), a
    tie counting one half. 1: every checkpoint beats every earlier one (transitive progress,
    what Figure 6 credits MATRL with); 0.5: no order (or cycles, or all ties); 0: every
    checkpoint loses to the earlier ones."""
    n = mean.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    if not pairs:
        return float("nan")
    return float(np.mean([0.5 if mean[i, j] == 0 else float((mean[i, j] > 0) == (i > j)) for i, j in pairs]))
