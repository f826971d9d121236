"""Figures in the style of the Meta-MAPG paper: adaptation curves, AUC vs K, action dynamics.

Figures are built with matplotlib's object-oriented API on the Agg canvas (no pyplot, no
global backend change), so nothing ever opens a window and plotting is safe in workers.
Each function writes a PNG and returns its path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_adaptation_curves", "plot_auc_vs_k", "plot_action_dynamics"]

_MAX_TICKS = 11  # beyond this many chain steps, label only every k-th phi_l


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure attached to an Agg canvas."""
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``path`` (creating parent folders) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out


def _chain_ticks(ax: Axes, n_steps: int) -> None:
    """Label the x axis phi_0..phi_L (thinned for long chains)."""
    stride = max(1, math.ceil(n_steps / _MAX_TICKS))
    ticks = list(range(0, n_steps, stride))
    ax.set_xticks(ticks)
    ax.set_xticklabels([rf"$\phi_{{{l}}}$" for l in ticks])
    ax.set_xlim(-0.25, n_steps - 0.75)


def plot_adaptation_curves(
    summary: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    title: str,
    ylabel: str = "Average reward per step",
) -> Path:
    """Meta-agent reward along the chain per method, mean with 95% band (paper's Figure 2).

    ``summary`` is ``summarize``'s output (only "curve_mean" and "curve_ci95" are used).
    The band is left out at steps whose half-width is NaN (e.g. a single seed).
    """
    fig = _new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    n_steps = 0
    for i, (method, stats) in enumerate(summary.items()):
        mean = np.asarray(stats["curve_mean"], dtype=np.float64)
        ci = np.asarray(stats.get("curve_ci95", np.full_like(mean, np.nan)), dtype=np.float64)
        x = np.arange(mean.shape[0])
        n_steps = max(n_steps, mean.shape[0])
        color = f"C{i % 10}"
        ax.plot(x, mean, color=color, marker="o", markersize=4, linewidth=2, label=method)
        ok = np.isfinite(ci) & np.isfinite(mean)
        if ok.any():
            ax.fill_between(
                x, mean - ci, mean + ci, where=ok, color=color, alpha=0.2, linewidth=0,
                interpolate=False,
            )
    if n_steps:
        _chain_ticks(ax, n_steps)
    ax.set_xlabel("Joint policy")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if summary:
        ax.legend(loc="best", frameon=True)
    return _save(fig, path)


def plot_auc_vs_k(
    auc_by_k: Mapping[str, Mapping[int, tuple[float, float]]],
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Grouped bars of AUC (mean, 95% CI half-width) per method for each K (Figure 3a).

    ``auc_by_k[method][K] = (auc_mean, auc_ci95)``; a missing (method, K) pair leaves a gap
    and a NaN half-width draws the bar without an error bar.
    """
    ks = sorted({int(k) for by_k in auc_by_k.values() for k in by_k})
    methods = list(auc_by_k)
    fig = _new_figure((max(5.0, 1.2 * len(ks) + 2.5), 4.2))
    ax = fig.add_subplot()
    n = max(len(methods), 1)
    width = 0.8 / n
    centers = np.arange(len(ks), dtype=np.float64)
    for i, method in enumerate(methods):
        xs, heights, errs = [], [], []
        for j, k in enumerate(ks):
            if k in auc_by_k[method]:
                mean, half = auc_by_k[method][k]
                xs.append(centers[j] + (i - (n - 1) / 2) * width)
                heights.append(float(mean))
                errs.append(float(half))
        if not xs:
            continue
        color = f"C{i % 10}"
        ax.bar(xs, heights, width=width, color=color, alpha=0.85, label=method, edgecolor="black",
               linewidth=0.5)
        err = np.asarray(errs)
        fin = np.isfinite(err)
        if fin.any():
            ax.errorbar(np.asarray(xs)[fin], np.asarray(heights)[fin], yerr=err[fin], fmt="none",
                        ecolor="black", capsize=4, linewidth=1)
    ax.set_xticks(centers)
    ax.set_xticklabels([f"K={k}" for k in ks])
    ax.set_xlabel("Trajectories per chain step (K)")
    ax.set_ylabel("AUC")
    ax.set_title(title)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    if methods:
        ax.legend(loc="best", frameon=True)
    return _save(fig, path)


def plot_action_dynamics(
    probs: np.ndarray,
    peer_probs: np.ndarray | None,
    state_names: Sequence[str],
    action_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Action probabilities per state along the chain (the paper's Figures 9-16).

    ``probs`` (meta-agent) and ``peer_probs`` are ``[L+1, S, A]``. One subplot per state,
    x = phi_0..phi_L, one line per action: meta-agent solid, peer dashed, y in [0, 1].
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"probs must be [L+1, S, A], got shape {p.shape}")
    n_steps, n_states, n_actions = p.shape
    q = None if peer_probs is None else np.asarray(peer_probs, dtype=np.float64)
    if q is not None and q.shape != p.shape:
        raise ValueError(f"peer_probs shape {q.shape} differs from probs shape {p.shape}")
    if len(state_names) != n_states or len(action_names) != n_actions:
        raise ValueError(
            f"got {len(state_names)} state names and {len(action_names)} action names "
            f"for probs of shape {p.shape}"
        )
    ncols = min(n_states, 5)
    nrows = math.ceil(n_states / ncols)
    fig = _new_figure((3.2 * ncols, 2.9 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    x = np.arange(n_steps)
    for s in range(nrows * ncols):
        ax = axes[s // ncols][s % ncols]
        if s >= n_states:
            ax.set_visible(False)
            continue
        for a in range(n_actions):
            color = f"C{a % 10}"
            ax.plot(x, p[:, s, a], color=color, linestyle="-", linewidth=2,
                    label=f"meta-agent: {action_names[a]}")
            if q is not None:
                ax.plot(x, q[:, s, a], color=color, linestyle="--", linewidth=2,
                        label=f"peer: {action_names[a]}")
        ax.set_ylim(0.0, 1.0)
        _chain_ticks(ax, n_steps)
        ax.set_title(f"State {state_names[s]}")
        ax.grid(True, alpha=0.3)
        if s % ncols == 0:
            ax.set_ylabel("Probability")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.06, 1.0, 1.0))
    return _save(fig, path)
