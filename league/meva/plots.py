"""Figures of learners on the logistic game: basins of attraction and optimisation
trajectories (the MeVa paper's Figure 2), and training-loss curves."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from league.eval.plots import _new_figure, _save

__all__ = ["plot_basins", "plot_trajectories", "plot_loss"]


def plot_basins(panels: Mapping[str, Mapping[str, np.ndarray]], extent: float, path: str | os.PathLike[str],
                title: str) -> Path:
    """One row per method, one panel per setting: white where the start ended in the positive
    quadrant (the preferred equilibrium B's side), black elsewhere. ``panels[method][setting]``
    is a boolean ``[grid, grid]`` map indexed ``[x2, x1]``."""
    rows = list(panels)
    cols = max(len(v) for v in panels.values())
    fig = _new_figure((2.0 * cols, 2.1 * len(rows)))
    for r, method in enumerate(rows):
        for c, (setting, reached) in enumerate(panels[method].items()):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1)
            ax.imshow(reached.astype(float), origin="lower", cmap="gray", vmin=0, vmax=1,
                      extent=(-extent, extent, -extent, extent), interpolation="nearest")
            ax.set_title(f"{method} {setting}: {reached.mean():.0%}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_trajectories(paths: Mapping[str, np.ndarray], fixed_points: Sequence[tuple[float, float]], extent: float,
                      path: str | os.PathLike[str], title: str) -> Path:
    """One panel per learner: optimisation trajectories ``[steps + 1, starts, 2]`` in the
    ``(x1, x2)`` plane, with the game's stable fixed points marked."""
    names = list(paths)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = _new_figure((3.0 * cols, 3.0 * rows))
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        p = paths[name]
        for j in range(p.shape[1]):
            ax.plot(p[:, j, 0], p[:, j, 1], lw=0.8)
            ax.plot(p[0, j, 0], p[0, j, 1], "k.", ms=3)
        for fx, fy in fixed_points:
            ax.plot(fx, fy, "r*", ms=8)
        ax.set_xlim(-extent, extent), ax.set_ylim(-extent, extent)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_loss(curves: Mapping[str, Sequence[float]], path: str | os.PathLike[str], title: str) -> Path:
    """Training loss per iteration, one line per model, log scale."""
    fig = _new_figure((5.0, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in curves.items():
        ax.plot(np.arange(len(ys)), ys, label=name)
    ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("loss"), ax.legend()
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
