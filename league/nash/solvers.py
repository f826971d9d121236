"""Nash solvers for normal-form games as a registry of plain functions, and the verifier every
result goes through.

A solver is ``payoffs -> profile | None``: ``payoffs`` is one game ``[n, A_0, ..., A_{n-1}]``
(float64 tensor, seat ``k``'s payoff at ``payoffs[k, a_0, ..., a_{n-1}]``), a profile is a list
of ``n`` probability vectors. A solver may return an approximate profile; callers use
:func:`select_equilibrium`, which keeps only profiles that :func:`is_epsilon_nash` accepts
(no pure deviation gains more than ``eps``) and reports ``None`` when no solver produced one,
so that MATRL keeps the current policy.

Which solver does what (see docs/matrl.md for the comparison):

- ``support-enumeration``: ours, exact for 2 players with any number of actions (supports of
  equal size, indifference systems solved in float64); returns the equilibrium with the highest
  total payoff among those found.
- ``nashpy``: nashpy's support enumeration (2 players), same selection rule; kept to compare
  against ours.
- ``pure``: every pure equilibrium of an n-player game by one vectorised deviation test; the
  one with the highest total payoff.
- ``closed-form-2x2``: pure profiles plus the interior mixed equilibrium of a 2-player
  2-action game in closed form; batched (:func:`solve_2x2_batched`), the one the matrix-game
  dynamics call 10^6 times.
- ``lyapunov``: n players, any actions: minimises the squared-regret (Lyapunov) function
  ``sum_k sum_a max(0, Q_k(a) - V_k)^2`` with multi-start L-BFGS-B (the authors used CMA-ES on
  the same function).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import scipy.optimize
import torch

from league.nash.metagame import action_values, corner_choices, normal_form_value

__all__ = [
    "NASH_SOLVERS",
    "Profile",
    "nash_regret",
    "is_epsilon_nash",
    "select_equilibrium",
    "solve_2x2_batched",
    "equilibria_2x2",
    "BATCHED_SOLVERS",
    "pure_equilibria",
    "support_enumeration",
    "nashpy_support_enumeration",
    "lyapunov_minimisation",
    "closed_form_2x2",
]

Profile = list[torch.Tensor]
Solver = Callable[[torch.Tensor], "Profile | None"]


def nash_regret(payoffs: torch.Tensor, profile: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[*batch, n]``: for every seat, the most a pure deviation gains, ``max_a Q_k(a) - V_k``
    (``>= 0``; zero for every seat exactly at a Nash equilibrium)."""
    values = normal_form_value(payoffs, profile)
    best = torch.stack([q.amax(-1) for q in action_values(payoffs, profile)], dim=-1)
    return best - values


def is_epsilon_nash(payoffs: torch.Tensor, profile: Sequence[torch.Tensor], eps: float) -> torch.Tensor:
    """Whether ``profile`` is a probability profile and no seat gains more than ``eps`` by any
    pure deviation; bool ``[*batch]``."""
    valid = torch.ones(payoffs.shape[: payoffs.dim() - len(profile) - 1], dtype=torch.bool, device=payoffs.device)
    for p in profile:
        valid = valid & (p >= -1e-9).all(-1) & ((p.sum(-1) - 1).abs() <= 1e-6)
    return valid & (nash_regret(payoffs, profile) <= eps).all(-1)


def _welfare_best(payoffs: torch.Tensor, profiles: list[Profile]) -> Profile | None:
    if not profiles:
        return None
    welfare = [float(normal_form_value(payoffs, p).sum()) for p in profiles]
    return profiles[int(np.argmax(welfare))]


def pure_equilibria(payoffs: torch.Tensor, eps: float = 1e-9) -> list[tuple[int, ...]]:
    """Every pure equilibrium (joint action tuples) of ``payoffs [n, A_0, ..., A_{n-1}]``: a joint
    action where no seat's payoff is below the best of its own axis by more than ``eps``."""
    n = payoffs.shape[0]
    ok = torch.ones(payoffs.shape[1:], dtype=torch.bool)
    for k in range(n):
        ok &= payoffs[k] >= payoffs[k].amax(dim=k, keepdim=True) - eps
    return [tuple(int(i) for i in idx) for idx in ok.nonzero()]


def _one_hot_profile(payoffs: torch.Tensor, joint: tuple[int, ...]) -> Profile:
    sizes = payoffs.shape[1:]
    return [torch.nn.functional.one_hot(torch.tensor(a), s).to(payoffs.dtype) for a, s in zip(joint, sizes)]


def pure_best(payoffs: torch.Tensor) -> Profile | None:
    """The pure equilibrium with the highest total payoff, or ``None`` if there is none."""
    return _welfare_best(payoffs, [_one_hot_profile(payoffs, j) for j in pure_equilibria(payoffs)])


