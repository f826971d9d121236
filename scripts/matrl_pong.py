"""Two-player Pong, MATRL vs IL self-play, and the checkpoint cross-play matrix of the MATRL
paper's Figure 6, over several seeds.

For every seed of the config's ``seeds``, each variant (``il``, ``matrl``) trains its own pair of
agents in self-play (seat 0 the left paddle ``first_0``, seat 1 the right one ``second_0``) with
:func:`league.matrl.deep.run_deep_matrl`; every ``checkpoint_every`` iterations both seats'
parameters are kept. Then, for every listed pair ``[A, B]``, every checkpoint of A (its seat-0
network) plays every checkpoint of B (its seat-1 network) for ``eval_episodes`` episodes
(:func:`league.matrl.crossplay.cross_play`). A seed's run depends on that seed alone (its own
environment, generators seeded from it), so it is the same run whether it is one of many seeds
or the only one.

Per seed, a matrix holds the row's mean point margin (its return minus the column's) with a 95%
t-interval over that seed's evaluation episodes. Over seeds (``aggregate_seeds``), each pair's
grand mean margin has a 95% t-interval over seeds (one number per seed: the mean of that seed's
matrix), each cell its mean over seeds with a 95% t-interval over seeds, and so do the
transitivity of the same-variant matrices and the paired contrasts between pairs that share a
column (``pair_contrasts``) and the drift of the left paddle's self-play return from the first to the
last quarter of the iterations (``training_drift``). Writes ``crossplay.png`` (the seed-averaged matrices, as Figure 6),
``curves.png`` (each seat's return per training iteration, mean and 95% band over seeds),
``records.jsonl``, ``seeds/seed_<s>.json`` (one seed's run: its matrices, records and seconds,
written as soon as the seed finishes) and ``summary.json`` (budget, seeds, machine, seconds,
every matrix and aggregate) under ``--out``. ``--resume`` reuses a ``seeds/seed_<s>.json`` whose
recorded setup equals the current one instead of re-running that seed.

    .venv/bin/python scripts/matrl_pong.py [--config configs/matrl/pong.toml] [--out results/matrl_pong]
        [--set seeds=[0,1] --set base.iterations=4 --set checkpoint_every=2 --set eval_episodes=2] [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from itertools import combinations
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from league.config import ConfigError, build, read_table  # noqa: E402
from league.envs import make_env  # noqa: E402
from league.eval.plots import plot_training_curves  # noqa: E402
from league.eval.stats import ci_label, mean_ci  # noqa: E402
from league.matrl.crossplay import cross_play, transitivity  # noqa: E402
from league.matrl.deep import DeepMATRLConfig, run_deep_matrl  # noqa: E402
from league.policies import make_policy  # noqa: E402


def plot_crossplay(matrices: dict[str, dict], labels: list[int], path: Path, title: str) -> None:
    """One heatmap per pair: each cell's ``mean`` with its ``ci95`` half-width written in it."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.8), squeeze=False)
    bound = max(float(np.abs(np.asarray(m["mean"])).max()) for m in matrices.values()) or 1.0
    for ax, (name, m) in zip(axes[0], matrices.items()):
        mean, half = np.asarray(m["mean"]), np.asarray(m["ci95"])
        im = ax.imshow(mean, cmap="viridis", vmin=-bound, vmax=bound, origin="upper")
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                ax.text(j, i, f"{mean[i, j]:.1f}\n±{half[i, j]:.1f}", ha="center", va="center", fontsize=5.5,
                        color="white" if mean[i, j] < 0 else "black")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        row, col = m["row"], m["column"]
        ax.set_xlabel(f"{col} checkpoint (iteration), right paddle", fontsize=8)
        ax.set_ylabel(f"{row} checkpoint (iteration), left paddle", fontsize=8)
        ax.set_title(f"{row} (rows) vs {col} (columns)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row's mean point margin")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_seed(table: dict, base: DeepMATRLConfig, seed: int) -> dict:
    """One seed's run: train every variant, keep its checkpoints, cross-play every pair.

    Returns the seed's ``matrices`` (per pair: cell means and 95% t-half-widths over the
    evaluation episodes, the grand mean, transitivity for a variant against itself), its
    training ``records``, the checkpoint iterations and its wall and CPU seconds."""
    every, n_eval = int(table["checkpoint_every"]), int(table["eval_episodes"])
    t_start, cpu_start = time.time(), time.process_time()
    env = make_env(base.env, n_players=base.n_players, **base.env_kwargs)  # per seed: no state from other seeds
    checkpoints: dict[str, list] = {}
    records: list[dict] = []
    train_seconds: dict[str, float] = {}
    for variant in table["variants"]:
        kept: list = []

        def keep(it: int, params: list, kept: list = kept) -> None:
            if (it + 1) % every == 0:
                kept.append([{k: v.clone() for k, v in p.items()} for p in params])

        t0 = time.time()
        recs = run_deep_matrl(dataclasses.replace(base, variant=variant), seed, env=env, checkpoint=keep)
        train_seconds[variant] = time.time() - t0
        print(f"seed {seed} {variant}: {train_seconds[variant]:.0f} s, {len(kept)} checkpoints, env steps "
              f"{sum(r['steps'] for r in recs)}", flush=True)
        checkpoints[variant] = kept
        records += recs
    labels = [every * (i + 1) for i in range(len(next(iter(checkpoints.values()))))]
    policies = [make_policy(base.policy, env.observation_spaces[k], env.action_spaces[k],
                            **{"hidden": base.ppo.hidden, **base.policy_kwargs}) for k in range(2)]
    matrices: dict[str, dict] = {}
    t_eval = time.time()
    for row, col in table["pairs"]:
        result = cross_play(env, policies, checkpoints[row], checkpoints[col], n_eval,
                            torch.Generator().manual_seed(seed + 1000), row_seat=0)
        mean, half = result.summary(margin=True)
        own, own_half = result.summary(margin=False)
        grand, grand_half = result.overall(margin=True)
        entry = {"row": row, "column": col, "mean": mean.tolist(), "ci95": half.tolist(),
                 "row_return_mean": own.tolist(), "row_return_ci95": own_half.tolist(),
                 "overall_mean": grand, "overall_ci95": grand_half}
        if row == col:
            entry["transitivity"] = transitivity(mean)
        matrices[pair_name(row, col)] = entry
        print(f"seed {seed} {row} vs {col}: mean margin {grand:.3f} ± {grand_half:.3f}"
              + (f", transitivity {entry['transitivity']:.2f}" if row == col else ""), flush=True)
    return {"seed": seed, "matrices": matrices, "records": records, "checkpoint_iterations": labels,
            "env_steps": {v: sum(r["steps"] for r in records if r["method"] == v) for v in table["variants"]},
            "train_seconds": train_seconds, "eval_seconds": time.time() - t_eval,
            "wall_seconds": time.time() - t_start, "cpu_seconds": time.process_time() - cpu_start}


