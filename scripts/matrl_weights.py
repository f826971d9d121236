"""How often MATRL's meta-game Nash weight ``w`` (the probability of a seat's predicted policy)
lies strictly inside (0, 1) in real runs, written to results/matrl_weights/ (summary.json,
weights.png). Config: configs/matrl/weights.toml. About 3 to 6 minutes of one CPU core.

- Sampled rounds (``league.matrl.sampled.run_sampled_matrl``) on the games the league's rounds
  support (rps with 2..4 players, ipd), over a grid of step sizes, trust-region settings, K and
  H: per round, whether the weights MATRL used are interior, whether the meta-game has an
  interior equilibrium at all (2 players: the closed form), whether a seat's own gain (its step
  alone) is negative, and whether the meta-game is zero-sum.
- Exact matrix-game MATRL (``league.matrl.matrix.run_dynamics``, solver ``closed-form-2x2``: the
  welfare-best of all verified equilibria, mixed ones included) on matching pennies from random
  starts and on the random 2x2 classes, over the trust-region step size: the same counts, and
  how many interior equilibria occur where the closed-form bound ``lr**2 * e0 * e1 > 1``
  (docs/matrl.md, "When is a Nash weight fractional?") says none can.

    .venv/bin/python scripts/matrl_weights.py [--config configs/matrl/weights.toml] [--out results/matrl_weights]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from league.config import build, read_table
from league.eval.stats import mean_ci
from league.games import make_game
from league.matrl.experiments import MATCHING_PENNIES, wilson_interval
from league.matrl.matrix import MatrixMATRLConfig, run_dynamics, trust_region_step
from league.matrl.random_games import GAME_CLASSES, random_games
from league.matrl.sampled import SampledMATRLConfig, run_sampled_matrl
from league.nash.metagame import exact_metagame
from league.nash.solvers import equilibria_2x2
from league.policies.tabular import Tabular
from league.run import machine

#: The league test's per-seat trust-region step sizes (tests/test_matrl_league.py), scaled by ``lr_scales``.
BASE_LRS = (0.5, 1.0, 0.7)


@dataclass
class TrustSetting:
    """One trust-region setting of the sampled grid."""

    steps: int = 2
    """Inner ascent steps (``SampledMATRLConfig.trust_steps``)."""
    kl_coef: float = 0.5
    """``SampledMATRLConfig.kl_coef``."""


@dataclass
class SampledGrid:
    """The sampled-round grid: every combination is run for every seed."""

    games: list[str] = field(default_factory=lambda: ["rps:2"])
    """``game:n_players`` (``league.games.GAMES``)."""
    lr_scales: list[float] = field(default_factory=lambda: [1.0])
    """Multipliers of :data:`BASE_LRS` (per seat; the last repeats)."""
    trust: list[TrustSetting] = field(default_factory=lambda: [TrustSetting()])
    """Trust-region settings."""
    trajectories: list[int] = field(default_factory=lambda: [8])
    """K values."""
    horizons: list[int] = field(default_factory=lambda: [3])
    """H values."""
    rounds: int = 5
    """MATRL rounds per run (one group)."""
    br_lr: float = 0.8
    """Best-response step size."""
    clip: float = 0.5
    """Truncation of the best response's peer weight."""


@dataclass
class ExactGrid:
    """The exact matrix-game runs."""

    lrs: list[float] = field(default_factory=lambda: [0.02])
    """Trust-region (IGA) step sizes; everything else is ``MatrixMATRLConfig``'s default."""
    games_per_class: int = 200
    """Random 2x2 games per class and seed; matching pennies gets as many random starts."""
    iterations: int = 100
    """MATRL iterations per game (not frozen at convergence)."""


@dataclass
class WeightsConfig:
    """The whole experiment."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Seeds: the sampled runs' initial parameters and episodes; the exact runs' games and starts."""
    interior_tol: float = 1e-6
    """``w`` is interior when ``interior_tol <= w <= 1 - interior_tol``."""
    sampled: SampledGrid = field(default_factory=SampledGrid)
    """See :class:`SampledGrid`."""
    exact: ExactGrid = field(default_factory=ExactGrid)
    """See :class:`ExactGrid`."""


def interior(w: torch.Tensor, tol: float) -> torch.Tensor:
    """``[..., n] -> [...]``: whether any seat's weight is strictly inside ``(0, 1)`` (up to ``tol``)."""
    return ((w >= tol) & (w <= 1 - tol)).any(-1)


def interior_equilibrium_exists(meta: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 2, 2] -> [B]``: whether each 2-player meta-game has a fully mixed equilibrium,
    checked on the game scaled to max |entry| 1 (Nash equilibria are scale-free; unscaled, a
    meta-game of tiny entries makes every profile an eps-equilibrium)."""
    scale = meta.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-300)
    return equilibria_2x2(meta / scale, eps=1e-9, interior_only=True)[1][:, 4]


def own_gains(meta: torch.Tensor) -> torch.Tensor:
    """``[B, n, 2, ..., 2] -> [B, n]``: each seat's gain when it alone plays its predicted policy."""
    n = meta.shape[1]
    return torch.stack([meta[:, i][(slice(None), *[int(j == i) for j in range(n)])] for i in range(n)], -1)


