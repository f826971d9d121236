"""Figure 4a of the Meta-MAPG paper: Meta-MAPG with opponent modeling against Meta-MAPG and
Meta-PG on IPD, side by side, and the opponent model's error along the chain.

The opponent-modeling runs (``league train ... --set 'methods=["meta-mapg-om"]'``, one or more
run directories) are compared with the Meta-MAPG and Meta-PG seeds of a committed run of the
same config and budget (``results/ipd``): each seed's training has its own random stream, so
those are the numbers a joint run gives up to float-level differences (buffer alignment in
vectorised kernels) that a 40-iteration meta-training can amplify: re-running ``results/ipd``'s
K = 8 setting reproduced 11 of its 12 method-seed AUCs of seeds 0-2 exactly and Meta-MAPG's seed
1 as 0.695 instead of 0.549. Writes OUT/comparison.json, OUT/table.md and OUT/plots/om_error.png.

    .venv/bin/python scripts/om_table.py --om results/ipd_om/seeds012 results/ipd_om/seed3 \
        --reference results/ipd --out results/ipd_om
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from league.eval.stats import ci_label, mean_ci

REFERENCE_METHODS = ("meta-mapg", "meta-pg")
OM = "meta-mapg-om"


def _per_seed(summary: dict, method: str, group: str) -> dict[int, float]:
    values = summary["groups"][group]["methods"][method]["auc_per_seed"]
    return dict(zip(summary["seeds"], values))


def _errors(run: Path) -> dict[str, np.ndarray]:
    """Mean over iterations of the model's error at each chain step, per seed: [seeds, L+1]."""
    per_seed: dict[int, dict[str, list[list[float]]]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        steps = sorted(int(k.rsplit("step", 1)[1]) for k in row if k.startswith("om_fit_error_step"))
        if not steps:
            continue
        for kind in ("fit", "predicted"):
            per_seed.setdefault(row["seed"], {}).setdefault(kind, []).append(
                [row[f"om_{kind}_error_step{l}"] for l in steps])
    return {kind: np.array([np.mean(v[kind], axis=0) for _, v in sorted(per_seed.items())])
            for kind in ("fit", "predicted")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--om", nargs="+", required=True, help="run directories of meta-mapg-om")
    parser.add_argument("--reference", required=True, help="run directory with meta-mapg and meta-pg")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    reference = json.loads((Path(args.reference) / "summary.json").read_text())
    runs = [json.loads((Path(r) / "summary.json").read_text()) for r in args.om]
    groups = list(reference["groups"])
    om_seeds = sorted(s for r in runs for s in r["seeds"])
    table: dict[str, dict[str, dict]] = {}
    for group in groups:
        om: dict[int, float] = {}
        for r in runs:
            om.update(_per_seed(r, OM, group))
        rows = {OM: om}
        for m in REFERENCE_METHODS:
            ref = _per_seed(reference, m, group)
            rows[m] = {s: ref[s] for s in om_seeds}
        table[group] = {}
        for m, per in rows.items():
            values = [per[s] for s in om_seeds]
            mean, ci = mean_ci(np.array(values)[:, None])
            table[group][m] = {"auc_mean": float(mean[0]), "auc_ci95": float(ci[0]), "auc_per_seed": values}
    errors = {kind: np.concatenate([_errors(Path(r))[kind] for r in args.om]) for kind in ("fit", "predicted")}
    err_summary = {}
    for kind, arr in errors.items():
        mean, ci = mean_ci(arr)
        err_summary[kind] = {"mean": mean.tolist(), "ci95": ci.tolist()}
    plot = out / "plots" / "om_error.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, label in (("fit", "fitted to step l's actions"), ("predicted", "predicted (replicated update)")):
        mean, ci = np.array(err_summary[kind]["mean"]), np.array(err_summary[kind]["ci95"])
        steps = np.arange(len(mean))
        ax.errorbar(steps, mean, yerr=ci, marker="o", capsize=3, label=label)
    ax.set_xticks(np.arange(len(err_summary["fit"]["mean"])))
    ax.set_xlabel("chain step l")
    ax.set_ylabel("mean total variation to the real peer")
    ax.set_title(f"Opponent model's error along the chain\n(training, {ci_label(len(om_seeds))})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    label = ci_label(len(om_seeds))
    (out / "comparison.json").write_text(json.dumps({
        "experiment": "ipd_om (Figure 4a)", "seeds": om_seeds, "interval": label,
        "om_runs": args.om, "reference": args.reference, "budget": runs[0]["budget"],
        "reference_budget": reference["budget"], "machine": runs[0]["machine"], "groups": table,
        "model_error_along_chain": err_summary, "plot": str(plot)}, indent=1))
    lines = [f"AUC on the test personas, {label}", "",
             "| group | " + " | ".join(table[groups[0]]) + " |", "|---|" + "---|" * len(table[groups[0]])]
    for group in groups:
        lines.append(f"| {group} | " + " | ".join(f"{v['auc_mean']:.2f} ± {v['auc_ci95']:.2f}"
                                                  for v in table[group].values()) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
