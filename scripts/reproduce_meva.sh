#!/usr/bin/env bash
# Reproduce the committed MeVa results (results/meva_logistic, results/meva_ipd_tournament)
# and the logistic benchmark on 2 CPU cores, one torch thread each. Budgets are in the
# configs (configs/meva/logistic.toml, configs/meva/ipd_tournament.toml) and below the
# paper's (see docs/meva.md). Each experiment is skipped when its summary.json exists;
# the logistic models are reused when their .pt files exist (delete them to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# logistic game: train MeVa (300 x 64 trajectories) and COLA, then basins on a 41x41 grid
[ -f results/meva_logistic/summary.json ] || $PY scripts/meva_logistic.py --config configs/meva/logistic.toml --out results/meva_logistic
# MeVa alone for 1000 steps from the same grid (is 200 steps enough to settle?)
[ -f results/meva_logistic/meva_long.json ] || $PY scripts/meva_logistic.py --phase meva-long --config configs/meva/logistic.toml --out results/meva_logistic
# IPD: naive / LOLA / HOLA-2 tournament, 256 trials per pairing, 300 steps
[ -f results/meva_ipd_tournament/summary.json ] || $PY scripts/meva_ipd_tournament.py --config configs/meva/ipd_tournament.toml --out results/meva_ipd_tournament
# IPD: LOLA against its look-ahead alpha (Figure 3b): self-play, best response, shaping a naive learner
[ -f results/meva_ipd_lola/summary.json ] || $PY scripts/meva_ipd_lola_sweep.py --config configs/meva/ipd_lola_sweep.toml --out results/meva_ipd_lola
# IPD: MeVa (U formulation) trained for 400 iterations, then self-play and shaping against gamma
[ -f results/meva_ipd/summary.json ] || $PY scripts/meva_ipd.py --config configs/meva/ipd.toml --out results/meva_ipd
# speed: time per MeVa outer iteration, paper settings vs the budget, and projected time to a model
$PY benchmarks/meva_logistic.py --iterations 3
