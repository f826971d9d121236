"""MeVa on the exact IPD beside the logistic game: seconds per outer iteration and projected
time to a trained model on this CPU, at the paper's settings and at the committed budgets,
all in one run.

- IPD, paper (Appendix E): batch 128, T = 100, k = 10, M = 32, 2000 iterations; "about half
  an hour on a single GPU".
- IPD, committed budget (``configs/meva/ipd.toml``): batch 32, T = 30, 400 iterations.
- Logistic game, paper (Appendix D) and committed budget (``configs/meva/logistic.toml``),
  timed the way ``benchmarks/meva_logistic.py`` times them; "about a minute on a single GPU".

    .venv/bin/python benchmarks/meva_ipd.py [--iterations 2] [--out benchmarks/meva_ipd.json]

One torch thread, one warm-up iteration per variant, then ``--iterations`` timed ones (every
sample in the JSON). The projection is median x iterations. The machine is shared: the load
average before and after is recorded, and so are the measured training times of the
committed IPD models (``results/meva_ipd/train_meva_seed*.json``) for comparison.
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
from meva_logistic import GOAL_CPU_SECONDS_TO_MODEL, PAPER_GPU_SECONDS_TO_MODEL, _per_iteration  # noqa: E402

from league.games.differentiable import ExactIPD  # noqa: E402
from league.games.logistic import LogisticGame  # noqa: E402
from league.meva.config import load_ipd_config, load_logistic_config  # noqa: E402
from league.meva.train import MeVaConfig, train_meta_value  # noqa: E402

PAPER_GPU_SECONDS_TO_IPD_MODEL = 1800.0  # "Training the model on the IPD takes about half an hour on a single GPU" (Appendix E)


def ipd_paper_config(budget: MeVaConfig) -> MeVaConfig:
    """Appendix E's IPD settings on the committed config's model: alpha 2, M 32, T 100, k 10,
    rho 0.99, lambda 0.9, AdamW lr 1e-4, weight decay 1e-2, batch 128, 2000 iterations."""
    return replace(budget, horizon=100, stride=10, lr=1e-4, batch=128, iterations=2000, states_per_rollout=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "meva_ipd.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    ipd_budget, _ = load_ipd_config(ROOT / "configs" / "meva" / "ipd.toml")
    logistic_budget, _, _ = load_logistic_config(ROOT / "configs" / "meva" / "logistic.toml")
    variants = {
        "ipd_paper": (ExactIPD(), ipd_paper_config(ipd_budget), PAPER_GPU_SECONDS_TO_IPD_MODEL),
        "ipd_budget": (ExactIPD(), ipd_budget, PAPER_GPU_SECONDS_TO_IPD_MODEL),
        "logistic_paper": (LogisticGame(), MeVaConfig(), PAPER_GPU_SECONDS_TO_MODEL),  # defaults: Appendix D
        "logistic_budget": (LogisticGame(), logistic_budget, PAPER_GPU_SECONDS_TO_MODEL),
    }
    load_before = loadavg()
    results = {}
    for name, (game, cfg, paper_gpu) in variants.items():
        s = summary(_per_iteration(train_meta_value, game, cfg, args.iterations))
        results[name] = {"config": asdict(cfg), "seconds_per_iteration": s,
                         "projected_seconds_to_model": s["median"] * cfg.iterations,
                         "paper_gpu_seconds_to_model": paper_gpu}
        print(f"{name}: {s['median']:.2f} s/iteration -> {s['median'] * cfg.iterations:.0f} s for "
              f"{cfg.iterations} iterations (paper, one GPU: {paper_gpu:.0f} s)", flush=True)
    trained = {p.stem.removeprefix("train_meva_"): json.loads(p.read_text())["seconds"]
               for p in sorted((ROOT / "results" / "meva_ipd").glob("train_meva_seed*.json"))}
    result = {
        "benchmark": "meva_ipd",
        "variants": results,
        "measured_ipd_training_seconds_at_budget": trained,
        "goal_cpu_seconds_to_logistic_model": GOAL_CPU_SECONDS_TO_MODEL,
        "load_average_before": load_before, "load_average_after": loadavg(),
        "torch_threads": torch.get_num_threads(), "machine": machine_info(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