def _indifferent(m: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]) -> np.ndarray | None:
    """The column mixture on ``cols`` that makes the row player indifferent across ``rows``
    (payoff matrix ``m`` of the row player), or ``None``."""
    k = len(cols)
    a = np.zeros((len(rows) + 1, k + 1))
    a[: len(rows), :k] = m[np.ix_(rows, cols)]
    a[: len(rows), k] = -1.0
    a[len(rows), :k] = 1.0
    b = np.zeros(len(rows) + 1)
    b[-1] = 1.0
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    if not np.allclose(a @ sol, b, atol=1e-9):
        return None
    y = sol[:k]
    if (y < -1e-12).any():
        return None
    return np.clip(y, 0.0, None)


def support_enumeration(payoffs: torch.Tensor) -> Profile | None:
    """Ours, 2 players: for every pair of equal-size supports solve both indifference systems
    and keep the pairs that are equilibria; the one with the highest total payoff. Exact for
    nondegenerate games (every equilibrium of those has supports of equal size)."""
    if payoffs.shape[0] != 2:
        return None
    a, b = payoffs[0].double().numpy(), payoffs[1].double().numpy()
    m, n = a.shape
    found: list[Profile] = []
    for size in range(1, min(m, n) + 1):
        for rows in itertools.combinations(range(m), size):
            for cols in itertools.combinations(range(n), size):
                y = _indifferent(a, rows, cols)  # column mixture, row player indifferent
                x = _indifferent(b.T, cols, rows)  # row mixture, column player indifferent
                if x is None or y is None:
                    continue
                px, py = np.zeros(m), np.zeros(n)
                px[list(rows)], py[list(cols)] = x, y
                prof = [torch.from_numpy(px), torch.from_numpy(py)]
                if bool(is_epsilon_nash(payoffs.double(), prof, 1e-9)):
                    found.append([p.to(payoffs.dtype) for p in prof])
    return _welfare_best(payoffs, found)


def nashpy_support_enumeration(payoffs: torch.Tensor) -> Profile | None:
    """nashpy's support enumeration (2 players); the found equilibrium with the highest total
    payoff."""
    import nashpy

    if payoffs.shape[0] != 2:
        return None
    game = nashpy.Game(payoffs[0].double().numpy(), payoffs[1].double().numpy())
    found = [[torch.as_tensor(x, dtype=payoffs.dtype), torch.as_tensor(y, dtype=payoffs.dtype)]
             for x, y in game.support_enumeration(non_degenerate=False, tol=1e-12)]
    return _welfare_best(payoffs, found)


