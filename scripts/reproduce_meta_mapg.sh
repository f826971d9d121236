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
# 3-player RPS (Figure 4b): Meta-MAPG vs Meta-PG, 3 seeds, one worker
run rps3 configs/rps3.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]'
run rps4 configs/rps4.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]'
run ipd_ood configs/ipd_ood.toml --set chain.trajectories=8 --set chain.horizon=30 --set chain.length=3 \
  --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]' --set workers=1
# K sweep (Figure 3a) at the IPD run's budget, 3 seeds; each K may run in its own process
# (k_sweep.py reads a K whose OUT/K<k>/summary.json exists), then one call with every K gathers.
if [ ! -f results/ipd_k_sweep/summary.json ]; then
  echo "== ipd_k_sweep ($(date -u +%H:%M:%S))"
  .venv/bin/python scripts/k_sweep.py configs/ipd.toml --ks 4 8 16 32 --out results/ipd_k_sweep \
    "${BUDGET[@]}" --set chain.horizon=30 --set chain.length=3 --set train.iterations=40 \
    --set train.validate_every=5 --set 'seeds=[0,1,2]' --set workers=1
fi
# Opponent modeling (Figure 4a): meta-mapg-om at the IPD run's budget, compared with that run's
# Meta-MAPG and Meta-PG seeds (each seed its own random stream: a joint run's numbers, up to
# float-level differences that training can amplify; see scripts/om_table.py).
if [ ! -f results/ipd_om/comparison.json ]; then
  echo "== ipd_om ($(date -u +%H:%M:%S))"
  "$LEAGUE" train configs/ipd.toml "${BUDGET[@]}" --set chain.trajectories=8 --set chain.horizon=30 \
    --set chain.length=3 --set train.iterations=40 --set train.validate_every=5 --set 'seeds=[0,1,2,3,4]' \
    --set 'methods=["meta-mapg-om"]' --set 'name="ipd_om"' --set workers=1 --out results/ipd_om/run
  .venv/bin/python scripts/om_table.py --om results/ipd_om/run --reference results/ipd --out results/ipd_om
fi
# 2-agent HalfCheetah (Figure 2d, Figure 7): the teammate population (regenerated from its seed
# when missing, ~5 min) and the four methods at K=8, H=50, L=2, meta-batch 2, 30 iterations, 3 seeds
# (~40 min on one core); see docs/halfcheetah.md.
if [ ! -f results/halfcheetah/adaptation/summary.json ]; then
  echo "== halfcheetah ($(date -u +%H:%M:%S))"
  .venv/bin/python scripts/halfcheetah.py
fi
echo "== done ($(date -u +%H:%M:%S))"
