"""Generalised advantage estimation (Schulman et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gae_advantages"]


def gae_advantages(
    rewards: Tensor,
    values: Tensor,
    gamma: float,
    lam: float,
    last_value: Tensor | None = None,
) -> Tensor:
    """GAE(gamma, lambda) advantages over the last (time) dim, shape ``[..., H]``.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` with ``V_H = last_value`` (``[...]``,
    0 when None: the episode ends at H), and ``A_t = delta_t + gamma lam A_{t+1}``.
    ``lam = 1`` gives discounted returns minus values; ``lam = 0`` the TD residual.
    A Python loop over H runs the backward recursion, vectorised over leading dims.
    """
    if rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} differ")
    H = rewards.shape[-1]
    if H == 0:
        return rewards.clone()
    if last_value is None:
        next_v = torch.zeros_like(values[..., 0])
    else:
        next_v = torch.as_tensor(last_value, dtype=values.dtype, device=values.device)
        next_v = next_v.expand_as(values[..., 0])
    adv = torch.zeros_like(next_v)
    out = []
    for t in range(H - 1, -1, -1):
        delta = rewards[..., t] + gamma * next_v - values[..., t]
        adv = delta + (gamma * lam) * adv
        out.append(adv)
        next_v = values[..., t]
    out.reverse()
    return torch.stack(out, dim=-1)