def _rate(per_seed: list[tuple[int, int]]) -> dict:
    """Events / trials per seed -> mean rate over seeds with its 95% t-interval, and the pooled
    count with its 95% Wilson interval (informative when every seed saw none)."""
    rates = np.array([k / t for k, t in per_seed])
    m, half = mean_ci(rates)
    k, t = sum(k for k, _ in per_seed), sum(t for _, t in per_seed)
    return {"mean_over_seeds": float(m), "ci95_half_t": float(half), "per_seed": rates.tolist(),
            "pooled": [k, t], "pooled_ci95_wilson": list(wilson_interval(k, t))}


def sampled_cell(env: str, n: int, scale: float, trust: TrustSetting, K: int, H: int, grid: SampledGrid,
                 seeds: list[int], tol: float) -> dict:
    """One grid cell over every seed: counts per seed of rounds with interior weights, with an
    interior meta-game equilibrium (2 players), with a negative own gain, zero-sum meta-games."""
    lrs = [s * scale for s in BASE_LRS][:n] + [BASE_LRS[-1] * scale] * max(0, n - len(BASE_LRS))
    cfg = SampledMATRLConfig(env=env, n_players=n, trajectories=K, horizon=H, lr=lrs, trust_steps=trust.steps,
                             kl_coef=trust.kl_coef, br_lr=grid.br_lr, clip=grid.clip, rounds=grid.rounds)
    game = make_game(env, n_players=n)
    policy = Tabular(game.obs_dim, game.n_actions)
    counts = {"interior_weights": [], "interior_equilibrium": [], "negative_own_gain": [], "zero_sum": []}
    for seed in seeds:
        inits = [policy.init_params(torch.Generator().manual_seed(1000 * seed + k)) for k in range(n)]
        _, history = run_sampled_matrl(game, [policy] * n, [inits], cfg, torch.Generator().manual_seed(seed))
        w = torch.tensor([h["weights"] for h in history], dtype=torch.float64)
        meta = torch.tensor([h["metagame"] for h in history], dtype=torch.float64).reshape(-1, n, *[2] * n)
        R = len(history)
        counts["interior_weights"].append((int(interior(w, tol).sum()), R))
        counts["negative_own_gain"].append((int((own_gains(meta) < 0).any(-1).sum()), R))
        counts["zero_sum"].append((int((meta.sum(1).abs().amax(dim=tuple(range(1, n + 1))) < 1e-9).sum()), R))
        if n == 2:
            counts["interior_equilibrium"].append((int(interior_equilibrium_exists(meta).sum()), R))
    return {"env": env, "n_players": n, "lr": lrs, "trust_steps": trust.steps, "kl_coef": trust.kl_coef,
            "trajectories": K, "horizon": H, **{k: _rate(v) for k, v in counts.items() if v}}


def interaction(payoff: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 2, 2] -> [B, 2]``: each seat's interaction coefficient ``e_k`` (the coefficient of
    ``p * q`` in ``V_k`` as a function of both seats' probabilities of action 0)."""
    return payoff[:, :, 0, 0] - payoff[:, :, 0, 1] - payoff[:, :, 1, 0] + payoff[:, :, 1, 1]


def exact_run(games: torch.Tensor, start: list[torch.Tensor], lr: float, grid: ExactGrid, tol: float) -> dict:
    """Exact MATRL on ``games [B, 2, 2, 2]`` from ``start``: counts over (game, iteration) of interior
    weights used, of meta-games with an interior equilibrium, and of those where the bound
    ``lr**2 * e0 * e1 > 1`` does not hold (the bound says: none)."""
    cfg = dataclasses.replace(MatrixMATRLConfig(), lr=lr, iterations=grid.iterations)
    run = run_dynamics("matrl", games, start, cfg, record=True)
    used = interior(run["weights"], tol)  # [T, B]
    bound = lr**2 * interaction(games).prod(-1) > 1  # [B]
    exists = torch.stack([interior_equilibrium_exists(exact_metagame(games, pols, trust_region_step(games, pols, cfg)))
                          for pols in ([run["trajectory"][t][:, k] for k in range(2)]
                                       for t in range(grid.iterations))])  # [T, B]
    trials = used.numel()
    return {"interior_weights": (int(used.sum()), trials), "interior_equilibrium": (int(exists.sum()), trials),
            "interior_beyond_bound": (int((exists & ~bound).sum()), trials),
            "games_where_interior_possible": (int(bound.sum()), games.shape[0])}


