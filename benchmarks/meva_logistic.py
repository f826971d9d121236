"""MeVa on the logistic game: time per outer iteration and projected time to a trained model
on this CPU, at the paper's settings (Appendix D: batch 128, T = k = 50, all 50 states,
1000 iterations; "about a minute on a single GPU") and at the committed budget
(configs/meva/logistic.toml), side by side in one run. Also one COLA update.

    .venv/bin/python benchmarks/meva_logistic.py [--iterations 3] [--out benchmarks/meva_logistic.json]

One torch thread. The machine is shared: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_common import loadavg, machine_info, summary  # noqa: E402

from league.games.logistic import LogisticGame  # noqa: E402
from league.meva.cola import train_cola  # noqa: E402
from league.meva.config import load_logistic_config  # noqa: E402
from league.meva.train import MeVaConfig, train_meta_value  # noqa: E402

PAPER_GPU_SECONDS_TO_MODEL = 60.0  # "Training takes about a minute on a single GPU" (Appendix D)
GOAL_CPU_SECONDS_TO_MODEL = 600.0  # the goal: under 10 minutes on the 2 CPU cores here


def _per_iteration(train, game, cfg, iterations: int) -> list[float]:
    _, hist = train(game, replace(cfg, iterations=iterations + 1))  # the first one warms up
    secs = [h["seconds"] for h in hist]
    return [b - a for a, b in zip(secs[:-1], secs[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "meva_logistic.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    budget_cfg, cola_cfg, _ = load_logistic_config(ROOT / "configs" / "meva" / "logistic.toml")
    paper_cfg = MeVaConfig()  # the defaults are Appendix D's settings, batch 128, 1000 iterations
    game = LogisticGame()
    load_before = loadavg()
    variants = {}
    for name, cfg in (("paper", paper_cfg), ("budget", budget_cfg)):
        times = _per_iteration(train_meta_value, game, cfg, args.iterations)
        s = summary(times)
        variants[name] = {"config": asdict(cfg), "seconds_per_iteration": s,
                          "projected_seconds_to_model": s["median"] * cfg.iterations}
        print(f"MeVa {name}: {s['median']:.2f} s/iteration -> {s['median'] * cfg.iterations:.0f} s for "
              f"{cfg.iterations} iterations", flush=True)
    cola_times = summary(_per_iteration(train_cola, game, cola_cfg, args.iterations * 5))
    result = {
        "benchmark": "meva_logistic",
        "variants": variants,
        "cola": {"config": asdict(cola_cfg), "seconds_per_update": cola_times,
                 "projected_seconds_to_model": cola_times["median"] * cola_cfg.iterations},
        "paper_gpu_seconds_to_model": PAPER_GPU_SECONDS_TO_MODEL,
        "goal_cpu_seconds_to_model": GOAL_CPU_SECONDS_TO_MODEL,
        "load_average_before": load_before, "load_average_after": loadavg(),
        "torch_threads": torch.get_num_threads(), "machine": machine_info(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
