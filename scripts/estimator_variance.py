"""Spread of the meta-gradient estimators at a realistic shape, where nothing can be
enumerated: IPD, the LSTM meta-agent with its GAE critic (as in training), one tabular
persona for every chain so that the spread is the estimator's own.

    .venv/bin/python scripts/estimator_variance.py [--chains 32] [--out results/estimators]

For each form it records, over the per-chain gradients of the meta-parameters, the norm of
their mean, ``trace Cov / |mean|^2`` (relative variance per chain) and the quantiles of
the per-chain norms (heavy tails make gradient clipping decide the update). Writes
``variance.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from league.config import load_config  # noqa: E402
from league.meta import Critic, meta_objective, per_chain_gradients  # noqa: E402
from league.methods import make_method  # noqa: E402
from league.run import machine  # noqa: E402
from league.setting import build_setting  # noqa: E402


def spread(method: str, estimator: str, cfg, chains: int, seed: int) -> dict:
    setting = build_setting(cfg)
    g = torch.Generator().manual_seed(seed)
    L = cfg.chain.length
    policy = {k: v.requires_grad_(True) for k, v in setting.meta_policy.init_params(g).items()}
    lr = torch.full((1, L), cfg.agent.inner_lr).requires_grad_(True)
    critic = Critic(setting.value_net, setting.value_net.init_params(g), cfg.chain.gamma, cfg.train.gae_lambda)
    persona = setting.personas.train[:1].expand(chains, -1, -1)
    t0 = time.perf_counter()
    result = meta_objective(make_method(method, 1, estimator), setting.evaluator(g), policy, lr,
                            setting.peer_params(persona), setting.peer_lrs(chains), L, critic,
                            cfg.train.entropy_weight, True, True)
    grads = per_chain_gradients(result)
    flat = torch.cat([v.reshape(chains, -1) for v in grads.values()], dim=1).detach().double()
    mean = flat.mean(0)
    norms = flat.norm(dim=1)
    q = torch.quantile(norms, torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64)).tolist()
    return {"method": method, "estimator": estimator, "mean_norm": float(mean.norm()),
            "relative_variance": float(flat.var(0).sum() / mean.norm() ** 2),
            "norm_quantiles": dict(zip(["q10", "median", "q90", "max"], q)),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--out", default="results/estimators")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = ["chain.trajectories=8", "chain.horizon=50", "chain.length=3", *args.set]
    cfg = load_config("configs/ipd.toml", overrides)
    rows = [spread(m, e, cfg, args.chains, seed=0)
            for m, e in [("meta-mapg", "dice"), ("meta-mapg", "authors"), ("meta-mapg", "score"),
                         ("meta-pg", "dice")]]
    for r in rows:
        print(json.dumps(r))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variance.json").write_text(json.dumps(
        {"config": "configs/ipd.toml", "overrides": overrides, "chains": args.chains, "rows": rows,
         "machine": machine(), "command": "python scripts/estimator_variance.py"}, indent=2) + "\n")


if __name__ == "__main__":
    main()
