"""Bias and variance of the meta-gradient estimators against the exact gradient of small
enumerable chains (IPD, tabular seats), as a function of the inner learning rate and L.

    .venv/bin/python scripts/estimator_table.py [--out results/estimators] [--samples 20000]

Writes ``summary.json`` (every cell, the grid, the machine) and ``table.md``. Bias is
``|E[g] - grad J| / |grad J|`` with ``E[g]`` the estimator's exact expectation (enumerated);
variance is ``trace Cov[g] / |grad J|^2`` per sampled chain (from ``--samples`` chains), so
``sqrt(variance / N)`` is the relative standard error of a mean over ``N`` chains.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from league.exact_meta import ChainSpec  # noqa: E402
from league.games.iterated import ipd  # noqa: E402
from league.methods import make_method  # noqa: E402
from league.run import machine  # noqa: E402

ESTIMATORS = ("dice", "authors", "score")
LRS = (0.8, 0.4, 0.2, 0.1)
LENGTHS = (1, 2, 3)
HORIZON, EPISODES = 2, 1


def _flat(g: dict[str, torch.Tensor], batched: bool = False) -> torch.Tensor:
    if batched:
        return torch.cat([g["logits"].flatten(1), g["lr"].flatten(1)], dim=1)
    return torch.cat([g["logits"].flatten(), g["lr"].flatten()])


def cell(lr: float, length: int, include_initial: bool, samples: int) -> dict:
    g = torch.Generator().manual_seed(0)
    meta = torch.randn(5, 2, generator=g, dtype=torch.float64) * 0.5
    peer = torch.randn(5, 2, generator=g, dtype=torch.float64) * 0.5
    spec = ChainSpec(ipd(torch.float64), meta, torch.full((length,), lr, dtype=torch.float64), [peer], lr,
                     length, EPISODES, HORIZON, 0.96, include_initial)
    exact = _flat(spec.exact_gradient())
    out = {"lr": lr, "length": length, "include_initial": include_initial, "exact_norm": float(exact.norm())}
    for name in ESTIMATORS:
        method = make_method("meta-mapg", estimator=name)
        expected = _flat(spec.estimator_expectation(method))
        draws = _flat(spec.sampled_gradients(method, samples, seed=1), batched=True)
        var = float(draws.var(0).sum() / exact.norm() ** 2)
        out[name] = {"bias": float((expected - exact).norm() / exact.norm()), "variance": var}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/estimators")
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cells = [cell(lr, length, inc, args.samples) for inc in (True, False) for length in LENGTHS for lr in LRS]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"game": "ipd", "seats": 2, "horizon": HORIZON, "episodes": EPISODES, "gamma": 0.96,
               "method": "meta-mapg", "samples_per_cell": args.samples, "cells": cells,
               "seconds": time.perf_counter() - t0, "machine": machine(),
               "command": "python scripts/estimator_table.py --samples %d" % args.samples}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| objective | L | inner lr | " + " | ".join(f"{e} bias | {e} var" for e in ESTIMATORS) + " |",
             "|---|---|---|" + "---|---|" * len(ESTIMATORS)]
    for c in cells:
        j = "J over phi_0..phi_L" if c["include_initial"] else "J over phi_1..phi_L"
        vals = " | ".join(f"{c[e]['bias']:.1e} | {c[e]['variance']:.3g}" for e in ESTIMATORS)
        lines.append(f"| {j} | {c['length']} | {c['lr']} | {vals} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
