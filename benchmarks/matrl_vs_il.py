"""Deep MATRL's training time against independent PPO learners (IL) on the same grid world and
budget, side by side in one run: every repetition plays one batch of episodes with fixed
policies (timed; the same work for both), then runs one IL iteration and one MATRL iteration
on those same episodes from the same parameters and critics (order alternating between
repetitions, so drifts of the shared machine's load fall on both). Seconds per iteration are
play + round. The paper reports MATRL at 1.1-1.2x IL's time; the goal here is at most 1.1x.

    .venv/bin/python benchmarks/matrl_vs_il.py [--env checkers] [--reps 12] [--out benchmarks/matrl_vs_il.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from league.envs import make_env
from league.envs.base import flat_dim
from league.matrl.deep import DeepMATRLConfig, deep_round
from league.matrl.ppo import Critic
from league.policies import make_policy
from league.rollout import play_episodes

GOAL = 1.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="checkers")
    parser.add_argument("--n-players", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=24, help="episodes per iteration (the runs' budget)")
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/matrl_vs_il.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = make_env(args.env, n_players=args.n_players)
    n = env.n_agents
    base = DeepMATRLConfig(env=args.env, n_players=n, episodes=args.episodes)
    g = torch.Generator().manual_seed(0)
    policies = [make_policy(base.policy, env.observation_spaces[k], env.action_spaces[k], hidden=base.ppo.hidden)
                for k in range(n)]
    params = [p.init_params(g) for p in policies]
    critics = [Critic(flat_dim(env.observation_spaces[k]), base.ppo, g) for k in range(n)]
    variants = ("il", "matrl")
    times: dict[str, list[float]] = {v: [] for v in variants}
    rounds: dict[str, list[float]] = {v: [] for v in variants}
    load_start = os.getloadavg()
    for rep in range(args.reps + 1):  # rep 0 warms up, untimed
        t = time.perf_counter()
        episodes = play_episodes(env, policies, params, 1, args.episodes, g)
        play_s = time.perf_counter() - t
        for v in (variants if rep % 2 == 0 else variants[::-1]):
            cfg = dataclasses.replace(base, variant=v)
            cs = copy.deepcopy(critics)
            t = time.perf_counter()
            deep_round(policies, params, cs, episodes, cfg, [torch.Generator().manual_seed(rep)] * n)
            round_s = time.perf_counter() - t
            if rep:
                rounds[v].append(round_s)
                times[v].append(play_s + round_s)
        print(f"rep {rep}: play {play_s:.2f} s, " + ", ".join(f"{v} round {rounds[v][-1]:.2f} s" for v in variants
                                                               if rep), flush=True)
    med = {v: statistics.median(times[v]) for v in variants}
    paired = [m / i for m, i in zip(times["matrl"], times["il"])]
    ratio = med["matrl"] / med["il"]
    result = {
        "what": "seconds per iteration (play + round) of deep MATRL vs IL, same episodes and parameters, "
                "interleaved repetitions",
        "env": args.env, "n_players": n, "episodes_per_iteration": args.episodes, "reps": args.reps,
        "config": dataclasses.asdict(base),
        "median_seconds_per_iteration": med,
        "median_round_seconds": {v: statistics.median(rounds[v]) for v in variants},
        "ratio_matrl_over_il_of_medians": ratio,
        "paired_ratio_median": statistics.median(paired), "paired_ratio_min": min(paired),
        "paired_ratio_max": max(paired),
        "goal": f"ratio <= {GOAL} (paper: 1.1-1.2x)", "meets_goal": ratio <= GOAL,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                    "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
        "raw": {"iteration_seconds": times, "round_seconds": rounds},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_seconds_per_iteration", "ratio_matrl_over_il_of_medians",
                                             "paired_ratio_median", "meets_goal")}, indent=2))


if __name__ == "__main__":
    main()
