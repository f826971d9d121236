"""MeVa (U formulation) on the exact IPD: train one model, then self-play and shaping
against gamma (MeVa paper, Figure 3a left and right panels).

    .venv/bin/python scripts/meva_ipd.py [--config configs/meva/ipd.toml] [--out results/meva_ipd]

Writes ``meva_model.pt``, ``train_meva.json`` and ``summary.json``: per gamma, over
``trials`` pairs from N(0, 1) logits (``steps`` steps of lr ``alpha`` on the normalised
value), the normalised returns when both seats follow the model (gammas (g, g)) and when
seat 0 follows it and seat 1 is naive (gammas (g, 0)); mean and standard error over pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.eval.stats import mean_se  # noqa: E402
from league.games.differentiable import ExactIPD  # noqa: E402
from league.meva.config import load_ipd_config  # noqa: E402
from league.meva.model import PlayerSymmetricNet  # noqa: E402
from league.meva.play import optimise  # noqa: E402
from league.meva.rules import make_rule  # noqa: E402
from league.meva.train import train_meta_value  # noqa: E402
from league.run import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/ipd.toml")
    ap.add_argument("--out", default="results/meva_ipd")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, ev = load_ipd_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    game = ExactIPD()  # normalised, LOLA's payoff: what MeVa learns on and what is reported
    if not (out / "meva_model.pt").exists():
        def report(it: int, rec: dict) -> None:
            if it % 25 == 0:
                print(f"meva iteration {it}: loss {rec['loss']:.4f} ({rec['seconds']:.0f} s)", flush=True)
        model, hist = train_meta_value(game, cfg, report)
        torch.save(model.state_dict(), out / "meva_model.pt")
        (out / "train_meva.json").write_text(json.dumps({"config": asdict(cfg), "seconds": hist[-1]["seconds"],
                                                         "loss": [h["loss"] for h in hist], "machine": machine()}, indent=1))
    model = PlayerSymmetricNet(game.n_players, game.dim, cfg.n_quantiles, cfg.net)
    model.load_state_dict(torch.load(out / "meva_model.pt"))
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(ev["seed"])
    x0 = torch.randn(ev["trials"], 2, 5, generator=gen)
    results, t0 = {}, time.perf_counter()
    for g in ev["gammas"]:
        both = make_rule("meva", model=model, gamma=torch.tensor([g, g]), formulation="U")
        shaper = make_rule("meva", model=model, gamma=torch.tensor([g, 0.0]), formulation="U")
        x_self, _ = optimise(game, [both, both], x0, ev["steps"], cfg.alpha)
        x_shape, _ = optimise(game, [shaper, shaper], x0, ev["steps"], cfg.alpha)
        v_self, v_shape = game.values(x_self), game.values(x_shape)
        results[f"{g:g}"] = {"self_play": {"seat0": mean_se(v_self[:, 0]), "seat1": mean_se(v_self[:, 1])},
                             "shaping": {"meva": mean_se(v_shape[:, 0]), "naive": mean_se(v_shape[:, 1])},
                             "self_play_p_coop_seat0": torch.sigmoid(x_self[:, 0]).mean(0).tolist()}
        r = results[f"{g:g}"]
        print(f"gamma {g:g}: self-play {r['self_play']['seat0']['mean']:.3f} +- {r['self_play']['seat0']['se']:.3f}, "
              f"shaping meva {r['shaping']['meva']['mean']:.3f} naive {r['shaping']['naive']['mean']:.3f}", flush=True)
    trained = json.loads((out / "train_meva.json").read_text())
    summary = {"experiment": "meva_ipd", "results": results, "config": {"meva": asdict(cfg), "evaluate": ev},
               "budget": {"training_seconds": trained["seconds"], "evaluation_seconds": time.perf_counter() - t0,
                          "note": "one model seed; standard errors over pairs"},
               "seeds": {"model": cfg.seed, "starts": ev["seed"]}, "machine": machine()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
