"""The Logistic Game (Letcher, 2018) as defined in the Meta-Value Learning paper, eq. (8).

Two players, one scalar policy each; both maximise. The quartic term uses the divisor 10000
(the MeVa paper's, which matches Letcher's plots; Letcher's text writes 1000). Values are
exact and differentiable, batched over any number of joint-policy points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LogisticGame"]


@dataclass(frozen=True)
class LogisticGame:
    """``f(x) = -(4 s1 (1 - 2 s2), 4 s2 (1 - 2 s1)) - (x1^2 x2^2 + (x1 - x2)^2 (x1 + x2)^2) / divisor``
    with ``s_i = sigmoid(x_i)``. Stable fixed points near ``(5.03, 5.03)`` (B, preferred by
    both) and ``(-5.03, -5.03)`` (A)."""

    divisor: float = 10000.0
    """Divisor of the quartic confinement term (10000 as in the MeVa paper)."""
    n_players: int = 2
    """Seats (fixed: the game is defined for two)."""
    dim: int = 1
    """Parameters per player (one scalar each)."""

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Both players' payoffs ``[*batch, 2]`` of joint policies ``x [*batch, 2, 1]``."""
        if x.shape[-2:] != (2, 1):
            raise ValueError(f"logistic game policies must have shape [*batch, 2, 1], got {tuple(x.shape)}")
        x1, x2 = x[..., 0, 0], x[..., 1, 0]
        s1, s2 = torch.sigmoid(x1), torch.sigmoid(x2)
        confine = (x1**2 * x2**2 + (x1 - x2) ** 2 * (x1 + x2) ** 2) / self.divisor
        f1 = -4.0 * s1 * (1.0 - 2.0 * s2) - confine
        f2 = -4.0 * s2 * (1.0 - 2.0 * s1) - confine
        return torch.stack([f1, f2], dim=-1)
