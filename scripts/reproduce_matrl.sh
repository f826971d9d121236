#!/usr/bin/env bash
# Reproduce the committed MATRL matrix-game results (exact dynamics, one CPU thread):
#   results/matrl_matrix_games/   Table 1: 1000 games per class x 1000 iterations x 4 rules,
#                                 generator seed 0 (a few minutes)
#   results/matrl_matching_pennies/  Figure 4: 1000 iterations per rule (about a minute)
#   benchmarks/matrl_metagame.json   meta-game build + solve time for n = 2..8 players
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/league bench matrix-games --games 1000 --iterations 1000 --seed 0 --out results/matrl_matrix_games
.venv/bin/python scripts/matrl_matching_pennies.py --iterations 1000 --out results/matrl_matching_pennies
.venv/bin/python benchmarks/matrl_metagame.py
