"""The MATRL matrix-game experiments: Table 1 (random 2x2 games: convergence rate and steps) and
Figure 4 (learning dynamics on matching pennies). ``league bench matrix-games`` calls
:func:`run_matrix_games`; ``scripts/reproduce_matrl`` runs both."""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from league.eval.stats import mean_ci
from league.matrl.matrix import MATRIX_RULES, MatrixMATRLConfig, run_dynamics
from league.matrl.random_games import GAME_CLASSES, game_equilibria, random_games

__all__ = ["MatrixGamesConfig", "wilson_interval", "initial_policies", "run_matrix_games", "matching_pennies",
           "plot_matching_pennies", "PAPER_TABLE_1"]

#: The paper's Table 1 (rate / mean steps) for comparison; its rates divide by a wrong count
#: (REFERENCE.md), so only the ordering is comparable.
PAPER_TABLE_1 = {
    "iga": {"coordination": (0.99, 140.67), "anti-coordination": (0.975, 88.95), "cyclic": (0.78, 452.92)},
    "iga-pp": {"coordination": (0.99, 138.56), "anti-coordination": (0.975, 83.11), "cyclic": (0.809, 432.98)},
    "matrl": {"coordination": (0.99, 86.54), "anti-coordination": (0.9825, 75.52), "cyclic": (0.846, 369.40)},
}


@dataclass(frozen=True)
class MatrixGamesConfig:
    """The random 2x2 games benchmark (the paper's Table 1)."""

    games: int = 1000
    """Games per class (after skipping games with 2 or 4 equilibria)."""
    seed: int = 0
    """Seed of the game generator (class ``j`` uses ``seed + j``)."""
    classes: tuple[str, ...] = tuple(GAME_CLASSES)
    """Game classes (``league.matrl.random_games.GAME_CLASSES``)."""
    rules: tuple[str, ...] = ("iga", "iga-pp", "matrl", "matrl-no-br")
    """Learning rules (``league.matrl.matrix.MATRIX_RULES``)."""
    learner: MatrixMATRLConfig = field(default_factory=MatrixMATRLConfig)
    """Hyperparameters of every rule."""


def wilson_interval(successes: int, n: int, z: float = float(stats.norm.ppf(0.975))) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (stays inside [0, 1] and is not
    degenerate at 0 or n successes, unlike the Wald interval)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def initial_policies(start: tuple[float, ...], batch: int, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """Each seat's 2-action policy ``[batch, 2]`` from its probability of action 0."""
    return [torch.tensor([p, 1 - p], dtype=dtype).expand(batch, 2).clone() for p in start]


def _machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def run_matrix_games(cfg: MatrixGamesConfig, out_dir: str | Path | None = None) -> dict:
    """Run every rule on every class's games (batched over games) and summarise: absolute
    convergence rate with its 95% Wilson interval, and mean iterations to converge over the games
    that converged with its 95% t-interval. Writes ``summary.json`` and ``table.md`` to ``out_dir``."""
    t0 = time.time()
    results: dict[str, dict] = {}
    generation = {}
    for j, name in enumerate(cfg.classes):
        games, info = random_games(name, cfg.games, cfg.seed + j)
        generation[name] = info
        eq = game_equilibria(games)
        start = initial_policies(cfg.learner.start, games.shape[0])
        for rule in cfg.rules:
            t_rule = time.time()
            steps = run_dynamics(rule, games, start, cfg.learner, eq)["steps"].numpy()
            ok = steps > 0
            k, n = int(ok.sum()), int(steps.size)
            lo, hi = wilson_interval(k, n)
            entry = {"games": n, "converged": k, "rate": k / n, "rate_ci95_wilson": [lo, hi],
                     "seconds": time.time() - t_rule}
            if k:
                m, half = mean_ci(steps[ok].astype(np.float64))
                entry.update(mean_steps=float(m), mean_steps_ci95_half=float(half),
                             median_steps=float(np.median(steps[ok])))
            results.setdefault(rule, {})[name] = entry
    summary = {
        "experiment": "matrl_matrix_games",
        "what": "random 2x2 games (Table 1): rate = converged games / games run (absolute); rate interval: "
                "95% Wilson score interval over the games; steps: mean iterations to converge over the "
                "converged games with its 95% Student-t interval",
        "config": dataclasses.asdict(cfg),
        "generation": generation,
        "results": results,
        "paper_table_1": PAPER_TABLE_1,
        "seconds": time.time() - t0,
        "machine": _machine(),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "table.md").write_text(markdown_table(summary))
    return summary


def markdown_table(summary: dict) -> str:
    """Rate [95% Wilson] / mean steps ± 95% t half-width, per rule and class, with the paper's."""
    classes = list(summary["config"]["classes"])
    lines = ["| rule | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for rule, per in summary["results"].items():
        cells = []
        for c in classes:
            e = per[c]
            lo, hi = e["rate_ci95_wilson"]
            steps = f"{e['mean_steps']:.1f} ± {e['mean_steps_ci95_half']:.1f}" if e["converged"] > 1 else "-"
            cells.append(f"{e['rate']:.3f} [{lo:.3f}, {hi:.3f}] / {steps}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    for rule, per in summary["paper_table_1"].items():
        lines.append(f"| paper: {rule} | " + " | ".join(
            f"{per[c][0]} / {per[c][1]}" if c in per else "-" for c in classes) + " |")
    n = summary["config"]["games"]
    return (f"Convergence rate [95% Wilson interval over {n} games] / mean iterations to converge ± 95% "
            "t-interval half-width over the converged games. Seeds and budget in summary.json.\n\n"
            + "\n".join(lines) + "\n")


MATCHING_PENNIES = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]], dtype=torch.float64)


