"""Logistic game (MeVa paper, Section 5.1 and Figure 2): train MeVa and COLA, then map the
basins of attraction of naive, LOLA, HOLA-2, COLA and MeVa over their settings.

    .venv/bin/python scripts/meva_logistic.py [--config configs/meva/logistic.toml]
        [--out results/meva_logistic] [--phase meva|cola|evaluate|all]

``meva-long`` reruns MeVa alone for ``long_steps`` steps (``meva_long.json``). Each phase writes into ``--out``: ``meva_model.pt`` / ``cola_model.pt`` (reused by later
phases when present), ``train_*.json``, ``basins.png``, ``trajectories.png``, ``loss.png``
and ``summary.json`` (fraction of the grid that reaches the positive quadrant, per method and
setting; budget, seeds, machine, timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.games.logistic import LogisticGame  # noqa: E402
from league.meva.cola import ColaConfig, train_cola  # noqa: E402
from league.meva.config import load_logistic_config  # noqa: E402
from league.meva.model import PlayerSymmetricNet  # noqa: E402
from league.meva.play import optimise  # noqa: E402
from league.meva.plots import plot_basins, plot_loss, plot_trajectories  # noqa: E402
from league.meva.rules import make_rule  # noqa: E402
from league.meva.train import MeVaConfig, train_meta_value  # noqa: E402
from league.run import machine  # noqa: E402

B_POINT = 5.0311  # the stable fixed point B = (B_POINT, B_POINT); A = -B (tests/test_differentiable_games.py)


def _progress(name: str, every: int):
    def report(it: int, rec: dict) -> None:
        if it % every == 0:
            print(f"{name} iteration {it}: loss {rec['loss']:.4f} ({rec['seconds']:.0f} s)", flush=True)
    return report


def _train(name: str, out: Path, train, cfg, game) -> None:
    print(f"== training {name}", flush=True)
    model, hist = train(game, cfg, _progress(name, 25))
    torch.save(model.state_dict(), out / f"{name}_model.pt")
    (out / f"train_{name}.json").write_text(json.dumps(
        {"config": asdict(cfg), "seconds": hist[-1]["seconds"], "loss": [h["loss"] for h in hist],
         "machine": machine(), "torch_threads": torch.get_num_threads()}, indent=1))


def _load(name: str, out: Path, game, cfg, out_dim: int) -> PlayerSymmetricNet:
    model = PlayerSymmetricNet(game.n_players, game.dim, out_dim, cfg.net)
    model.load_state_dict(torch.load(out / f"{name}_model.pt"))
    return model.requires_grad_(False)


def evaluate(out: Path, game: LogisticGame, meva_cfg: MeVaConfig, cola_cfg: ColaConfig, ev: dict) -> dict:
    meva = _load("meva", out, game, meva_cfg, meva_cfg.n_quantiles)
    cola = _load("cola", out, game, cola_cfg, game.dim)
    n, ext = ev["grid"], ev["extent"]
    axis = torch.linspace(-ext, ext, n)
    x2, x1 = torch.meshgrid(axis, axis, indexing="ij")  # rows x2, columns x1
    grid = torch.stack([x1.flatten(), x2.flatten()], -1).unsqueeze(-1)  # [n*n, 2, 1]
    gen = torch.Generator().manual_seed(ev["seed"])
    starts = (2 * torch.rand(ev["trajectories"], 2, 1, generator=gen) - 1) * ext
    x0 = torch.cat([grid, starts])
    record = torch.arange(n * n, n * n + ev["trajectories"])

    settings: dict[str, dict[str, object]] = {
        "naive": {"-": make_rule("naive")},
        "lola": {f"a={a:g}": make_rule("lola", alpha=a) for a in ev["lola_alphas"]},
        "hola2": {f"a={a:g}": make_rule("hola", alpha=a, order=2) for a in ev["hola2_alphas"]},
        "cola": {f"a={a:g}": make_rule("cola", model=cola, alpha=a) for a in ev["cola_alphas"]},
        "meva": {f"g={g:g}": make_rule("meva", model=meva, gamma=g, formulation=meva_cfg.formulation)
                 for g in ev["meva_gammas"]},
    }
    results: dict[str, dict] = {}
    panels: dict[str, dict[str, np.ndarray]] = {}
    paths: dict[str, np.ndarray] = {}
    for method, by_setting in settings.items():
        results[method], panels[method] = {}, {}
        for setting, rule in by_setting.items():
            t0 = time.perf_counter()
            final, path = optimise(game, [rule, rule], x0, ev["steps"], ev["lr"], record)
            secs = time.perf_counter() - t0
            end = final[: n * n, :, 0]
            positive = (end > 0).all(-1)
            near_b = ((end - B_POINT).abs() < 0.5).all(-1)
            near_a = ((end + B_POINT).abs() < 0.5).all(-1)
            results[method][setting] = {
                "fraction_positive_quadrant": positive.float().mean().item(),
                "fraction_near_B": near_b.float().mean().item(),
                "fraction_near_A": near_a.float().mean().item(),
                "fraction_elsewhere": (~near_a & ~near_b).float().mean().item(),
                "seconds": secs,
            }
            panels[method][setting] = positive.reshape(n, n).numpy()
            paths[f"{method} {setting}"] = path[..., 0].numpy()
            print(f"{method} {setting}: positive quadrant {positive.float().mean():.3f}, near B "
                  f"{near_b.float().mean():.3f} ({secs:.0f} s)", flush=True)
    plot_basins(panels, ext, out / "basins.png",
                f"Logistic game: start points (grid {n}x{n} on [-{ext:g},{ext:g}]^2) that end in the positive "
                f"quadrant (white) after {ev['steps']} steps of lr {ev['lr']:g}")
    shown = {k: v for k, v in paths.items() if k in {"naive -", "lola a=1", "hola2 a=1", "cola a=1", "meva g=0.5",
                                                     "meva g=0.9", "meva g=0.99"}}
    plot_trajectories(shown, [(B_POINT, B_POINT), (-B_POINT, -B_POINT)], ext, out / "trajectories.png",
                      f"Logistic game: {ev['trajectories']} trajectories from U(-{ext:g},{ext:g})^2, seed {ev['seed']}")
    return results


def meva_long(out: Path, game: LogisticGame, meva_cfg: MeVaConfig, ev: dict) -> dict:
    """MeVa only, ``long_steps`` steps from the same grid: does the rest of the grid still
    reach the positive quadrant when given more time?"""
    meva = _load("meva", out, game, meva_cfg, meva_cfg.n_quantiles)
    n, ext = ev["grid"], ev["extent"]
    axis = torch.linspace(-ext, ext, n)
    x2, x1 = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([x1.flatten(), x2.flatten()], -1).unsqueeze(-1)
    results = {}
    for g in ev["long_gammas"]:
        rule = make_rule("meva", model=meva, gamma=g, formulation=meva_cfg.formulation)
        t0 = time.perf_counter()
        final, _ = optimise(game, [rule, rule], grid, ev["long_steps"], ev["lr"])
        end = final[..., 0]
        results[f"g={g:g}"] = {"steps": ev["long_steps"],
                               "fraction_positive_quadrant": (end > 0).all(-1).float().mean().item(),
                               "fraction_near_B": ((end - B_POINT).abs() < 0.5).all(-1).float().mean().item(),
                               "mean_final_point": end.mean(0).tolist(),
                               "seconds": time.perf_counter() - t0}
        print(f"meva g={g:g}, {ev['long_steps']} steps: {results[f'g={g:g}']}", flush=True)
    (out / "meva_long.json").write_text(json.dumps({"results": results, "evaluate": ev, "machine": machine()}, indent=1))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/logistic.toml")
    ap.add_argument("--out", default="results/meva_logistic")
    ap.add_argument("--phase", choices=["meva", "cola", "evaluate", "meva-long", "all"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meva_cfg, cola_cfg, ev = load_logistic_config(args.config)
    game = LogisticGame()
    if args.phase in ("meva", "all") and not (out / "meva_model.pt").exists():
        _train("meva", out, train_meta_value, meva_cfg, game)
    if args.phase in ("cola", "all") and not (out / "cola_model.pt").exists():
        _train("cola", out, train_cola, cola_cfg, game)
    if args.phase in ("evaluate", "all"):
        t0 = time.perf_counter()
        results = evaluate(out, game, meva_cfg, cola_cfg, ev)
        trained = {name: json.loads((out / f"train_{name}.json").read_text()) for name in ("meva", "cola")}
        plot_loss({name: t["loss"] for name, t in trained.items()}, out / "loss.png",
                  "Training loss: MeVa quantile TD loss, COLA consistency loss")
        summary = {
            "experiment": "meva_logistic",
            "claim": "paper: MeVa with gamma > 0.9 reaches B from everywhere in the surveyed area",
            "metric": "fraction of the start grid whose final point lies in the positive quadrant "
                      "(x1, x2 > 0; the paper's white cells), and within 0.5 of B or A in both coordinates",
            "results": results,
            "config": {"meva": asdict(meva_cfg), "cola": asdict(cola_cfg), "evaluate": ev},
            "budget": {"meva_training_seconds": trained["meva"]["seconds"],
                       "cola_training_seconds": trained["cola"]["seconds"],
                       "evaluation_seconds": time.perf_counter() - t0,
                       "note": "one model seed each; deterministic evaluation on a fixed grid"},
            "seeds": {"meva": meva_cfg.seed, "cola": cola_cfg.seed, "trajectory_starts": ev["seed"]},
            "machine": machine(),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {out / 'summary.json'}")
    if args.phase in ("meva-long", "all"):
        meva_long(out, game, meva_cfg, ev)


if __name__ == "__main__":
    main()