def pair_name(row: str, column: str) -> str:
    """The key of the ``row`` vs ``column`` matrix, e.g. ``matrl_vs_il``."""
    return f"{row}_vs_{column}"


def _interval(values: Sequence[float] | np.ndarray) -> dict:
    """``{mean, ci95, per_seed}`` of one number per seed (ci95: 95% t-half-width over seeds)."""
    arr = np.asarray(values, dtype=np.float64)
    mean, half = mean_ci(arr)
    return {"mean": float(mean), "ci95": float(half), "per_seed": arr.tolist()}


def aggregate_seeds(per_seed: Sequence[dict]) -> dict[str, dict]:
    """Every pair's matrices over seeds: each seed counts once, whatever its episode count.

    ``per_seed[s]["matrices"][pair]["mean"]`` is seed s's matrix of cell means (over its
    evaluation episodes). Per pair: ``overall`` the mean over seeds of each seed's matrix mean
    with its 95% t-interval over seeds; ``mean``/``ci95`` each cell's mean over seeds and 95%
    t-half-width over seeds; ``transitivity`` (a variant against itself) per seed, with its mean
    and interval over seeds."""
    out: dict[str, dict] = {}
    for name, first in per_seed[0]["matrices"].items():
        stack = np.stack([np.asarray(s["matrices"][name]["mean"], dtype=np.float64) for s in per_seed])
        cell_mean, cell_half = mean_ci(stack)
        entry = {"row": first["row"], "column": first["column"], "n_seeds": len(per_seed),
                 "overall": _interval(stack.mean(axis=(1, 2))),
                 "mean": cell_mean.tolist(), "ci95": cell_half.tolist()}
        if "transitivity" in first:
            entry["transitivity"] = _interval([s["matrices"][name]["transitivity"] for s in per_seed])
        out[name] = entry
    return out


