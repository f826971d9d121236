"""Two-player Pong, MATRL vs IL self-play, and the checkpoint cross-play matrix of the MATRL
paper's Figure 6.

Each variant (``il``, ``matrl``) trains its own pair of agents in self-play (seat 0 the left
paddle ``first_0``, seat 1 the right one ``second_0``) with :func:`league.matrl.deep.run_deep_matrl`;
every ``checkpoint_every`` iterations both seats' parameters are kept. Then, for every listed
pair ``[A, B]``, every checkpoint of A (its seat-0 network) plays every checkpoint of B (its
seat-1 network) for ``eval_episodes`` episodes (:func:`league.matrl.crossplay.cross_play`); the
matrix holds the row's mean point margin (its return minus the column's) with a 95%
t-interval over those episodes. Writes ``crossplay.png`` (one heatmap per pair, as Figure 6),
``curves.png`` (each seat's return per training iteration), ``records.jsonl`` and
``summary.json`` (budget, seed, machine, wall time, every matrix) under ``--out``.

    .venv/bin/python scripts/matrl_pong.py [--config configs/matrl/pong.toml] [--out results/matrl_pong]
        [--set base.iterations=4 --set checkpoint_every=2 --set eval_episodes=2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from league.config import build, read_table  # noqa: E402
from league.envs import make_env  # noqa: E402
from league.eval.plots import plot_training_curves  # noqa: E402
from league.matrl.crossplay import cross_play, transitivity  # noqa: E402
from league.matrl.deep import DeepMATRLConfig, run_deep_matrl  # noqa: E402
from league.policies import make_policy  # noqa: E402


def plot_crossplay(matrices: dict[str, dict], labels: list[int], path: Path, title: str) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/matrl/pong.toml")
    parser.add_argument("--out", default="results/matrl_pong")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. base.iterations=4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = read_table(args.config, args.set)
    base = build(DeepMATRLConfig, table.get("base", {}), "base")
    seed, every, n_eval = int(table["seed"]), int(table["checkpoint_every"]), int(table["eval_episodes"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    env = make_env(base.env, n_players=base.n_players, **base.env_kwargs)
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
        print(f"{variant}: {train_seconds[variant]:.0f} s, {len(kept)} checkpoints, env steps "
              f"{sum(r['steps'] for r in recs)}", flush=True)
        checkpoints[variant] = kept
        records += recs
    labels = [every * (i + 1) for i in range(len(next(iter(checkpoints.values()))))]
    with (out / "records.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    plot_training_curves(records, out / "curves.png", "pong-2p self-play: each seat's return per iteration",
                         panels=[("return_0", "Left paddle return"), ("return_1", "Right paddle return")])
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
        matrices[f"{row}_vs_{col}"] = entry
        print(f"{row} vs {col}: mean margin {grand:.3f} ± {grand_half:.3f}"
              + (f", transitivity {entry['transitivity']:.2f}" if row == col else ""), flush=True)
    eval_seconds = time.time() - t_eval
    plot_crossplay(matrices, labels, out / "crossplay.png",
                   f"pong-2p cross-play: mean point margin of the row (left paddle) over {n_eval} episodes "
                   f"of at most {env.max_steps} steps; ± 95% t-interval over those episodes")
    summary = {"config": args.config, "overrides": args.set, "seed": seed, "variants": table["variants"],
               "budget": {"iterations": base.iterations, "episodes_per_iteration": base.episodes,
                          "max_steps": env.max_steps, "env_steps_per_run": {
                              v: sum(r["steps"] for r in records if r["method"] == v) for v in table["variants"]},
                          "checkpoint_every": every, "eval_episodes_per_pair": n_eval},
               "base": dataclasses.asdict(base), "checkpoint_iterations": labels,
               "interval": f"mean ± 95% t-interval over n={n_eval} evaluation episodes per pair",
               "score": "row's return minus column's (points won minus points lost, serve penalties included)",
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "load_avg_at_start": os.getloadavg()},
               "train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "wall_seconds": time.time() - t_start,
               "cpu_seconds": time.process_time(),  # this process's CPU time: the wall time follows the machine's load
               "matrices": matrices}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
