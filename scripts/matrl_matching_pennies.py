"""MATRL's Figure 4: the exact learning dynamics of IGA, IGA-PP, MATRL and MATRL w/o BR on
matching pennies from (0.9, 0.2), written to results/matrl_matching_pennies/ (dynamics.png,
summary.json). Deterministic (no sampling); about a minute of one CPU core.

    .venv/bin/python scripts/matrl_matching_pennies.py [--iterations 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from league.matrl.experiments import matching_pennies, plot_matching_pennies
from league.matrl.matrix import MatrixMATRLConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000, help="learning iterations")
    parser.add_argument("--out", default="results/matrl_matching_pennies", help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = dataclasses.replace(MatrixMATRLConfig(), iterations=args.iterations)
    for path in plot_matching_pennies(matching_pennies(cfg), cfg, args.out):
        print(path)


if __name__ == "__main__":
    main()
