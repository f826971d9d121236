"""Statistics for reporting results over seeds: t-based 95% intervals and the project's AUC.

Every interval in the project is the mean over seeds +- the half-width of its 95% Student-t
interval, ``t_{0.975, n-1} * sd / sqrt(n)``, with the t quantile from scipy. ``CI_LABEL``
is how every table and plot names it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _scipy_stats

__all__ = ["t_critical_975", "t_two_sided_tail", "mean_ci", "mean_se", "auc", "summarize", "ci_label", "CI_LABEL"]

CI_LABEL = "mean ± 95% t-interval over n seeds"
"""What every reported ``x ± y`` is; ``ci_label(n)`` fills in n."""


def ci_label(n: int | str) -> str:
    """``CI_LABEL`` with the number of seeds, e.g. ``mean ± 95% t-interval over n=3 seeds``."""
    return CI_LABEL.replace("n seeds", f"n={n} seeds")


def t_two_sided_tail(t: float, df: int) -> float:
    """P(|T| > t) for Student's t with ``df`` degrees of freedom (t >= 0)."""
    if t <= 0.0:
        return 1.0
    return float(2.0 * _scipy_stats.t.sf(t, df))


def t_critical_975(df: int) -> float:
    """Two-sided 95% critical value of Student's t (its 0.975 quantile, scipy) for ``df`` >= 1,
    e.g. df=1 -> 12.7062, df=9 -> 2.2622, df -> infinity -> 1.95996."""
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    return float(_scipy_stats.t.ppf(0.975, int(df)))


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

    Returns ``{method: {"curve_mean", "curve_ci95", "curve_per_seed", "auc_mean", "auc_ci95",
    "auc_per_seed", "n_seeds"}}`` with plain floats/lists/ints only; CIs (half-widths of the
    95% t-interval) are NaN when there is one seed.
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
            "curve_per_seed": [_floats(row) for row in arr],
            "auc_mean": float(auc_mean),
            "auc_ci95": float(auc_ci),
            "auc_per_seed": _floats(per_seed),
            "n_seeds": int(arr.shape[0]),
        }
    return out


def mean_se(values: ArrayLike) -> dict[str, float]:
    """``{"mean", "se"}`` of a 1-D sample: the mean and its standard error ``sd / sqrt(n)``
    (sample sd, ddof 1). Used where the spread is over trials of one run (e.g. the MeVa
    paper's "mean ± standard error over policy pairs"), not over seeds."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {v.size}")
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(v.size))}
