"""Statistics for reporting results over seeds: t-based 95% intervals and the project's AUC.

Everything is written with ``math`` and ``numpy`` only (no scipy), so the critical values
used for every error bar in the project are computed here and tested against tables.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["t_critical_975", "t_two_sided_tail", "mean_ci", "auc", "summarize"]

_EPS = 1e-15
_TINY = 1e-300


def _betacf(a: float, b: float, x: float, max_iter: int = 100_000) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise RuntimeError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use
    # the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_tail(t: float, df: int) -> float:
    """P(|T| > t) for Student's t with ``df`` degrees of freedom (t >= 0).

    Uses the identity P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2).
    """
    if t <= 0.0:
        return 1.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


@functools.lru_cache(maxsize=None)
def t_critical_975(df: int) -> float:
    """Two-sided 95% critical value of Student's t (the 0.975 quantile) for ``df`` >= 1.

    Found by bisection on the exact two-sided tail ``t_two_sided_tail`` (regularised
    incomplete beta by continued fraction), to ~1e-12; e.g. df=1 -> 12.7062, df=9 -> 2.2622,
    df -> infinity -> 1.95996.
    """
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    df = int(df)
    lo, hi = 0.0, 1.0
    while t_two_sided_tail(hi, df) > 0.05:  # tail decreases in t; df=1 needs hi ~ 12.7
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_tail(mid, df) > 0.05:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def mean_ci(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and the half-width of its 95% confidence interval.

    The half-width is ``t_critical_975(n - 1) * std(ddof=1) / sqrt(n)`` for ``n`` seeds.
    With a single seed it is NaN, not zero: one seed says nothing about the spread.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"mean_ci needs at least one seed along axis 0, got shape {arr.shape}")
    n = arr.shape[0]
    mean = np.asarray(arr.mean(axis=0))
    if n == 1:
        return mean, np.full_like(mean, np.nan)
    half = np.asarray(t_critical_975(n - 1) * arr.std(axis=0, ddof=1) / math.sqrt(n))
    return mean, half


def auc(curve: ArrayLike) -> np.ndarray:
    """Area under an adaptation curve: ``curve[..., 1:].sum(-1)``.

    ``curve[..., l]`` is the meta-agent's mean per-step reward at the joint policy phi_l of
    the chain, l = 0..L. The AUC sums the adapted policies phi_1..phi_L only: phi_0 is the
    pre-adaptation policy, which says nothing about how well the meta-agent adapts. Chain
    steps have unit spacing, so the area is the plain sum (no trapezoid, no 1/L factor).
    """
    arr = np.asarray(curve, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] < 2:
        raise ValueError(f"curve needs a last axis of length L+1 >= 2, got shape {arr.shape}")
    return np.asarray(arr[..., 1:].sum(axis=-1))


def _floats(x: ArrayLike) -> list[float]:
    """Plain Python floats (JSON-serialisable; NaN stays float('nan'))."""
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def summarize(per_seed_curves: Mapping[str, ArrayLike]) -> dict[str, dict[str, Any]]:
    """Per-method summary of adaptation curves ``[n_seeds, L+1]`` for JSON reports and plots.

    Returns ``{method: {"curve_mean", "curve_ci95", "auc_mean", "auc_ci95", "auc_per_seed",
    "n_seeds"}}`` with plain floats/lists/ints only; CIs are NaN when there is one seed.
    """
    out: dict[str, dict[str, Any]] = {}
    for method, curves in per_seed_curves.items():
        arr = np.asarray(curves, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"{method}: expected curves of shape [n_seeds, L+1], got {arr.shape}")
        curve_mean, curve_ci = mean_ci(arr)
        per_seed = auc(arr)
        auc_mean, auc_ci = mean_ci(per_seed)
        out[method] = {
            "curve_mean": _floats(curve_mean),
            "curve_ci95": _floats(curve_ci),
            "auc_mean": float(auc_mean),
            "auc_ci95": float(auc_ci),
            "auc_per_seed": _floats(per_seed),
            "n_seeds": int(arr.shape[0]),
        }
    return out
