"""LOLA on the exact IPD against its look-ahead step alpha (MeVa paper, Figure 3b).

    .venv/bin/python scripts/meva_ipd_lola_sweep.py [--config configs/meva/ipd_lola_sweep.toml]
        [--out results/meva_ipd_lola]

For each alpha, batched over ``trials`` starts from N(0, 1) logits: (left) both seats follow
LOLA; (middle) seat 0's final LOLA policy is frozen and seat 1, restarted from fresh N(0, 1)
logits, follows the naive gradient (its best response); (right) LOLA in seat 0 against a
naive learner in seat 1. Writes ``summary.json`` (mean and standard error over trials of the
normalised returns) and ``lola_sweep.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.eval.plots import _new_figure, _save  # noqa: E402
from league.eval.stats import mean_se  # noqa: E402
from league.games.differentiable import ExactIPD  # noqa: E402
from league.meva.play import optimise  # noqa: E402
from league.meva.rules import make_rule  # noqa: E402
from league.run import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/ipd_lola_sweep.toml")
    ap.add_argument("--out", default="results/meva_ipd_lola")
    args = ap.parse_args()
    torch.set_num_threads(1)
    raw = tomllib.loads(Path(args.config).read_text())
    sc, out = raw["sweep"], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    learn = ExactIPD(gamma=raw["game"]["gamma"], normalised=raw["game"]["learn_normalised"])
    report = ExactIPD(gamma=raw["game"]["gamma"], normalised=True)
    gen = torch.Generator().manual_seed(sc["seed"])
    x0 = torch.randn(sc["trials"], 2, 5, generator=gen) * sc["init_std"]
    responder0 = torch.randn(sc["trials"], 5, generator=gen) * sc["init_std"]
    naive, frozen = make_rule("naive"), make_rule("frozen")
    results = {}
    t_all = time.perf_counter()
    for alpha in sc["alphas"]:
        t0 = time.perf_counter()
        lola = make_rule("lola", alpha=alpha)
        selfplay, _ = optimise(learn, [lola, lola], x0, sc["steps"], sc["lr"])
        v_self = report.values(selfplay)
        br_start = torch.stack([selfplay[:, 0], responder0], dim=1)
        br, _ = optimise(learn, [frozen, naive], br_start, sc["best_response_steps"], sc["lr"])
        v_br = report.values(br)
        shaped, _ = optimise(learn, [lola, naive], x0, sc["steps"], sc["lr"])
        v_shape = report.values(shaped)
        results[f"{alpha:g}"] = {
            "self_play": {"lola_seat0": mean_se(v_self[:, 0]), "lola_seat1": mean_se(v_self[:, 1])},
            "vs_best_response": {"lola": mean_se(v_br[:, 0]), "best_response": mean_se(v_br[:, 1])},
            "shaping": {"lola": mean_se(v_shape[:, 0]), "naive": mean_se(v_shape[:, 1])},
            "seconds": time.perf_counter() - t0,
        }
        r = results[f"{alpha:g}"]
        print(f"alpha {alpha:g}: self-play {r['self_play']['lola_seat0']['mean']:.3f}, vs best response "
              f"{r['vs_best_response']['lola']['mean']:.3f} (responder {r['vs_best_response']['best_response']['mean']:.3f}), "
              f"shaping lola {r['shaping']['lola']['mean']:.3f} naive {r['shaping']['naive']['mean']:.3f} "
              f"({r['seconds']:.0f} s)", flush=True)
    a = np.array(sc["alphas"])
    fig = _new_figure((11.0, 3.2))
    panels = [("both LOLA", [("self_play", "lola_seat0", "seat 0")]),
              ("LOLA held fixed vs best response", [("vs_best_response", "lola", "LOLA"), ("vs_best_response", "best_response", "best response")]),
              ("LOLA vs naive learner", [("shaping", "lola", "LOLA"), ("shaping", "naive", "naive")])]
    for k, (title, lines) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for part, who, label in lines:
            m = np.array([results[f"{x:g}"][part][who]["mean"] for x in sc["alphas"]])
            se = np.array([results[f"{x:g}"][part][who]["se"] for x in sc["alphas"]])
            ax.errorbar(a, m, yerr=se, marker="o", capsize=3, label=label)
        ax.set_xscale("log"), ax.set_xlabel("LOLA alpha"), ax.set_ylim(-3.05, 0.05), ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"LOLA on the exact IPD: normalised return, mean ± standard error over {sc['trials']} trials", fontsize=9)
    _save(fig, out / "lola_sweep.png")
    summary = {"experiment": "meva_ipd_lola", "results": results, "config": raw,
               "budget": {"trials": sc["trials"], "steps": sc["steps"], "seconds": time.perf_counter() - t_all,
                          "note": "the standard errors are over trials of one start seed"},
               "seeds": {"starts": sc["seed"]}, "machine": machine()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
