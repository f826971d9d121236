"""Linear feature baseline (Duan et al. 2016), fitted per chain."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_feature_baseline", "baseline_features"]

_MAX_RETRIES = 5
_ZERO_REG_RETRY = 1e-8


def baseline_features(obs: Tensor) -> Tensor:
    """Features ``[obs, obs^2, t/100, (t/100)^2, (t/100)^3, 1]`` for ``obs [..., H, D]``.

    Returns ``[..., H, 2 D + 4]``; t is the time index ``0..H-1``.
    """
    H = obs.shape[-2]
    t = torch.arange(H, dtype=obs.dtype, device=obs.device) / 100.0
    t = t.reshape((1,) * (obs.dim() - 2) + (H, 1)).expand(*obs.shape[:-1], 1)
    return torch.cat([obs, obs * obs, t, t**2, t**3, torch.ones_like(t)], dim=-1)


def linear_feature_baseline(obs: Tensor, returns: Tensor, reg: float = 1e-5) -> Tensor:
    """Fit ``returns`` by ridge regression on per-step features; return fitted values.

    ``obs [B, K, H, D]``, ``returns [B, K, H]`` -> ``[B, K, H]`` (any leading dims in
    place of B). Each chain gets its own fit over its K*H samples, solving
    ``(X^T X + reg I) w = X^T y``. A chain whose solve fails or gives non-finite
    weights is re-solved with ``reg`` multiplied by 10, up to 5 times, after which
    a ``RuntimeError`` is raised (``reg = 0`` retries from ``1e-8``). The normal equations are solved in float64
    (features like one-hot ``obs`` and ``obs^2`` are exactly collinear, which is
    ill-conditioned in float32); the result is cast back to the input dtype and
    carries no gradient.
    """
    if reg < 0:
        raise ValueError(f"reg must be non-negative, got {reg}")
    if obs.dim() < 3:
        raise ValueError("obs must have at least [K, H, D] dims")
    if obs.shape[:-1] != returns.shape:
        raise ValueError(
            f"obs {tuple(obs.shape)} does not match returns {tuple(returns.shape)} "
            "(expected obs = returns + [D])"
        )
    out_dtype = returns.dtype
    lead = returns.shape[:-2]
    K, H = returns.shape[-2:]
    X = baseline_features(obs.detach().to(torch.float64))  # [..., K, H, F]
    F = X.shape[-1]
    X = X.reshape(-1, K * H, F)  # [B, N, F]
    y = returns.detach().to(torch.float64).reshape(-1, K * H, 1)  # [B, N, 1]
    Bn = X.shape[0]
    XtX = X.transpose(-1, -2) @ X  # [B, F, F]
    Xty = X.transpose(-1, -2) @ y  # [B, F, 1]
    eye = torch.eye(F, dtype=X.dtype, device=X.device)

    regs = torch.full((Bn,), float(reg), dtype=X.dtype, device=X.device)
    w = torch.zeros(Bn, F, 1, dtype=X.dtype, device=X.device)
    todo = torch.ones(Bn, dtype=torch.bool, device=X.device)
    for _ in range(_MAX_RETRIES + 1):
        idx = todo.nonzero(as_tuple=True)[0]
        A = XtX[idx] + regs[idx, None, None] * eye
        sol, info = torch.linalg.solve_ex(A, Xty[idx])
        ok = (info == 0) & torch.isfinite(sol).all(dim=(-2, -1))
        w[idx[ok]] = sol[ok]
        todo[idx[ok]] = False
        if not bool(todo.any()):
            break
        # reg == 0 cannot be scaled up: its first retry uses a small absolute ridge
        bumped = torch.where(regs > 0, regs * 10.0, torch.full_like(regs, _ZERO_REG_RETRY))
        regs = torch.where(todo, bumped, regs)
    else:
        bad = todo.nonzero(as_tuple=True)[0].tolist()
        raise RuntimeError(
            f"linear_feature_baseline: ridge solve failed for chains {bad} "
            f"even with reg increased to {regs[todo].max().item() / 10.0:g}"
        )
    fitted = (X @ w).squeeze(-1)  # [B, N]
    return fitted.reshape(*lead, K, H).to(out_dtype)
