#!/usr/bin/env bash
# Reproduce the committed Meta-MAPG results in results/ at the budget stated below, on
# 2 CPU cores. Each experiment is skipped when its results/<name>/summary.json exists
# (delete it to re-run). The budget is far below the paper's "until convergence":
#   K=32 trajectories, H=50 steps, L=4 inner steps (paper: 64, 150, 7), meta-batch 8,
#   outer Adam lr 3e-3 for actor and critic (paper: 1e-4 / 1.5e-4 IPD, 1e-5 / 1.5e-5 RPS;
#   raised so that a hundred-odd iterations move the policy); IPD: see its line below;
#   RPS: 100 iterations x 2 seeds; the RPS ablation: 80 iterations x 2 seeds; the K sweep
#   (K = 8 and 32): 50 iterations x 2 seeds per K; the out-of-distribution IPD (Meta-MAPG and
#   Meta-PG trained and tested on that split): 100 iterations x 2 seeds. Other
#   hyperparameters as in each config.
set -euo pipefail
cd "$(dirname "$0")/.."
LEAGUE=.venv/bin/league
BUDGET=(--set chain.trajectories=32 --set chain.horizon=50 --set chain.length=4
        --set train.meta_batch=8 --set train.outer.actor_lr=3e-3 --set train.outer.critic_lr=3e-3
        --set workers=2)

run() {  # run NAME CONFIG ARGS...
  local name=$1 config=$2; shift 2
  if [ -f "results/$name/summary.json" ]; then echo "results/$name exists, skipping"; return; fi
  echo "== $name ($(date -u +%H:%M:%S))"
  "$LEAGUE" train "$config" "${BUDGET[@]}" "$@" --set "name=\"$name\"" --out "results/$name"
}

# IPD (re-run on the current code): every method and the three estimator forms side by side,
# K=8, H=30, L=3, 40 iterations, validation every 5, 5 seeds.
run ipd configs/ipd.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]' \
  --set 'methods=["meta-mapg","meta-mapg:authors","meta-mapg:score","meta-pg","lola-dice","reinforce"]'
run rps configs/rps.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]'
run rps_ablation configs/rps_ablation.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]'
run ipd_ood configs/ipd_ood.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]' --set workers=1
if [ ! -f results/ipd_k_sweep/summary.json ]; then
  echo "== ipd_k_sweep ($(date -u +%H:%M:%S))"
  .venv/bin/python scripts/k_sweep.py configs/ipd.toml --ks 8 32 --out results/ipd_k_sweep \
    "${BUDGET[@]}" --set train.iterations=50 --set train.validate_every=25 --set 'seeds=[0,1]'
fi
echo "== done ($(date -u +%H:%M:%S))"
