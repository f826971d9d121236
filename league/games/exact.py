"""Exact, differentiable discounted values of tabular policies in iterated matrix games.

Used as ground truth for sampled estimators and for exact-gradient learners (e.g. LOLA).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from league.games.iterated import IteratedMatrixGame

__all__ = [
    "state_transition",
    "exact_value",
    "LOLA_IPD_OFFSET",
    "ipd_probs_from_lola",
    "ipd_probs_to_lola",
]

#: Our IPD payoff minus LOLA's IPD payoff, per step.
LOLA_IPD_OFFSET = 1.5

# Own-perspective [s0, CC, CD, DC, DD] -> seat-0 perspective: seat 1 swaps CD and DC.
_SEAT1_PERM = [0, 1, 3, 2, 4]


def _joint_probs(game: IteratedMatrixGame, probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Joint-action probabilities per state, ``[*batch, S, A**n]`` (seat 0 most significant)."""
    n, s, a = game.n_agents, game.n_states, game.n_actions
    if len(probs) != n:
        raise ValueError(f"need one policy per seat: game {game.name!r} has {n} seats, got {len(probs)}")
    for k, p in enumerate(probs):
        if p.dim() < 2 or tuple(p.shape[-2:]) != (s, a):
            raise ValueError(f"probs[{k}] must have shape [*batch, S={s}, A={a}], got {tuple(p.shape)}")
    joint = probs[0]
    for p in probs[1:]:
        joint = (joint.unsqueeze(-1) * p.unsqueeze(-2)).flatten(-2)
    return joint


def state_transition(
    game: IteratedMatrixGame, probs: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Markov chain of the game under tabular policies.

    Returns ``P [*batch, S, S]`` (``P[s, s']`` = probability of moving from ``s`` to ``s'``)
    and ``r [*batch, S, n]`` (expected reward of each seat when acting in ``s``).
    Batch dimensions of the per-seat policies broadcast.
    """
    joint = _joint_probs(game, probs)
    r = joint @ game.joint_payoff.to(device=joint.device, dtype=joint.dtype)
    # no transition ever enters s0
    P = torch.cat([torch.zeros_like(joint[..., :1]), joint], dim=-1)
    return P, r


def exact_value(
    game: IteratedMatrixGame,
    probs: Sequence[torch.Tensor],
    gamma: float,
    horizon: int | None = None,
) -> torch.Tensor:
    """Expected discounted return ``sum_{t<H} gamma^t E[r_t]`` from ``s0`` for every seat.

    ``probs[k]`` is seat ``k``'s policy ``[*batch, S, A]``. With ``horizon=None`` this is the
    infinite-horizon value ``p0^T (I - gamma P)^-1 r`` (needs ``0 <= gamma < 1``).
    Returns ``[*batch, n]``, differentiable with respect to ``probs``.
    """
    P, r = state_transition(game, probs)
    s = game.n_states
    if horizon is None:
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"infinite-horizon values need 0 <= gamma < 1, got {gamma}")
        eye = torch.eye(s, dtype=P.dtype, device=P.device)
        # values from every start state; we want row s0
        v = torch.linalg.solve(eye - gamma * P, r)
        return v[..., 0, :]
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0 or None, got {horizon}")
    if gamma < 0.0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    batch = P.shape[:-2]
    d = torch.zeros((*batch, 1, s), dtype=P.dtype, device=P.device)
    d[..., 0, 0] = 1.0
    value = torch.zeros((*batch, game.n_agents), dtype=r.dtype, device=r.device)
    discount = 1.0
    for t in range(horizon):
        value = value + discount * (d @ r).squeeze(-2)
        if t + 1 < horizon:
            d = d @ P
        discount *= gamma
    return value


def ipd_probs_from_lola(p_coop: torch.Tensor, seat: int) -> torch.Tensor:
    """LOLA's exact-IPD policy -> our tabular policy ``[*batch, 5, 2]``.

    LOLA gives, per player, the probability of cooperating in states ``[s0, CC, CD, DC, DD]``
    seen from that player's own perspective (own action first); ours are seen from seat 0,
    so seat 1's CD and DC swap. Column 0 is P(C), column 1 is P(D).
    """
    if p_coop.dim() < 1 or p_coop.shape[-1] != 5:
        raise ValueError(f"p_coop must have shape [*batch, 5], got {tuple(p_coop.shape)}")
    if seat not in (0, 1):
        raise ValueError(f"IPD has seats 0 and 1, got seat={seat}")
    if seat == 1:
        p_coop = p_coop[..., _SEAT1_PERM]
    return torch.stack([p_coop, 1.0 - p_coop], dim=-1)


def ipd_probs_to_lola(probs: torch.Tensor, seat: int) -> torch.Tensor:
    """Inverse of :func:`ipd_probs_from_lola`: ``[*batch, 5, 2] -> [*batch, 5]`` P(C), own perspective."""
    if probs.dim() < 2 or tuple(probs.shape[-2:]) != (5, 2):
        raise ValueError(f"probs must have shape [*batch, 5, 2], got {tuple(probs.shape)}")
    if seat not in (0, 1):
        raise ValueError(f"IPD has seats 0 and 1, got seat={seat}")
    p_coop = probs[..., 0]
    if seat == 1:
        p_coop = p_coop[..., _SEAT1_PERM]
    return p_coop
