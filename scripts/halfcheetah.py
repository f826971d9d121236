"""Meta-MAPG Figure 2d / Figure 7 at a small budget: 2-agent HalfCheetah.

1. The teammate population (``configs/halfcheetah/teammates.toml``): pretrained when its
   checkpoints are missing (deterministic from its seed), then its expertise (the
   left-running return of every checkpoint) is plotted with the train/val and test ranges of
   the experiment config: ``results/halfcheetah/population.{json,png}``.
2. The adaptation experiment (``configs/halfcheetah.toml``): Meta-MAPG, Meta-PG, LOLA-DiCE and
   REINFORCE meta-trained against the early checkpoints and meta-tested against the late ones
   (per-chain-step team return, 95% t-interval over seeds): ``results/halfcheetah/adaptation/``.

    .venv/bin/python scripts/halfcheetah.py                 # both steps (about 40 min of one core)
    .venv/bin/python scripts/halfcheetah.py --population-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from league.config import load_config, to_toml  # noqa: E402
from league.run import machine, run_experiment  # noqa: E402
from league.teammates import load_teammate_config, population_exists, pretrain_teammates  # noqa: E402

OUT = ROOT / "results" / "halfcheetah"


def population(teammates_path: Path, experiment_path: Path) -> dict:
    """Pretrain the population when missing, then write its expertise summary and plot."""
    cfg = load_teammate_config(teammates_path)
    t0 = time.perf_counter()
    if not population_exists(cfg):
        print(f"pretraining the teammate population into {cfg.directory}", flush=True)
        pretrain_teammates(cfg, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - t0
    from league.personas import load_checkpoints

    expertise = [c["expertise"] for c in load_checkpoints(cfg.directory, range(cfg.iterations))]
    exp = load_config(experiment_path)
    summary = {"teammates_config": str(teammates_path.relative_to(ROOT)), "config": to_toml(cfg),
               "expertise": expertise,
               "expertise_definition": "the team's mean undiscounted left-running return over the episodes sampled "
                                       "with the checkpoint's parameters (before that iteration's update)",
               "split": {"train_val": exp.population.train_val, "n_val": exp.population.n_val,
                         "test": exp.population.test},
               "pretrain_seconds": round(seconds, 1), "machine": machine()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "population.json").write_text(json.dumps(summary, indent=1))
    plot_population(expertise, exp.population.train_val, exp.population.test, OUT / "population.png")
    return summary


def plot_population(expertise: list[float], train_val: list[int], test: list[int], path: Path) -> None:
    """Expertise per checkpoint, the meta-train/val and meta-test ranges shaded (Figure 7/8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(range(len(expertise)), expertise, color="black", marker=".", lw=1)
    ax.axvspan(train_val[0] - 0.5, train_val[1] - 0.5, color="tab:blue", alpha=0.15, label="meta-train/val")
    ax.axvspan(test[0] - 0.5, test[1] - 0.5, color="tab:red", alpha=0.15, label="meta-test")
    ax.set_xlabel("teammate pretraining iteration (checkpoint)")
    ax.set_ylabel("left-running team return")
    ax.set_title("HalfCheetah teammate population: expertise in running left\n"
                 "(one run, seed 0; return of the episodes sampled at each checkpoint)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teammates", type=Path, default=ROOT / "configs" / "halfcheetah" / "teammates.toml")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "halfcheetah.toml")
    ap.add_argument("--population-only", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="experiment config override key=value")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    population(args.teammates, args.config)
    if args.population_only:
        return
    cfg = load_config(args.config, args.set)
    summary = run_experiment(cfg, OUT / "adaptation", stream=sys.stderr)
    summary["population"] = str((OUT / "population.json").relative_to(ROOT))
    summary["reproduce"] = "scripts/halfcheetah.py (line in scripts/reproduce_meta_mapg.sh)"
    summary["machine"] = machine()
    (OUT / "adaptation" / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