def matching_pennies(cfg: MatrixMATRLConfig, rules: tuple[str, ...] = tuple(MATRIX_RULES)) -> dict[str, dict]:
    """Every rule's trajectory on matching pennies from ``cfg.start`` (not frozen at convergence):
    ``{rule: {"trajectory": [T + 1, 2] probabilities of action 0, "weights": [T, 2],
    "sq_distance": [T + 1] max over seats of the squared distance to (1/2, 1/2)}}``."""
    out = {}
    for rule in rules:
        run = run_dynamics(rule, MATCHING_PENNIES.unsqueeze(0), initial_policies(cfg.start, 1), cfg, record=True)
        p0 = run["trajectory"][:, 0, :, 0]  # [T + 1, 2]
        out[rule] = {"trajectory": p0, "weights": run["weights"][:, 0],
                     "sq_distance": ((p0 - 0.5) ** 2).amax(-1)}
    return out


def plot_matching_pennies(runs: dict[str, dict], cfg: MatrixMATRLConfig, out_dir: str | Path) -> list[Path]:
    """Figure 4: each rule's path in the policy square over the IGA gradient field, and each rule's
    squared distance to the equilibrium per iteration. Writes ``dynamics.png`` and ``summary.json``."""
    from league.eval.plots import _new_figure, _save

    out = Path(out_dir)
    fig = _new_figure((12, 5))
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    grid = np.linspace(0.05, 0.95, 10)
    x, y = np.meshgrid(grid, grid)
    # dV_0/dp = 4q - 2 and dV_1/dq = 2 - 4p in matching pennies (p, q: probabilities of action 0)
    ax.quiver(x, y, 4 * y - 2, 2 - 4 * x, color="lightsteelblue", angles="xy")
    for i, (rule, run) in enumerate(runs.items()):
        tr = run["trajectory"].numpy()
        style = {"lw": 2.5 if i == 0 else 1, "ls": ("-", "-", "-", "--")[i % 4], "label": rule}
        ax.plot(tr[:, 0], tr[:, 1], **style)
        ax2.semilogy(np.maximum(run["sq_distance"].numpy(), 1e-12), **style)
    ax.plot([cfg.start[0]], [cfg.start[1]], "ko", ms=5, label="start")
    ax.plot([0.5], [0.5], "r*", ms=14, label="Nash equilibrium")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="player 1: P(heads)", ylabel="player 2: P(heads)",
           title="Matching pennies: learning dynamics")
    ax.legend(loc="upper right", fontsize=8)
    ax2.axhline(cfg.tolerance, color="grey", ls="--", lw=1, label=f"convergence tolerance {cfg.tolerance}")
    ax2.set(xlabel="iteration", ylabel="max over players of squared distance to NE",
            title="Distance to the equilibrium (one deterministic run each)")
    ax2.legend(fontsize=8)
    paths = [_save(fig, out / "dynamics.png")]
    summary = {
        "experiment": "matrl_matching_pennies",
        "what": "exact dynamics (no sampling, one deterministic run per rule) on matching pennies from the "
                "start below; converged_at: first iteration with every player's squared distance to (1/2, 1/2) "
                "below the tolerance, -1 if never",
        "config": dataclasses.asdict(cfg),
        "results": {rule: {"converged_at": _first_below(run["sq_distance"], cfg.tolerance),
                           "final_sq_distance": float(run["sq_distance"][-1]),
                           "final_policy_p_heads": run["trajectory"][-1].tolist()} for rule, run in runs.items()},
        "machine": _machine(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return paths + [out / "summary.json"]


def _first_below(x: torch.Tensor, tol: float) -> int:
    hit = (x < tol).nonzero()
    return int(hit[0, 0]) if hit.numel() else -1
