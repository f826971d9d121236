"""Print the committed results as Markdown tables (AUC and the adaptation curve, mean ± 95%
t-interval over n seeds, per test group), read from results/*/summary.json.

    .venv/bin/python scripts/results_table.py results/ipd results/rps ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from league.eval.stats import ci_label


def table(run: Path) -> str:
    s = json.loads((run / "summary.json").read_text())
    if "auc_by_k" in s:  # the K sweep
        ks = s["ks"]
        methods = list(next(iter(s["auc_by_k"].values())))
        n = sorted({len(v["auc_per_seed"]) for by_m in s["auc_by_k"].values() for v in by_m.values()})
        lines = [f"### {s['experiment']} ({s['group']} test personas): AUC against K", "",
                 f"AUC as {ci_label(n[0] if len(n) == 1 else 'n')}.", "",
                 "| method | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for m in methods:
            cells = [f"{s['auc_by_k'][str(k)][m]['auc_mean']:.2f} ± {s['auc_by_k'][str(k)][m]['auc_ci95']:.2f}"
                     for k in ks]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    b = s["budget"]
    lines = [f"### {s['experiment']}: {s['paper']}", "",
             f"Budget: {b['iterations']} iterations x meta-batch {b['meta_batch']}, K={b['trajectories']}, "
             f"H={b['horizon']}, L={b['chain_length']}; seeds {s['seeds']}; {b['wall_seconds'] / 60:.0f} min on "
             f"{b['workers']} workers ({s['machine']['cpus']} CPUs, torch {s['machine']['torch']}).", ""]
    for group, block in s["groups"].items():
        L = len(next(iter(block["methods"].values()))["curve_mean"]) - 1
        n = sorted({v["n_seeds"] for v in block["methods"].values()})
        lines += [f"Meta-test vs **{group}** personas (mean per-step reward of the meta-agent; "
                  f"{ci_label(n[0] if len(n) == 1 else 'n')}):", "",
                  "| method | AUC | " + " | ".join(f"phi_{l}" for l in range(L + 1)) + " |",
                  "|---|---|" + "---|" * (L + 1)]
        for m, v in block["methods"].items():
            curve = " | ".join(f"{x:.2f} ± {c:.2f}" for x, c in zip(v["curve_mean"], v["curve_ci95"]))
            lines.append(f"| {m} | **{v['auc_mean']:.2f} ± {v['auc_ci95']:.2f}** | {curve} |")
        lines.append("")
    sel = ", ".join(f"{k} {v}" for k, v in s["selected_iteration"].items())
    lines.append(f"Selected checkpoints (iteration): {sel}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(Path(p)) for p in sys.argv[1:]))