def pair_contrasts(per_seed: Sequence[dict]) -> dict[str, dict]:
    """Paired differences over seeds between two pairs that share the column (the same
    right-paddle opponents): ``A_vs_C minus B_vs_C`` is, per seed, the difference of the two
    matrix means, i.e. how much more A's left paddle wins against C than B's does; the seat
    advantage cancels. Mean and 95% t-interval over seeds of that difference."""
    matrices = per_seed[0]["matrices"]
    out: dict[str, dict] = {}
    for a, b in combinations(matrices, 2):  # in the config's order of pairs
        if matrices[a]["column"] != matrices[b]["column"]:
            continue
        diff = [float(np.mean(s["matrices"][a]["mean"]) - np.mean(s["matrices"][b]["mean"])) for s in per_seed]
        out[f"{a} minus {b}"] = _interval(diff)
    return out


def training_drift(per_seed: Sequence[dict], key: str = "return_0") -> dict[str, dict]:
    """Per variant, ``key`` (the left paddle's self-play return) averaged over the first and over
    the last quarter of the training iterations of each seed, and their paired difference
    (last minus first): mean and 95% t-interval over seeds. Says whether self-play moved the
    seats' balance at all."""
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["method"] for r in per_seed[0]["records"]):
        first, last = [], []
        for run in per_seed:
            values = np.array([r[key] for r in sorted(run["records"], key=lambda r: r["iteration"])
                               if r["method"] == variant], dtype=np.float64)
            quarter = max(1, len(values) // 4)
            first.append(values[:quarter].mean())
            last.append(values[-quarter:].mean())
        out[variant] = {"first_quarter": _interval(first), "last_quarter": _interval(last),
                        "last_minus_first": _interval(np.subtract(last, first))}
    return out


def read_seeds(table: dict, config: str) -> list[int]:
    """The config's ``seeds`` list; a config that still has the single ``seed`` key is refused."""
    if "seed" in table:
        raise ConfigError(f"{config}: `seed` is no longer read; write `seeds = [0, 1, ...]` (a list of seeds)")
    seeds = table.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{config}: `seeds` must be a non-empty list of integers, got {seeds!r}")
    return [int(s) for s in seeds]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/matrl/pong.toml")
    parser.add_argument("--out", default="results/matrl_pong")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. base.iterations=4")
    parser.add_argument("--resume", action="store_true",
                        help="reuse seeds/seed_<s>.json where its setup equals this run's")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = read_table(args.config, args.set)
    seeds = read_seeds(table, args.config)
    base = build(DeepMATRLConfig, table.get("base", {}), "base")
    every, n_eval = int(table["checkpoint_every"]), int(table["eval_episodes"])
    setup = {"base": dataclasses.asdict(base), "variants": table["variants"], "pairs": table["pairs"],
             "checkpoint_every": every, "eval_episodes": n_eval}
    out = Path(args.out)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    t_start, load_at_start = time.time(), os.getloadavg()
    per_seed: list[dict] = []
    reused: list[int] = []
    for seed in seeds:
        path = out / "seeds" / f"seed_{seed}.json"
        saved = json.loads(path.read_text()) if args.resume and path.exists() else None
        if saved is not None and json.loads(json.dumps(setup)) == saved["setup"]:
            print(f"seed {seed}: reused {path}", flush=True)
            run = saved
            reused.append(seed)
        else:
            run = {"setup": setup, **run_seed(table, base, seed)}
            path.write_text(json.dumps(run) + "\n")
        per_seed.append(run)
    records = [r for run in per_seed for r in run["records"]]
    with (out / "records.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    n = len(seeds)
    plot_training_curves(records, out / "curves.png",
                         f"pong-2p self-play: each seat's return per iteration, {n} seeds",  # the helper adds the interval's label
                         panels=[("return_0", "Left paddle return"), ("return_1", "Right paddle return")])
    aggregate = aggregate_seeds(per_seed)
    contrasts = pair_contrasts(per_seed)
    drift = training_drift(per_seed)
    for name, entry in aggregate.items():
        print(f"{name} over {n} seeds: mean margin {entry['overall']['mean']:.3f} ± {entry['overall']['ci95']:.3f}"
              + (f", transitivity {entry['transitivity']['mean']:.2f} ± {entry['transitivity']['ci95']:.2f}"
                 if "transitivity" in entry else ""), flush=True)
    for name, entry in contrasts.items():
        print(f"{name} over {n} seeds: {entry['mean']:.3f} ± {entry['ci95']:.3f}", flush=True)
    for variant, entry in drift.items():
        d = entry["last_minus_first"]
        print(f"{variant} left paddle's training return, last minus first quarter of iterations over {n} seeds: "
              f"{d['mean']:.3f} ± {d['ci95']:.3f}", flush=True)
    labels = per_seed[0]["checkpoint_iterations"]
    max_steps = int(base.env_kwargs.get("max_steps", 0)) or "the environment's"
    plot_crossplay(aggregate, labels, out / "crossplay.png",
                   f"pong-2p cross-play: the row's (left paddle's) point margin per cell, mean over {n} seeds "
                   f"(each seed: {n_eval} episodes of at most {max_steps} steps) ± 95% t-interval over the {n} seeds")
    summary = {"config": args.config, "overrides": args.set, "seeds": seeds, "variants": table["variants"],
               "budget": {"per_seed": {"iterations": base.iterations, "episodes_per_iteration": base.episodes,
                                       "max_steps": base.env_kwargs.get("max_steps"),
                                       "checkpoint_every": every, "eval_episodes_per_cell": n_eval},
                          "env_steps_per_seed": {str(r["seed"]): r["env_steps"] for r in per_seed}},
               "base": dataclasses.asdict(base), "checkpoint_iterations": labels,
               "intervals": {
                   "per_seed.matrices": f"per seed and cell: mean ± 95% t-interval over n={n_eval} evaluation "
                                        "episodes; overall_*: the grand mean over the cells with its interval "
                                        "from the cells' variances",
                   "aggregate.*.overall": f"{ci_label(n)}; one number per seed: the mean of that seed's matrix",
                   "aggregate.*.mean/ci95": f"per cell: {ci_label(n)} (one number per seed: that seed's cell mean)",
                   "aggregate.*.transitivity": f"{ci_label(n)}; one number per seed: that seed's transitivity",
                   "contrasts": f"{ci_label(n)}; one number per seed: the difference of the two pairs' matrix means",
                   "training_drift": f"{ci_label(n)}; one number per seed: that seed's mean left-paddle "
                                     "return over the first / last quarter of iterations, or their difference",
                   "curves.png": f"each seat's return per training iteration, {ci_label(n)}"},
               "score": "row's return minus column's (points won minus points lost, serve penalties included)",
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg()},
               "seconds_per_seed": {str(r["seed"]): {k: r[k] for k in
                                                     ("train_seconds", "eval_seconds", "wall_seconds", "cpu_seconds")}
                                    for r in per_seed},
               "wall_seconds_all_seeds": sum(r["wall_seconds"] for r in per_seed),
               "cpu_seconds_all_seeds": sum(r["cpu_seconds"] for r in per_seed),
               "wall_seconds_this_invocation": time.time() - t_start,
               "reused_seed_files": reused,  # --resume: these seeds' runs (and seconds) are from an earlier invocation
               "aggregate": aggregate, "contrasts": contrasts, "training_drift": drift,
               "per_seed": {str(r["seed"]): r["matrices"] for r in per_seed}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
