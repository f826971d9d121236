"""MeVa (U formulation) on the exact IPD over model seeds: self-play, exploitability and
shaping against gamma (MeVa paper, Figure 3a, left, middle and right panels).

    .venv/bin/python scripts/meva_ipd.py [--config configs/meva/ipd.toml] [--out results/meva_ipd]
    .venv/bin/python scripts/meva_ipd.py --train-only   # train the missing models, evaluate nothing

One model is trained per seed of ``[evaluate] model_seeds`` (``meva_model_seed{s}.pt`` and
``train_meva_seed{s}.json``; an existing file is reused). Each model is evaluated on
``trials`` pairs from N(0, 1) logits (start seed ``[evaluate] seed + s``), per gamma:

- self-play: both seats follow the model with gammas (g, g), ``steps`` steps of lr ``alpha``;
- exploitability: seat 0's final self-play policy is held fixed (the paper: "we hold one
  fixed and train (using the naive gradient) another agent against it") and a fresh learner
  from new N(0, 1) logits follows the naive gradient (``best_response_steps`` steps of
  ``best_response_lr``);
- shaping: seat 0 follows the model with gammas (g, 0), seat 1 is naive (gamma 0).

``summary.json`` holds, per gamma and quantity, the per-seed means over pairs, the mean ±
95% t-interval over model seeds, and the pooled mean ± standard error over all pairs (the
paper's Figure 3a statistic); ``meva_ipd.png`` plots the three panels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.eval.plots import _new_figure, _save  # noqa: E402
from league.eval.stats import ci_label, mean_ci, mean_se  # noqa: E402
from league.games.differentiable import ExactIPD  # noqa: E402
from league.meva.config import load_ipd_config  # noqa: E402
from league.meva.model import PlayerSymmetricNet  # noqa: E402
from league.meva.play import naive_best_response, optimise  # noqa: E402
from league.meva.rules import make_rule  # noqa: E402
from league.meva.train import MeVaConfig, train_meta_value  # noqa: E402
from league.run import machine  # noqa: E402

STATES = ["s0", "CC", "CD", "DC", "DD"]
#: (panel, who) -> label; the quantities reported per gamma
QUANTITIES = {("self_play", "seat0"): "self-play, seat 0",
              ("exploitability", "meva"): "MeVa held fixed",
              ("exploitability", "best_response"): "its naive best response",
              ("shaping", "meva"): "MeVa (gamma)",
              ("shaping", "naive"): "naive (gamma 0)"}


def train_model(game: ExactIPD, cfg: MeVaConfig, out: Path) -> None:
    """Train the model of ``cfg.seed`` unless its file exists; write the model and its record."""
    path = out / f"meva_model_seed{cfg.seed}.pt"
    if path.exists():
        return

    def report(it: int, rec: dict) -> None:
        if it % 25 == 0:
            print(f"seed {cfg.seed} iteration {it}: loss {rec['loss']:.4f} ({rec['seconds']:.0f} s)", flush=True)

    model, hist = train_meta_value(game, cfg, report)
    torch.save(model.state_dict(), path)
    (out / f"train_meva_seed{cfg.seed}.json").write_text(json.dumps(
        {"config": asdict(cfg), "seconds": hist[-1]["seconds"], "loss": [h["loss"] for h in hist],
         "machine": machine()}, indent=1))


def load_model(game: ExactIPD, cfg: MeVaConfig, out: Path) -> PlayerSymmetricNet:
    """The trained model of ``cfg.seed``, frozen."""
    model = PlayerSymmetricNet(game.n_players, game.dim, cfg.n_quantiles, cfg.net)
    model.load_state_dict(torch.load(out / f"meva_model_seed{cfg.seed}.pt"))
    return model.requires_grad_(False)


def evaluate_model(game: ExactIPD, model: PlayerSymmetricNet, cfg: MeVaConfig, ev: dict, start_seed: int) -> dict:
    """Per gamma: the three panels' returns for one model, mean and standard error over pairs."""
    gen = torch.Generator().manual_seed(start_seed)
    x0 = torch.randn(ev["trials"], 2, 5, generator=gen)
    responder0 = torch.randn(ev["trials"], 5, generator=gen)
    out = {}
    for g in ev["gammas"]:
        both = make_rule("meva", model=model, gamma=torch.tensor([g, g]), formulation="U")
        shaper = make_rule("meva", model=model, gamma=torch.tensor([g, 0.0]), formulation="U")
        x_self, _ = optimise(game, [both, both], x0, ev["steps"], cfg.alpha)
        x_br = naive_best_response(game, x_self[:, 0], responder0, ev["best_response_steps"], ev["best_response_lr"])
        x_shape, _ = optimise(game, [shaper, shaper], x0, ev["steps"], cfg.alpha)
        v_self, v_br, v_shape = game.values(x_self), game.values(x_br), game.values(x_shape)
        out[f"{g:g}"] = {
            "self_play": {"seat0": mean_se(v_self[:, 0]), "seat1": mean_se(v_self[:, 1])},
            "exploitability": {"meva": mean_se(v_br[:, 0]), "best_response": mean_se(v_br[:, 1])},
            "shaping": {"meva": mean_se(v_shape[:, 0]), "naive": mean_se(v_shape[:, 1])},
            "p_coop": {"self_play_seat0": dict(zip(STATES, torch.sigmoid(x_self[:, 0]).mean(0).tolist())),
                       "best_response": dict(zip(STATES, torch.sigmoid(x_br[:, 1]).mean(0).tolist())),
                       "shaped_naive": dict(zip(STATES, torch.sigmoid(x_shape[:, 1]).mean(0).tolist()))},
            "values": {"self_play_seat0": v_self[:, 0].tolist(), "exploitability_meva": v_br[:, 0].tolist(),
                       "exploitability_best_response": v_br[:, 1].tolist(), "shaping_meva": v_shape[:, 0].tolist(),
                       "shaping_naive": v_shape[:, 1].tolist()},
        }
    return out


