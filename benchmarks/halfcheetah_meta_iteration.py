"""Benchmark: seconds per 2-agent HalfCheetah meta-iteration (``MetaTraining.iterate``: sample
the meta-batch's teammates, roll out the chain phi_0..phi_L of K episodes of H steps each,
differentiate the meta-objective, take the outer step), per method, side by side with the
IPD meta-iteration at the same K/H/L/meta-batch as a reference (the tabular personas, the
categorical LSTM meta-agent; the same code path).

Shapes: ``experiment`` is ``configs/halfcheetah.toml`` (K=8, H=50, L=2, meta-batch 2);
``paper`` the paper's HalfCheetah table (K=64, H=200, L=2) at meta-batch 1, HalfCheetah only
and only with ``--paper`` (minutes per iteration here: one iteration, no warm-up). The teammates are random
``lstm_gaussian`` checkpoints written to a temporary directory (timing does not depend on
their values). One torch thread; repetitions of the variants interleave so they see the same
machine load, recorded before and after.

    python benchmarks/halfcheetah_meta_iteration.py               # writes benchmarks/halfcheetah_meta_iteration.json
    python benchmarks/halfcheetah_meta_iteration.py --paper --reps 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, loadavg, machine_info, med  # noqa: E402

sys.path.insert(0, str(ROOT))
from league.config import load_config  # noqa: E402
from league.meta_training import MetaTraining  # noqa: E402
from league.personas import save_checkpoint  # noqa: E402
from league.policies import LSTMGaussian  # noqa: E402

SHAPES = {"experiment": dict(K=8, H=50, L=2, B=2), "paper": dict(K=64, H=200, L=2, B=1)}


def random_population(directory: Path, n: int, hidden: int) -> None:
    policy = LSTMGaussian(obs_dim=17, out_dim=3, hidden=hidden)
    for i in range(n):
        save_checkpoint(directory, i, "lstm_gaussian", policy.init_params(torch.Generator().manual_seed(i)), 0.0,
                        {"hidden": hidden})


def overrides(shape: dict, directory: Path | None) -> list[str]:
    out = [f"chain.trajectories={shape['K']}", f"chain.horizon={shape['H']}", f"chain.length={shape['L']}",
           f"train.meta_batch={shape['B']}"]
    if directory is not None:
        out += [f'population.directory="{directory}"', "population.train_val=[0,4]", "population.test=[5,6]",
                "population.n_val=1"]
    return out


def time_iterations(config: Path, extra: list[str], method: str, n: int, warmup: bool = True) -> list[float]:
    """Wall seconds of ``n`` meta-iterations, after one warm-up iteration unless ``warmup`` is off
    (the paper's shapes: an iteration takes minutes, and building the models is a small part)."""
    mt = MetaTraining.build(load_config(config, extra), method, seed=0)
    if warmup:
        mt.iterate(mt.evaluator, mt.sample_peers())  # builds the MuJoCo models, allocations
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        mt.iterate(mt.evaluator, mt.sample_peers())
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="meta-mapg,meta-pg,lola-dice,reinforce")
    ap.add_argument("--reps", type=int, default=2, help="timed iterations per variant (after one warm-up)")
    ap.add_argument("--paper", action="store_true", help="also the paper's shapes (HalfCheetah, meta-mapg only)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    load_before = loadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        random_population(Path(tmp), 6, hidden=64)
        variants = [("experiment", m, "halfcheetah") for m in args.methods.split(",")]
        variants += [("experiment", m, "ipd") for m in args.methods.split(",")]
        if args.paper:
            variants.append(("paper", "meta-mapg", "halfcheetah"))
        for shape_name, method, game in variants:
            shape = SHAPES[shape_name]
            config = ROOT / "configs" / ("halfcheetah.toml" if game == "halfcheetah" else "ipd_quick.toml")
            seconds = time_iterations(config, overrides(shape, Path(tmp) if game == "halfcheetah" else None),
                                      method, args.reps if shape_name == "experiment" else 1,
                                      warmup=shape_name == "experiment")
            rows.append({"game": game, "shapes": shape_name, **shape, "method": method, "seconds": seconds,
                         "median_seconds": med(seconds)})
            print(f"{game:12s} {shape_name:10s} {method:10s} {med(seconds):8.2f} s/iteration", flush=True)
    for row in rows:  # the reference: the IPD iteration of the same method and shapes
        ref = next((r for r in rows if r["game"] == "ipd" and r["method"] == row["method"]
                    and r["shapes"] == row["shapes"]), None)
        row["over_ipd"] = row["median_seconds"] / ref["median_seconds"] if ref else None
    result = {"benchmark": "halfcheetah_meta_iteration", "reps": args.reps, "rows": rows,
              "loadavg_before": load_before, "loadavg_after": loadavg(), "machine": machine_info(),
              "note": "one torch thread; HalfCheetah rollouts step one MuJoCo model per episode in Python "
                      "(benchmarks/halfcheetah_rollout.json), so an iteration costs about "
                      "B*K*H*(L+1) environment steps plus the LSTM meta-gradient"}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
