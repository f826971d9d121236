"""Stateless bilinear zero-sum game of the Meta-MAPG paper's appendix C.

Each player has a scalar parameter; the values are ``V_i = phi_i * phi_j`` and ``V_j = -V_i``.
"""

from __future__ import annotations

import torch

__all__ = ["bilinear_zero_sum_values"]


def bilinear_zero_sum_values(phi_i: torch.Tensor, phi_j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``(V_i, V_j) = (phi_i * phi_j, -phi_i * phi_j)``; differentiable, broadcasting."""
    v_i = phi_i * phi_j
    return v_i, -v_i
