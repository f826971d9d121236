#!/usr/bin/env bash
# Reproduce the committed MeVa results (results/meva_logistic, results/meva_ipd,
# results/meva_ipd_tournament, results/meva_ipd_lola) and the MeVa benchmarks on 2 CPU cores,
# one torch thread each. Budgets are in the configs (configs/meva/*.toml) and below the
# paper's (see docs/meva.md). Each experiment is skipped when its summary.json exists;
# the logistic models are reused when their .pt files exist (delete them to retrain).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# logistic game: train MeVa (300 x 64 trajectories) and COLA, then basins on a 41x41 grid
[ -f results/meva_logistic/summary.json ] || $PY scripts/meva_logistic.py --config configs/meva/logistic.toml --out results/meva_logistic
# MeVa alone for 1000 steps from the same grid (is 200 steps enough to settle?)
[ -f results/meva_logistic/meva_long.json ] || $PY scripts/meva_logistic.py --phase meva-long --config configs/meva/logistic.toml --out results/meva_logistic
# IPD: MeVa (U formulation), one model per seed (0, 1, 2; 400 iterations each, reused when its .pt exists),
# then self-play, exploitability (a naive best response to the held MeVa policy) and shaping against gamma
[ -f results/meva_ipd/summary.json ] || $PY scripts/meva_ipd.py --config configs/meva/ipd.toml --out results/meva_ipd
# IPD: Meta-MAPG's tabular meta-agent, initial logits and lr meta-learned on the exact 7-step chain meta-value
[ -f results/meva_ipd_tournament/meta_mapg_start.json ] || $PY scripts/meva_ipd_meta_mapg.py --config configs/meva/ipd_meta_mapg.toml --out results/meva_ipd_tournament/meta_mapg_start.json
# IPD: naive / LOLA / HOLA-2 / MeVa (model seed 0, gamma 0.9) / Meta-MAPG tournament, 1024 trials per pairing, 300 steps
[ -f results/meva_ipd_tournament/summary.json ] || $PY scripts/meva_ipd_tournament.py --config configs/meva/ipd_tournament.toml --out results/meva_ipd_tournament
# IPD: LOLA against its look-ahead alpha (Figure 3b): self-play, best response, shaping a naive learner
[ -f results/meva_ipd_lola/summary.json ] || $PY scripts/meva_ipd_lola_sweep.py --config configs/meva/ipd_lola_sweep.toml --out results/meva_ipd_lola
# speed: time per MeVa outer iteration, paper settings vs the budget, and projected time to a model
$PY benchmarks/meva_logistic.py --iterations 3
# speed on the IPD beside the logistic game: paper settings and committed budgets, one run
$PY benchmarks/meva_ipd.py --iterations 2