def equilibria_2x2(games: torch.Tensor, eps: float = 1e-9, interior_only: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every equilibrium candidate of a batch of 2-player 2-action games ``games [B, 2, 2, 2]``.

    Candidates: the 4 pure profiles (lexicographic, action 0 first) and the mixed profile of the
    two indifference conditions (when both denominators are nonzero). Returns ``(cands [B, 5, 2],
    ok [B, 5])``: ``cands[b, j, k]`` is seat ``k``'s probability of action 1 in candidate ``j``,
    ``ok`` whether it is an ``eps``-Nash equilibrium. With ``interior_only`` the mixed candidate
    counts only strictly inside ``(0, 1)^2`` (so that a nondegenerate game's equilibria are
    counted once); otherwise it is clipped to ``[0, 1]^2`` and verified like any other.
    """
    if games.dim() != 4 or tuple(games.shape[1:]) != (2, 2, 2):
        raise ValueError(f"games must be [B, 2, 2, 2], got {tuple(games.shape)}")
    B = games.shape[0]
    pure = corner_choices(2, games.device).to(games.dtype)  # [4, 2]
    a, b = games[:, 0], games[:, 1]
    da = a[:, 0, 0] - a[:, 0, 1] - a[:, 1, 0] + a[:, 1, 1]
    db = b[:, 0, 0] - b[:, 0, 1] - b[:, 1, 0] + b[:, 1, 1]
    mixed_ok = (da.abs() > 1e-14) & (db.abs() > 1e-14)
    # seat 1 plays action 1 with w1 so that seat 0 is indifferent between its rows, and vice versa
    w1 = (a[:, 0, 0] - a[:, 1, 0]) / torch.where(mixed_ok, da, torch.ones_like(da))
    w0 = (b[:, 0, 0] - b[:, 0, 1]) / torch.where(mixed_ok, db, torch.ones_like(db))
    mixed = torch.stack([w0, w1], -1)
    if interior_only:
        mixed_ok = mixed_ok & ((mixed > 0) & (mixed < 1)).all(-1)
    cands = torch.cat([pure.unsqueeze(0).expand(B, 4, 2), mixed.clamp(0.0, 1.0).unsqueeze(1)], dim=1)
    ok = is_epsilon_nash(games.unsqueeze(1), _profile_from_weights(cands), eps)
    ok[:, 4] &= mixed_ok
    return cands, ok


def _profile_from_weights(w: torch.Tensor) -> Profile:
    """Per-seat 2-action mixed strategies ``[..., 2]`` from probabilities of action 1 ``w [..., n]``."""
    return [torch.stack([1 - w[..., k], w[..., k]], -1) for k in range(w.shape[-1])]


def solve_2x2_batched(meta: torch.Tensor, eps: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched exact solver of 2-player 2-action games ``meta [B, 2, 2, 2]``: among the verified
    candidates of :func:`equilibria_2x2` the highest total payoff wins (ties: the earlier
    candidate). Returns ``(w [B, 2], found [B])``, ``w[:, k]`` seat ``k``'s probability of
    action 1 (zeros where nothing verified)."""
    cands, ok = equilibria_2x2(meta, eps)
    welfare = normal_form_value(meta.unsqueeze(1), _profile_from_weights(cands)).sum(-1)
    best = torch.where(ok, welfare, torch.full_like(welfare, -torch.inf)).argmax(dim=1)
    found = ok.any(dim=1)
    w = cands[torch.arange(meta.shape[0], device=meta.device), best]
    return torch.where(found.unsqueeze(-1), w, torch.zeros_like(w)), found


def closed_form_2x2(payoffs: torch.Tensor) -> Profile | None:
    """:func:`solve_2x2_batched` on one game (2 players, 2 actions each)."""
    if tuple(payoffs.shape) != (2, 2, 2):
        return None
    w, found = solve_2x2_batched(payoffs.unsqueeze(0))
    if not bool(found[0]):
        return None
    return [torch.stack([1 - w[0, k], w[0, k]]) for k in range(2)]


def _squared_regret(payoffs: torch.Tensor, sizes: Sequence[int], x: np.ndarray) -> tuple[float, np.ndarray]:
    """The Lyapunov function ``sum_k sum_a max(0, Q_k(a) - V_k)^2`` of the profile given by
    unnormalised nonnegative weights ``x`` (normalised per seat), and its gradient."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    chunks = torch.split(xt, list(sizes))
    profile = [c / c.sum().clamp_min(1e-12) for c in chunks]
    values = normal_form_value(payoffs, profile)
    loss = sum((torch.relu(q - v) ** 2).sum() for q, v in zip(action_values(payoffs, profile), values))
    (grad,) = torch.autograd.grad(loss, xt)
    return float(loss.detach()), grad.numpy()


def lyapunov_minimisation(payoffs: torch.Tensor, starts: int = 8, seed: int = 0) -> Profile | None:
    """n players, any actions: multi-start L-BFGS-B on the squared-regret function over
    per-seat weights in ``[0, 1]`` (the uniform profile first, then seeded random starts);
    the first start that reaches a regret of ``1e-12`` or the best one. Approximate: the caller
    verifies."""
    p = payoffs.double()
    sizes = list(p.shape[1:])
    rng = np.random.default_rng(seed)
    bounds = [(0.0, 1.0)] * sum(sizes)
    best_x, best_f = None, np.inf
    for s in range(starts):
        x0 = np.full(sum(sizes), 0.5) if s == 0 else rng.uniform(0.05, 1.0, sum(sizes))
        res = scipy.optimize.minimize(lambda x: _squared_regret(p, sizes, x), x0, jac=True, method="L-BFGS-B",
                                      bounds=bounds, options={"ftol": 1e-20, "gtol": 1e-14, "maxiter": 500})
        if res.fun < best_f:
            best_x, best_f = res.x, res.fun
        if best_f < 1e-12:
            break
    chunks = np.split(best_x, np.cumsum(sizes)[:-1])
    if any(c.sum() <= 0 for c in chunks):
        return None
    return [torch.as_tensor(c / c.sum(), dtype=payoffs.dtype) for c in chunks]


#: Batched solvers of 2-action meta-games, ``meta [B, n, 2, ..., 2] -> (w [B, n], found [B])``
#: with ``w`` the probability of action 1; used in place of a per-game loop where one exists.
BATCHED_SOLVERS: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "closed-form-2x2": solve_2x2_batched,
}

#: Nash solvers by name (see the module docstring).
NASH_SOLVERS: dict[str, Solver] = {
    "closed-form-2x2": closed_form_2x2,
    "support-enumeration": support_enumeration,
    "nashpy": nashpy_support_enumeration,
    "pure": pure_best,
    "lyapunov": lyapunov_minimisation,
}


def select_equilibrium(payoffs: torch.Tensor, solvers: Sequence[str], eps: float = 1e-6
                       ) -> tuple[Profile | None, str | None]:
    """The first profile, trying ``solvers`` in order, that is an ``eps``-Nash equilibrium of
    ``payoffs``, with the name of the solver that found it; ``(None, None)`` if none is."""
    for name in solvers:
        try:
            solver = NASH_SOLVERS[name]
        except KeyError:
            raise ValueError(f"unknown Nash solver {name!r}; known: {', '.join(NASH_SOLVERS)}") from None
        profile = solver(payoffs)
        if profile is not None and bool(is_epsilon_nash(payoffs.double(), [q.double() for q in profile], eps)):
            return profile, name
    return None, None