def aggregate(per_seed: dict[int, dict], gammas: list[float]) -> dict:
    """Per gamma and quantity: per-seed means, mean ± 95% t-interval over seeds, pooled mean ± SE over pairs."""
    seeds = sorted(per_seed)
    out = {}
    for g in gammas:
        key, row = f"{g:g}", {}
        for panel, who in QUANTITIES:
            means = [per_seed[s][key][panel][who]["mean"] for s in seeds]
            pooled = np.concatenate([per_seed[s][key]["values"][f"{panel}_{who}"]
                                     for s in seeds])
            m, half = mean_ci(means)
            row[f"{panel}/{who}"] = {"per_seed": dict(zip(map(str, seeds), means)), "mean": float(m),
                                     "ci95_half_width": float(half), "pooled": mean_se(pooled)}
        out[key] = row
    return out


def plot(agg: dict, gammas: list[float], n_seeds: int, path: Path) -> None:
    """Figure 3a's three panels: mean ± 95% t-interval over model seeds, per-seed means as dots."""
    g = np.array(gammas)
    fig = _new_figure((11.0, 3.2))
    panels = [("both MeVa", [("self_play", "seat0")]),
              ("MeVa held fixed vs naive best response", [("exploitability", "meva"), ("exploitability", "best_response")]),
              ("MeVa (gamma) vs naive (gamma 0)", [("shaping", "meva"), ("shaping", "naive")])]
    for k, (title, lines) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for j, (panel, who) in enumerate(lines):
            cells = [agg[f"{x:g}"][f"{panel}/{who}"] for x in gammas]
            m = np.array([c["mean"] for c in cells])
            h = np.array([c["ci95_half_width"] for c in cells])
            ax.errorbar(g + 0.005 * j, m, yerr=h, marker="o", capsize=3, label=QUANTITIES[(panel, who)], color=f"C{j}")
            for c, x in zip(cells, g):
                ax.plot([x + 0.005 * j] * len(c["per_seed"]), list(c["per_seed"].values()), ".", color=f"C{j}", alpha=0.4)
        ax.set_xlabel("meta-discount gamma"), ax.set_ylim(-3.05, 0.05), ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"MeVa on the exact IPD: normalised return, {ci_label(n_seeds)} (dots: per-seed means)", fontsize=9)
    _save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/ipd.toml")
    ap.add_argument("--out", default="results/meva_ipd")
    ap.add_argument("--train-only", action="store_true", help="train the missing models and stop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base, ev = load_ipd_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    game = ExactIPD()  # normalised, LOLA's payoff: what MeVa learns on and what is reported
    configs = {s: replace(base, seed=s) for s in ev["model_seeds"]}
    for cfg in configs.values():
        train_model(game, cfg, out)
    if args.train_only:
        return
    per_seed, t0 = {}, time.perf_counter()
    for s, cfg in configs.items():
        per_seed[s] = evaluate_model(game, load_model(game, cfg, out), cfg, ev, ev["seed"] + s)
        for g, r in per_seed[s].items():
            print(f"seed {s} gamma {g}: self-play {r['self_play']['seat0']['mean']:.3f}, held fixed "
                  f"{r['exploitability']['meva']['mean']:.3f} vs best response {r['exploitability']['best_response']['mean']:.3f}, "
                  f"shaping meva {r['shaping']['meva']['mean']:.3f} naive {r['shaping']['naive']['mean']:.3f}", flush=True)
    agg = aggregate(per_seed, ev["gammas"])
    plot(agg, ev["gammas"], len(configs), out / "meva_ipd.png")
    trained = {s: json.loads((out / f"train_meva_seed{s}.json").read_text())["seconds"] for s in configs}
    for r in per_seed.values():
        for cell in r.values():
            cell.pop("values")  # pooled into the aggregate; the per-pair lists stay out of the JSON
    summary = {"experiment": "meva_ipd", "results": agg, "per_seed": {str(s): r for s, r in per_seed.items()},
               "interval": ci_label(len(configs)) + " (per-seed value: mean over that model's pairs); "
                           "pooled: mean ± standard error over all pairs of all models",
               "config": {"meva": asdict(base), "evaluate": ev},
               "budget": {"training_seconds_per_seed": {str(s): t for s, t in trained.items()},
                          "evaluation_seconds": time.perf_counter() - t0},
               "seeds": {"models": ev["model_seeds"], "starts": {str(s): ev["seed"] + s for s in configs}},
               "machine": machine()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
