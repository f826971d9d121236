"""Benchmark: batched HalfCheetah 2x3 rollouts with Gaussian-LSTM inference
(``league.rollout.play`` on ``make_env("halfcheetah-2x3")``) against raw MaMuJoCo stepping
with random actions (``gymnasium_robotics.mamujoco_v1.parallel_env``, one env per episode,
stepped in a Python loop, actions from ``action_space.sample()``).

Steps are counted as episodes x steps (one step moves both agents). Both variants step the
same number of MuJoCo models (``--episodes``) for ``--steps`` steps; they run interleaved in
every repetition so they see the same machine load, one torch thread. The issue's goal is
``play`` at no less than half the raw rate.

    python benchmarks/halfcheetah_rollout.py                  # writes benchmarks/halfcheetah_rollout.json
    python benchmarks/halfcheetah_rollout.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import loadavg, machine_info, med  # noqa: E402


def raw(episodes: int, steps: int) -> float:
    from gymnasium_robotics import mamujoco_v1

    envs = [mamujoco_v1.parallel_env("HalfCheetah", "2x3", max_episode_steps=steps) for _ in range(episodes)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
        for a in env.possible_agents:
            env.action_space(a).seed(i)
    t0 = time.perf_counter()
    for _ in range(steps):
        for env in envs:
            env.step({a: env.action_space(a).sample() for a in env.possible_agents})
    return time.perf_counter() - t0


def league_play(episodes: int, steps: int, hidden: int) -> float:
    from league.envs import make_env
    from league.policies import make_policy
    from league.rollout import play

    env = make_env("halfcheetah-2x3", max_steps=steps)
    policies = [make_policy("lstm_gaussian", env.observation_spaces[k], env.action_spaces[k], hidden=hidden)
                for k in range(2)]
    g = torch.Generator().manual_seed(0)
    params = [p.init_params(g) for p in policies]
    env.reset((1, episodes), seed=0)  # build the MuJoCo models outside the timed region
    t0 = time.perf_counter()
    traj = play(env, policies, params, 1, episodes, g, seed=0)
    elapsed = time.perf_counter() - t0
    assert traj.rewards.shape[2] == steps
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="8 episodes x 50 steps, 2 repetitions")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.steps, args.reps = 8, 50, 2
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    load_before = loadavg()
    times: dict[str, list[float]] = {"raw_mamujoco": [], "league_play": []}
    for rep in range(args.reps):
        order = ["raw_mamujoco", "league_play"] if rep % 2 == 0 else ["league_play", "raw_mamujoco"]
        for name in order:
            fn = raw if name == "raw_mamujoco" else (lambda e, s: league_play(e, s, args.hidden))
            times[name].append(fn(args.episodes, args.steps))
    n = args.episodes * args.steps
    rates = {k: n / med(v) for k, v in times.items()}
    result = {
        "benchmark": "halfcheetah_rollout", "episodes": args.episodes, "steps": args.steps, "hidden": args.hidden,
        "seconds": times, "steps_per_second": rates,
        "play_over_raw": rates["league_play"] / rates["raw_mamujoco"],
        "loadavg_before": load_before, "loadavg_after": loadavg(), "machine": machine_info(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("steps_per_second", "play_over_raw", "loadavg_after")}, indent=2))


if __name__ == "__main__":
    main()
