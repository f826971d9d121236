"""Figures in the style of the Meta-MAPG paper: adaptation curves, AUC vs K, action dynamics.

Figures are built with matplotlib's object-oriented API on the Agg canvas (no pyplot, no
global backend change), so nothing ever opens a window and plotting is safe in workers.
Each function writes a PNG and returns its path.

Every figure that shows a spread says what it is (``stats.ci_label``: mean ± 95% t-interval
over n seeds, with n), draws each seed as a thin line or a point, and keeps every method
visible: its own colour, line style and marker, a small x offset, and y limits set by the
data rather than by intervals that few seeds make wide (an interval that leaves the axes is
clipped, and the figure says so).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from league.eval.stats import ci_label, mean_ci
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["plot_adaptation_curves", "plot_auc_vs_k", "plot_action_dynamics", "plot_training_curves"]

_MAX_TICKS = 11  # beyond this many chain steps, label only every k-th phi_l
_STYLES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_OFFSET = 0.07  # x offset between methods, in chain steps, so equal curves stay visible


def _style(i: int) -> dict:
    """Colour, line style and marker of the i-th method: no two methods look alike."""
    return {"color": f"C{i % 10}", "linestyle": _STYLES[i % len(_STYLES)], "marker": _MARKERS[i % len(_MARKERS)]}


def _n_label(ns: Sequence[int]) -> str:
    """The spread label for methods with ``ns`` seeds: one n, or 'n per method in the legend'."""
    ns = sorted(set(int(n) for n in ns))
    return ci_label(ns[0]) if len(ns) == 1 else ci_label("n").replace("n=n seeds", "n seeds (n per method in the legend)")


def _data_limits(ax: Axes, values: list[np.ndarray], lows: np.ndarray, highs: np.ndarray) -> bool:
    """Set y limits from the plotted data (means, seeds) with a margin; return whether any
    interval end falls outside them (and so is clipped)."""
    data = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values else np.array([])
    data = data[np.isfinite(data)]
    if data.size == 0:
        return False
    lo, hi = float(data.min()), float(data.max())
    pad = 0.15 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 0.1)
    lo, hi = lo - pad, hi + pad
    ax.set_ylim(lo, hi)
    ends = np.concatenate([lows[np.isfinite(lows)], highs[np.isfinite(highs)]])
    return bool(ends.size and ((ends < lo).any() or (ends > hi).any()))


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure attached to an Agg canvas."""
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``path`` (creating parent folders) and return the path; the
    PNG's Title and Description text chunks hold the figure's titles and every text on it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    texts = [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    titles = [t for t in [fig._suptitle.get_text() if fig._suptitle else ""] + [a.get_title() for a in fig.axes] if t]
    # the PNG says in text what it shows (titles, legend, the spread), for readers and tests
    fig.savefig(out, format="png", bbox_inches="tight",
                metadata={"Title": " | ".join(titles), "Description": "\n".join(dict.fromkeys(texts))})
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
    """Meta-agent reward along the chain per method (the paper's Figure 2): the mean over seeds
    with its 95% t-interval as error bars, each seed as a thin line.

    ``summary`` is ``summarize``'s output ("curve_mean", "curve_ci95", and where present
    "curve_per_seed" and "n_seeds"). A NaN half-width (one seed) draws no error bar.
    """
    fig = _new_figure((6.8, 4.6))
    ax = fig.add_subplot()
    n_steps, ns, shown, lows, highs = 0, [], [], [], []
    m_count = len(summary)
    for i, (method, stats) in enumerate(summary.items()):
        mean = np.asarray(stats["curve_mean"], dtype=np.float64)
        ci = np.asarray(stats.get("curve_ci95", np.full_like(mean, np.nan)), dtype=np.float64)
        seeds = np.asarray(stats.get("curve_per_seed", [mean]), dtype=np.float64)
        n = int(stats.get("n_seeds", seeds.shape[0]))
        ns.append(n)
        x = np.arange(mean.shape[0]) + (i - (m_count - 1) / 2) * _OFFSET
        n_steps = max(n_steps, mean.shape[0])
        st = _style(i)
        for row in seeds if n > 1 else []:
            ax.plot(x, row, color=st["color"], linestyle=st["linestyle"], linewidth=0.7, alpha=0.45, zorder=2)
        ax.errorbar(x, mean, yerr=np.where(np.isfinite(ci), ci, 0.0), color=st["color"], linestyle=st["linestyle"],
                    marker=st["marker"], markersize=5, linewidth=2, elinewidth=1, capsize=3, zorder=3 + i,
                    label=f"{method} (n={n})")
        shown += [mean, seeds]
        lows.append(mean - ci)
        highs.append(mean + ci)
    clipped = _data_limits(ax, shown, np.concatenate(lows) if lows else np.array([]),
                           np.concatenate(highs) if highs else np.array([]))
    if n_steps:
        _chain_ticks(ax, n_steps)
    ax.set_xlabel("Joint policy")
    ax.set_ylabel(ylabel)
    note = _n_label(ns) + "; thin lines: single seeds" + ("; intervals clipped at the axes" if clipped else "")
    ax.set_title(f"{title}\n{note}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if summary:  # below the axes, so it covers no curve
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(len(summary), 4), frameon=False,
                  fontsize=8)
    return _save(fig, path)


def plot_auc_vs_k(
    auc_by_k: Mapping[str, Mapping[int, tuple[float, float]]],
    path: str | os.PathLike[str],
    title: str,
    per_seed: Mapping[str, Mapping[int, Sequence[float]]] | None = None,
) -> Path:
    """Grouped bars of AUC per method for each K (Figure 3a): mean with its 95% t-interval as
    an error bar, each seed's AUC as a point (from ``per_seed[method][K]``, which also gives n).

    ``auc_by_k[method][K] = (auc_mean, auc_ci95)``; a missing (method, K) pair leaves a gap
    and a NaN half-width draws the bar without an error bar.
    """
    ks = sorted({int(k) for by_k in auc_by_k.values() for k in by_k})
    methods = list(auc_by_k)
    fig = _new_figure((max(5.0, 1.2 * len(ks) + 2.5), 4.4))
    ax = fig.add_subplot()
    n = max(len(methods), 1)
    width = 0.8 / n
    centers = np.arange(len(ks), dtype=np.float64)
    ns: list[int] = []
    for i, method in enumerate(methods):
        xs, heights, errs = [], [], []
        seeds_here = (per_seed or {}).get(method, {})
        for j, k in enumerate(ks):
            if k in auc_by_k[method]:
                mean, half = auc_by_k[method][k]
                xs.append(centers[j] + (i - (n - 1) / 2) * width)
                heights.append(float(mean))
                errs.append(float(half))
                pts = list(seeds_here.get(k, []))
                if pts:
                    ns.append(len(pts))
                    ax.scatter(np.full(len(pts), xs[-1]), pts, s=14, color="black", zorder=4,
                               label=None if ns[:-1] else "single seeds")
        if not xs:
            continue
        st = _style(i)
        ax.bar(xs, heights, width=width, color=st["color"], alpha=0.85, label=method, edgecolor="black",
               linewidth=0.5, hatch=["", "//", "..", "xx"][i % 4])
        err = np.asarray(errs)
        fin = np.isfinite(err)
        if fin.any():
            ax.errorbar(np.asarray(xs)[fin], np.asarray(heights)[fin], yerr=err[fin], fmt="none",
                        ecolor="black", capsize=4, linewidth=1)
    ax.set_xticks(centers)
    ax.set_xticklabels([f"K={k}" for k in ks])
    ax.set_xlabel("Trajectories per chain step (K)")
    ax.set_ylabel("AUC")
    ax.set_title(f"{title}\n{_n_label(ns) if ns else ci_label('n')}", fontsize=10)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    if methods:
        ax.legend(loc="best", frameon=True, fontsize=8)
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


def _series(records: Sequence[Mapping], key: str) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """``{method: {seed: (iterations, values)}}`` of the records that carry a finite ``key``."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in records:
        v = r.get(key)
        if v is None or not math.isfinite(float(v)):
            continue
        out.setdefault(r["method"], {}).setdefault(int(r["seed"]), {})[int(r["iteration"])] = float(v)
    return {m: {s: (np.array(sorted(d)), np.array([d[i] for i in sorted(d)])) for s, d in by_seed.items()}
            for m, by_seed in out.items()}


def plot_training_curves(
    records: Sequence[Mapping],
    path: str | os.PathLike[str],
    title: str,
    panels: Sequence[tuple[str, str]] = (("objective", "Meta-objective"),
                                         ("val_score", "Validation score"),
                                         ("grad_norm", "Gradient norm (before clipping)")),
) -> Path:
    """Meta-training curves from ``metrics.jsonl`` records: one panel per key, per method the
    mean over seeds (at the iterations every seed reached) with a 95% t-interval band, and
    each seed as a thin line. The gradient norm is drawn on a log scale."""
    methods = sorted({r["method"] for r in records}, key=lambda m: [r["method"] for r in records].index(m))
    fig = _new_figure((7.2, 2.6 * len(panels) + 0.8))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    ns: dict[str, int] = {}
    any_clipped = False
    for ax, (key, label) in zip(axes, panels):
        series = _series(records, key)
        shown, lows, highs = [], [], []
        for i, method in enumerate(methods):
            by_seed = series.get(method, {})
            if not by_seed:
                continue
            st = _style(i)
            ns[method] = max(ns.get(method, 0), len(by_seed))
            sparse = max(len(it) for it, _ in by_seed.values()) <= 30
            for it, v in by_seed.values():
                ax.plot(it, v, color=st["color"], linestyle=st["linestyle"], linewidth=0.7, alpha=0.45, zorder=2)
                shown.append(v)
            common = sorted(set.intersection(*(set(it.tolist()) for it, _ in by_seed.values())))
            if not common:
                continue
            stack = np.stack([v[np.searchsorted(it, common)] for it, v in by_seed.values()])
            mean, half = mean_ci(stack)
            x = np.asarray(common, dtype=np.float64)
            ax.plot(x, mean, color=st["color"], linestyle=st["linestyle"], linewidth=2, zorder=3 + i,
                    marker=st["marker"] if sparse else None, markersize=4, markevery=1,
                    label=f"{method} (n={len(by_seed)})")
            if np.isfinite(half).any():
                ax.fill_between(x, mean - half, mean + half, color=st["color"], alpha=0.12, linewidth=0, zorder=1)
            shown.append(mean)
            lows.append(mean - half)
            highs.append(mean + half)
        if key == "grad_norm" and shown and all((np.asarray(v) > 0).all() for v in shown):
            ax.set_yscale("log")  # limits from the data: a band's lower end can be <= 0
            data = np.concatenate([np.asarray(v).ravel() for v in shown])
            ax.set_ylim(float(data.min()) / 1.5, float(data.max()) * 1.5)
        elif shown:
            any_clipped |= _data_limits(ax, shown, np.concatenate(lows) if lows else np.array([]),
                                        np.concatenate(highs) if highs else np.array([]))
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        if not shown:
            ax.text(0.5, 0.5, f"no {key} records", transform=ax.transAxes, ha="center", va="center")
    axes[-1].set_xlabel("Meta-training iteration")
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if handles:
        axes[0].legend(handles, labels, loc="best", fontsize=8, frameon=True)
    note = _n_label(list(ns.values()) or [0]) + "; thin lines: single seeds" + (
        "; bands clipped at the axes" if any_clipped else "")
    fig.suptitle(f"{title}\n{note}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
