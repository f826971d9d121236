"""Figure 3a of the Meta-MAPG paper: AUC against the number of trajectories K between
updates, every method side by side. Runs `league train` once per K into OUT/K<k>/ and writes
OUT/summary.json and OUT/plots/auc_vs_k.png. A K whose OUT/K<k>/summary.json exists is read,
not re-run, so Ks can be run in parallel processes and gathered by a last call with every K.

    .venv/bin/python scripts/k_sweep.py configs/ipd.toml --ks 4 8 16 32 64 --out results/ipd_k_sweep \
        --set train.iterations=100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from league.config import load_config
from league.eval.stats import CI_LABEL
from league.eval.plots import plot_auc_vs_k
from league.run import machine, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--group", default="all", help="test persona group to report")
    args = parser.parse_args()
    out = Path(args.out)
    auc_by_k: dict[str, dict[int, tuple[float, float]]] = {}
    per_seed: dict[str, dict[int, list[float]]] = {}
    runs = {}
    for k in args.ks:
        done = out / f"K{k}" / "summary.json"
        if done.exists():
            summary = json.loads(done.read_text())
        else:
            cfg = load_config(args.config, [*args.set, f"chain.trajectories={k}", f'name="{Path(args.out).name}_K{k}"'])
            summary = run_experiment(cfg, out / f"K{k}")
        runs[k] = {m: {key: s[key] for key in ("auc_mean", "auc_ci95", "auc_per_seed")}
                   for m, s in summary["groups"][args.group]["methods"].items()}
        for m, s in runs[k].items():
            auc_by_k.setdefault(m, {})[k] = (s["auc_mean"], s["auc_ci95"])
            per_seed.setdefault(m, {})[k] = s["auc_per_seed"]
        print(f"K={k} (AUC, {CI_LABEL}): "
              + ", ".join(f"{m} {s['auc_mean']:.3f} ± {s['auc_ci95']:.3f} (n={len(s['auc_per_seed'])})"
                          for m, s in runs[k].items()), flush=True)
    plot = plot_auc_vs_k(auc_by_k, out / "plots" / "auc_vs_k.png",
                         f"AUC against K ({args.group} test personas)", per_seed)
    (out / "summary.json").write_text(json.dumps({
        "experiment": out.name, "config": args.config, "overrides": args.set, "ks": args.ks,
        "group": args.group, "auc_by_k": runs, "machine": machine(), "plot": str(plot)}, indent=1))


if __name__ == "__main__":
    main()
