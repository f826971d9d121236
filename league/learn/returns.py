"""Discounted returns-to-go and discount weights.

Time is the last dimension (``[..., H]``, see docs/conventions.md); all leading
dimensions are batch dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["discounted_returns", "discount_weights"]


def discount_weights(
    H: int,
    gamma: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Return ``[gamma^0, ..., gamma^(H-1)]`` as a ``[H]`` tensor.

    Powers are computed in float64 and then cast, so long horizons in float32 do
    not accumulate rounding from repeated multiplication.
    """
    if H < 0:
        raise ValueError(f"H must be non-negative, got {H}")
    t = torch.arange(H, dtype=torch.float64, device=device)
    return torch.pow(torch.tensor(float(gamma), dtype=torch.float64, device=device), t).to(dtype)


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Returns-to-go ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'`` over the last dim.

    Computed by the backward recursion ``G_t = r_t + gamma G_{t+1}`` (a Python
    loop over H, vectorised over all leading dims). Unlike a scaled reverse
    cumulative sum (which divides by ``gamma^t``) it never over/underflows for
    long horizons, and it is differentiable with respect to ``rewards``.
    """
    H = rewards.shape[-1]
    if H == 0:
        return rewards.clone()
    g = torch.zeros_like(rewards[..., 0])
    out = []
    for t in range(H - 1, -1, -1):
        g = rewards[..., t] + gamma * g
        out.append(g)
    out.reverse()
    return torch.stack(out, dim=-1)
