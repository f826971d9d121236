#!/usr/bin/env bash
# Reproduce the committed MATRL matrix-game results (exact dynamics, one CPU thread):
#   results/matrl_matrix_games/   Table 1: 1000 games per class x 1000 iterations x 4 rules,
#                                 generator seed 0 (a few minutes)
#   results/matrl_matching_pennies/  Figure 4: 1000 iterations per rule (about a minute)
#   benchmarks/matrl_metagame.json   meta-game build + solve time for n = 2..8 players
#   results/matrl_gridworlds/, results/matrl_switch/, benchmarks/matrl_vs_il.json   deep MATRL (PPO) on the grid worlds
#   results/matrl_mujoco/   deep MATRL vs IL on Hopper 3x1 and Ant 4x2 (MaMuJoCo)
#   results/matrl_pong/     IL and MATRL self-play on two-player Pong and Figure 6's cross-play matrices, 5 seeds
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/league bench matrix-games --games 1000 --iterations 1000 --seed 0 --out results/matrl_matrix_games
.venv/bin/python scripts/matrl_matching_pennies.py --iterations 1000 --out results/matrl_matching_pennies
.venv/bin/python benchmarks/matrl_metagame.py
# how often meta-game Nash weights are strictly inside (0, 1): sampled rounds and exact 2x2 MATRL, 5 seeds (about 6 min)
.venv/bin/python scripts/matrl_weights.py --config configs/matrl/weights.toml --out results/matrl_weights
# Deep MATRL vs IL (PPO) on the grid worlds, 3 seeds x 25 iterations x 24 episodes (about 11 min of one core)
.venv/bin/python scripts/matrl_gridworlds.py --config configs/matrl/gridworlds.toml --out results/matrl_gridworlds
# switch with 2 agents (every variant) and 4 agents (IL vs MATRL)
.venv/bin/python scripts/matrl_gridworlds.py --config configs/matrl/switch.toml --out results/matrl_switch
# Hopper 3x1 and Ant 4x2, IL vs MATRL, 3 seeds x 20 iterations (about 10 min of one core, more on a loaded machine)
.venv/bin/python scripts/matrl_mujoco.py --config configs/matrl/mujoco.toml --out results/matrl_mujoco
# two-player Pong (needs the atari extra), IL and MATRL self-play, 5 seeds x 32 iterations each, 8 checkpoints,
# cross-play per seed, intervals over seeds (about 19 min of one core, 25 min of wall time on a loaded machine)
.venv/bin/python scripts/matrl_pong.py --config configs/matrl/pong.toml --out results/matrl_pong
# seconds per iteration of deep MATRL vs IL, interleaved, against the 1.1x goal
.venv/bin/python benchmarks/matrl_vs_il.py