def exact_cells(grid: ExactGrid, seeds: list[int], tol: float) -> list[dict]:
    """Matching pennies from random starts and each random 2x2 class, for every step size."""
    out = []
    for name, lr in itertools.product(["matching-pennies", *GAME_CLASSES], grid.lrs):
        per_seed: dict[str, list] = {}
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            if name == "matching-pennies":
                games = MATCHING_PENNIES.unsqueeze(0).expand(grid.games_per_class, 2, 2, 2).contiguous()
            else:
                games, _ = random_games(name, grid.games_per_class, seed)
            p = 0.05 + 0.9 * torch.rand(games.shape[0], 2, generator=g, dtype=torch.float64)
            start = [torch.stack([p[:, k], 1 - p[:, k]], -1) for k in range(2)]
            for key, value in exact_run(games, start, lr, grid, tol).items():
                per_seed.setdefault(key, []).append(value)
        out.append({"game": name, "lr": lr, **{k: _rate(v) for k, v in per_seed.items()}})
    return out


def plot(summary: dict, out: Path) -> Path:
    """Left: exact MATRL, share of iterations with interior weights vs step size, per game class.
    Right: sampled rounds, share of rounds with interior weights vs step-size scale, per game."""
    from league.eval.plots import _new_figure, _save

    fig = _new_figure((12, 4.5))
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name in ["matching-pennies", *GAME_CLASSES]:
        cells = [c for c in summary["exact"] if c["game"] == name]
        x = [c["lr"] for c in cells]
        for key, style in [("interior_weights", "-o"), ("interior_equilibrium", ":x")]:
            y = np.array([c[key]["mean_over_seeds"] for c in cells])
            e = np.array([c[key]["ci95_half_t"] for c in cells])
            ax.errorbar(x, y, yerr=e, fmt=style, capsize=3, label=f"{name}: {key.replace('_', ' ')}")
    ax.set(xscale="log", xlabel="trust-region step size lr", ylabel="share of (game, iteration)",
           title=f"Exact MATRL: interior Nash weights (95% t, {len(summary['config']['seeds'])} seeds)")
    ax.legend(fontsize=6)
    for game in summary["config"]["sampled"]["games"]:
        env, n = game.split(":")[0], int(game.split(":")[1])
        cells = [c for c in summary["sampled"] if (c["env"], c["n_players"]) == (env, n)]
        scales = summary["config"]["sampled"]["lr_scales"]
        best = [max((c for c in cells if c["lr"][0] == BASE_LRS[0] * s),
                    key=lambda c: c["interior_weights"]["mean_over_seeds"])["interior_weights"] for s in scales]
        ax2.errorbar(scales, [b["mean_over_seeds"] for b in best], yerr=[b["ci95_half_t"] for b in best], fmt="-o",
                     capsize=3, label=f"{env}, n={n}")
    ax2.set(xscale="log", ylim=(-0.05, 1.05), xlabel="step-size scale (x 0.5, 1.0, 0.7 per seat)",
            ylabel="share of rounds (the trust/K/H cell with the most)",
            title=f"Sampled rounds: interior Nash weights (95% t, {len(summary['config']['seeds'])} seeds)")
    ax2.legend(fontsize=8)
    return _save(fig, out / "weights.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/matrl/weights.toml")
    parser.add_argument("--out", default="results/matrl_weights")
    parser.add_argument("--set", action="append", default=[], help="key.path=value override")
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from OUT/summary.json")
    args = parser.parse_args()
    if args.replot:
        print(plot(json.loads((Path(args.out) / "summary.json").read_text()), Path(args.out)))
        return
    torch.set_num_threads(1)
    cfg = build(WeightsConfig, read_table(args.config, args.set))
    t0 = time.time()
    s = cfg.sampled
    sampled = [sampled_cell(game.split(":")[0], int(game.split(":")[1]), scale, trust, K, H, s, cfg.seeds,
                            cfg.interior_tol)
               for game, scale, trust, K, H in itertools.product(s.games, s.lr_scales, s.trust, s.trajectories,
                                                                    s.horizons)]
    t_sampled = time.time() - t0
    exact = exact_cells(cfg.exact, cfg.seeds, cfg.interior_tol)
    summary = {
        "experiment": "matrl_weights",
        "what": "share of MATRL rounds (sampled) or (game, iteration) pairs (exact) whose meta-game Nash weights "
                f"are strictly inside (0, 1) (w in [{cfg.interior_tol}, 1 - {cfg.interior_tol}] for some seat); "
                "interior_equilibrium: the 2-player meta-game has a fully mixed equilibrium at all; "
                "negative_own_gain: some seat's step alone loses on the estimate; interior_beyond_bound: interior "
                "equilibria where lr**2 * e0 * e1 <= 1. mean_over_seeds with its 95% Student-t half-width over "
                "the seeds; pooled: [events, trials] over all seeds with its 95% Wilson interval",
        "config": dataclasses.asdict(cfg),
        "sampled": sampled,
        "exact": exact,
        "budget": {"sampled_runs": len(sampled) * len(cfg.seeds), "sampled_rounds_per_run": s.rounds,
                   "exact_runs": len(exact) * len(cfg.seeds), "seconds_sampled": t_sampled,
                   "seconds": time.time() - t0},
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(plot(summary, out))
    print(out / "summary.json", f"{summary['budget']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
