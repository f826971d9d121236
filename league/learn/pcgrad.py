"""PCGrad: gradient surgery for conflicting per-task gradients (Yu et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pcgrad", "pcgrad_mean"]


def pcgrad(grads: Tensor, generator: torch.Generator) -> Tensor:
    """Sum of PCGrad-projected task gradients: ``[T, P]`` -> ``[P]``.

    For each task i, the other tasks are visited in a random order drawn from
    ``generator``; whenever the current projected ``g_i`` has a negative dot
    product with the ORIGINAL ``g_j``, its component along ``g_j`` is removed.
    Zero-norm ``g_j`` are skipped. Extra leading dims (``[..., T, P]``) are
    treated as independent batches with their own orders. The loop runs over the
    T-1 projection steps; all tasks, batch elements and P are vectorised.
    """
    if grads.dim() < 2:
        raise ValueError("grads must be [..., T, P]")
    T = grads.shape[-2]
    proj = grads.clone()
    if T > 1:
        # A uniformly random order of the other tasks for every i: sort iid
        # uniforms with the diagonal (task i itself) pushed to the end.
        keys = torch.rand(
            *grads.shape[:-2], T, T, generator=generator, device=generator.device
        ).to(grads.device)
        keys = keys.masked_fill(torch.eye(T, dtype=torch.bool, device=grads.device), 2.0)
        order = keys.argsort(dim=-1)[..., : T - 1]  # [..., T, T-1]
        sq_norm = (grads * grads).sum(-1)  # [..., T]
        for s in range(T - 1):
            j = order[..., s]  # [..., T]
            gj = torch.take_along_dim(grads, j.unsqueeze(-1), dim=-2)  # [..., T, P]
            nj = torch.take_along_dim(sq_norm, j, dim=-1)  # [..., T]
            dot = (proj * gj).sum(-1)
            conflict = (dot < 0) & (nj > 0)
            coef = torch.where(conflict, dot / torch.where(nj > 0, nj, torch.ones_like(nj)), 0.0)
            proj = proj - coef.unsqueeze(-1) * gj
    return proj.sum(-2)


def pcgrad_mean(grads: Tensor, generator: torch.Generator) -> Tensor:
    """Mean (instead of sum) of the PCGrad-projected task gradients."""
    return pcgrad(grads, generator) / grads.shape[-2]
