"""A run directory: train every (method, seed) of a config in spawned worker processes,
meta-test the selected checkpoints, and write ``config.toml``, ``metrics.jsonl``,
``checkpoints/``, ``summary.json`` and ``plots/``."""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import queue
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from league.config import ExperimentConfig, load_config, to_toml
from league.eval import plots, stats
from league.experiment import Adaptation, Checkpoint, meta_test, train_one
from league.progress import Progress
from league.setting import build_setting

IPD_STATES = ["s0", "CC", "CD", "DC", "DD"]


def machine() -> dict[str, Any]:
    """What a result was measured on."""
    import os

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def _job(cfg: ExperimentConfig, method: str, seed: int, events) -> dict[str, Any]:
    """One (method, seed): train, select, meta-test. Runs in a spawned worker."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    def progress(it: int, total: int) -> None:
        if events is not None:
            events.put((method, seed, it, total))

    result = train_one(cfg, method, seed, progress)
    adaptation = meta_test(cfg, result.best)
    final = meta_test(cfg, result.final)  # reported beside the selected one
    return {"method": method, "seed": seed, "best": result.best.to_dict(), "final": result.final.to_dict(),
            "metrics": result.metrics, "rewards": adaptation.rewards, "action_probs": adaptation.action_probs,
            "final_rewards": final.rewards, "final_action_probs": final.action_probs,
            "seconds": time.perf_counter() - t0}


def _run_jobs(cfg: ExperimentConfig, jobs: list[tuple[str, int]], label: str) -> list[dict[str, Any]]:
    total = len(jobs) * max(cfg.train.iterations, 1)
    bar = Progress(total, label)
    done: dict[tuple[str, int], int] = {}
    if cfg.workers == 1:  # in this process: progress events go straight to the bar
        class Inline:
            def put(self, event: tuple[str, int, int, int]) -> None:
                m, s, it, _ = event
                done[(m, s)] = it
                bar.update(sum(done.values()), f"{m} seed {s}")

        out = [_job(cfg, m, s, Inline()) for m, s in jobs]
        bar.close()
        return out
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        events = manager.Queue()
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_job, cfg, m, s, events) for m, s in jobs]
            while not all(f.done() for f in futures):
                try:
                    m, s, it, _ = events.get(timeout=0.5)
                    done[(m, s)] = it
                    bar.update(sum(done.values()), f"{m} seed {s}")
                except queue.Empty:
                    pass
            results = [f.result() for f in futures]
    bar.close()
    return results


def _groups(cfg: ExperimentConfig, test_types: list[str]) -> dict[str, np.ndarray]:
    idx = {"all": np.arange(len(test_types))}
    for g in cfg.population.eval_groups:
        sel = np.array([i for i, t in enumerate(test_types) if t == g])
        if sel.size == 0:
            raise ValueError(f"eval group {g!r} matches no test persona; types: {sorted(set(test_types))}")
        idx[g] = sel
    return idx


def summarize_adaptations(cfg: ExperimentConfig, by_job: dict[tuple[str, int], Adaptation],
                          test_types: list[str]) -> dict[str, Any]:
    """Per group and method: curve and AUC with 95% CIs over seeds, and mean dynamics."""
    out: dict[str, Any] = {}
    for group, sel in _groups(cfg, test_types).items():
        curves, dynamics = {}, {}
        for m in cfg.methods:
            per_seed = [by_job[(m, s)].rewards[:, sel, 0].mean(axis=1) for s in cfg.seeds]
            curves[m] = np.stack(per_seed)
            probs = np.stack([by_job[(m, s)].action_probs[:, sel] for s in cfg.seeds])  # [seeds,L+1,N,n,S,A]
            dynamics[m] = np.nanmean(probs, axis=(0, 2)).tolist()  # [L+1, n, S, A]
        out[group] = {"methods": stats.summarize(curves), "action_dynamics": dynamics}
    return out


def write_plots(cfg: ExperimentConfig, summary: dict[str, Any], out: Path) -> list[str]:
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    game = cfg.game.name
    states = IPD_STATES if game == "ipd" else None
    actions = ["C", "D"] if game == "ipd" else ["R", "P", "S"]
    for group, block in summary["groups"].items():
        title = f"{cfg.name}: meta-test vs {group} personas"
        written.append(str(plots.plot_adaptation_curves(block["methods"], plot_dir / f"adaptation_{group}.png", title)))
        for m, dyn in block["action_dynamics"].items():
            dyn = np.asarray(dyn)  # [L+1, n, S, A]
            names = states or [f"s{i}" for i in range(dyn.shape[2])]
            written.append(str(plots.plot_action_dynamics(
                dyn[:, 0], dyn[:, 1], names, actions, plot_dir / f"dynamics_{group}_{m}.png",
                f"{m} vs {group} personas (solid: meta-agent, dashed: peer)")))
    return written


def run_experiment(cfg: ExperimentConfig, out: Path) -> dict[str, Any]:
    """Train and meta-test every (method, seed) of ``cfg`` into run directory ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(to_toml(cfg))
    setting = build_setting(cfg)
    t0 = time.perf_counter()
    jobs = [(m, s) for m in cfg.methods for s in cfg.seeds]
    results = _run_jobs(cfg, jobs, cfg.name)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    by_job: dict[tuple[str, int], Adaptation] = {}
    by_job_final: dict[tuple[str, int], Adaptation] = {}
    with open(out / "metrics.jsonl", "w") as f:
        for r in results:
            for row in r["metrics"]:
                f.write(json.dumps(row) + "\n")
            torch.save({"best": r["best"], "final": r["final"]}, ckpt_dir / f"{r['method']}_seed{r['seed']}.pt")
            by_job[(r["method"], r["seed"])] = Adaptation(r["rewards"], r["action_probs"])
            by_job_final[(r["method"], r["seed"])] = Adaptation(r["final_rewards"], r["final_action_probs"])
    summary = {
        "experiment": cfg.name, "paper": cfg.paper, "seeds": cfg.seeds, "methods": cfg.methods,
        "budget": {"iterations": cfg.train.iterations, "meta_batch": cfg.train.meta_batch,
                   "trajectories": cfg.chain.trajectories, "horizon": cfg.chain.horizon,
                   "chain_length": cfg.chain.length, "wall_seconds": round(time.perf_counter() - t0, 1),
                   "job_seconds": {f"{r['method']}/seed{r['seed']}": round(r["seconds"], 1) for r in results},
                   "workers": cfg.workers},
        "machine": machine(),
        "auc_definition": "sum over l=1..L of the meta-agent's mean per-step reward at joint policy phi_l",
        "selected_iteration": {f"{r['method']}/seed{r['seed']}": r["best"]["iteration"] for r in results},
        "groups": summarize_adaptations(cfg, by_job, setting.personas.test_types),
        "final_checkpoints": {
            "note": "the same meta-test for each job's last checkpoint (not selected by validation)",
            "groups": {g: {"methods": b["methods"]}
                       for g, b in summarize_adaptations(cfg, by_job_final, setting.personas.test_types).items()},
        },
        "estimator": cfg.train.estimator,
    }
    summary["plots"] = write_plots(cfg, summary, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate_run(run: Path, overrides: list[str], out: Path | None = None) -> dict[str, Any]:
    """Re-run meta-testing of a run directory's selected checkpoints (optionally with config
    overrides, e.g. the out-of-distribution personas) and write ``evaluation.json``."""
    cfg = load_config(run / "config.toml", overrides)
    out = out or run / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    setting = build_setting(cfg)
    by_job = {}
    for m in cfg.methods:
        for s in cfg.seeds:
            path = run / "checkpoints" / f"{m}_seed{s}.pt"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: was {run} trained with method {m} and seed {s}?")
            ckpt = Checkpoint.from_dict(torch.load(path)["best"])
            by_job[(m, s)] = meta_test(cfg, ckpt)
    summary = {"run": str(run), "overrides": list(overrides), "machine": machine(),
               "groups": summarize_adaptations(cfg, by_job, setting.personas.test_types)}
    summary["plots"] = write_plots(cfg, summary, out)
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1))
    return summary


def results_table(summary: dict[str, Any]) -> str:
    """A plain-text table: per group and method, AUC and final-step reward with 95% CIs."""
    lines = []
    for group, block in summary["groups"].items():
        lines.append(f"meta-test vs {group} personas")
        lines.append(f"  {'method':<18}{'AUC (phi_1..phi_L)':>24}{'reward at phi_0':>20}{'reward at phi_L':>20}")
        final = summary.get("final_checkpoints", {}).get("groups", {}).get(group, {}).get("methods", {})
        for m, s in block["methods"].items():
            cm, ci = s["curve_mean"], s["curve_ci95"]
            last = f"   final checkpoint AUC {final[m]['auc_mean']:.3f} ± {final[m]['auc_ci95']:.3f}" if m in final else ""
            lines.append(f"  {m:<18}{s['auc_mean']:>14.3f} ± {s['auc_ci95']:<7.3f}"
                         f"{cm[0]:>10.3f} ± {ci[0]:<7.3f}{cm[-1]:>10.3f} ± {ci[-1]:<7.3f}{last}")
    return "\n".join(lines)
