"""Deep MATRL vs independent PPO learners (and ablations, if listed) on any registered
environment: learning curves (the task's return per iteration, mean and 95% t-interval over
seeds) as PNG, every iteration's record as JSONL and a summary JSON with budget, seeds, machine
and wall time. Runs one after another on one thread. ``scripts/matrl_gridworlds.py`` and
``scripts/matrl_mujoco.py`` are this runner with their configs and output folders as defaults.

Config: top-level ``seeds`` and ``variants``, a ``[base]`` table of
:class:`league.matrl.deep.DeepMATRLConfig` fields, and ``[[task]]`` tables. A task's keys are
DeepMATRLConfig fields merged over ``[base]`` (tables merged key by key), plus:
``variants`` (this task's, instead of the top-level list), ``value_coef`` (``ppo.value_coef``),
``name`` (default ``env`` followed by ``n_players``), ``metric`` (the record plotted and
summarised: ``team_return``, the sum over seats, by default; ``return_0`` for a team that shares
one reward, whose sum would count it once per seat) and ``metric_label`` (its axis label).

    .venv/bin/python scripts/matrl_deep.py --config configs/matrl/mujoco.toml --out results/matrl_mujoco
        [--set base.iterations=10 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from league.config import build, read_table
from league.eval.plots import plot_training_curves
from league.eval.stats import ci_label, mean_ci
from league.matrl.deep import DeepMATRLConfig, run_deep_matrl, task_config


def main(default_config: str = "configs/matrl/gridworlds.toml", default_out: str = "results/matrl_gridworlds") -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--set", action="append", default=[], help="override, e.g. base.iterations=10")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = read_table(args.config, args.set)
    base = build(DeepMATRLConfig, table.get("base", {}), "base")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    records_path.write_text("")
    t_start = time.time()
    summary: dict = {"config": args.config, "overrides": args.set, "seeds": table["seeds"],
                     "variants": table["variants"], "budget": {"iterations": base.iterations,
                                                                "episodes_per_iteration": base.episodes},
                     "base": dataclasses.asdict(base), "tasks": {},
                     "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                 "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "load_avg_at_start": os.getloadavg()},
                     "interval": ci_label(len(table["seeds"]))}
    for task in table["task"]:
        task_cfg = task_config(table.get("base", {}), task)
        name = task.get("name", f"{task_cfg.env}{task_cfg.n_players}")
        metric = task.get("metric", "team_return")
        task_records = []
        variants = task.get("variants", table["variants"])  # a task may run fewer variants
        for variant in variants:
            for seed in table["seeds"]:
                cfg = dataclasses.replace(task_cfg, variant=variant)
                t0 = time.time()
                recs = run_deep_matrl(cfg, seed)
                print(f"{name} {variant} seed {seed}: {time.time() - t0:.0f} s, last {metric} "
                      f"{recs[-1][metric]:.3f}", flush=True)
                with records_path.open("a") as f:
                    for r in recs:
                        f.write(json.dumps({"task": name, **r}) + "\n")
                task_records += recs
        if metric == "team_return":
            panels = [("team_return", "Team return")] + [(f"return_{k}", f"Agent {k} return")
                                                         for k in range(task_cfg.n_players)]
        else:
            panels = [(metric, task.get("metric_label", "Team return (shared reward)"))]
        plot_training_curves(task_records, out / f"{name}.png", f"{name}: MATRL vs IL (PPO), the paper's coefficients",
                             panels=panels)
        per_variant = {}
        for variant in variants:
            curves = np.array([[r[metric] for r in task_records if r["method"] == variant and r["seed"] == s]
                               for s in table["seeds"]])
            last = curves[:, -5:].mean(1)
            m, h = mean_ci(last)
            ma, ha = mean_ci(curves.mean(1))
            secs = [r["seconds"] for r in task_records if r["method"] == variant]
            per_variant[variant] = {"team_return_last5": {"mean": float(m), "ci95": float(h), "per_seed": last.tolist()},
                                    "team_return_mean_over_run": {"mean": float(ma), "ci95": float(ha)},
                                    "seconds_per_iteration_median": float(np.median(secs)),
                                    "env_steps_per_run": int(sum(r["steps"] for r in task_records
                                                                 if r["method"] == variant) / len(table["seeds"]))}
        summary["tasks"][name] = {"metric": metric, "config": dataclasses.asdict(task_cfg), "variants": per_variant}
        summary["wall_seconds"] = time.time() - t_start
        summary["cpu_seconds"] = time.process_time()  # this process's CPU time: the wall time follows the machine's load
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["tasks"], indent=2))


if __name__ == "__main__":
    main()
