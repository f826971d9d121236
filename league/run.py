"""A run directory: train every (method, seed) of a config in spawned worker processes,
meta-test the selected checkpoints, and write ``config.toml``, ``metrics.jsonl``,
``checkpoints/``, ``summary.json`` and ``plots/``."""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import queue
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from league.config import ConfigError, ExperimentConfig, load_config, to_toml
from league.eval import plots, stats
from league.experiment import Adaptation, Checkpoint, meta_test, train_one
from league.progress import JobWork, Progress, job_work
from league.personas import pool_size
from league.setting import build_setting
from league.tracking import RunSinks

IPD_STATES = ["s0", "CC", "CD", "DC", "DD"]


def machine() -> dict[str, Any]:
    """What a result was measured on."""
    import os

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def _job(cfg: ExperimentConfig, method: str, seed: int, ckpt_dir: Path, events) -> dict[str, Any]:
    """One (method, seed): train (streaming each metrics record to ``events``), select,
    save the checkpoints, meta-test. Runs in a spawned worker (or inline with one worker)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = train_one(cfg, method, seed, on_record=lambda row: events.put(("record", dict(row))))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"best": result.best.to_dict(), "final": result.final.to_dict()}, ckpt_dir / f"{method}_seed{seed}.pt")
    events.put(("phase", method, seed, "meta-test"))
    adaptation = meta_test(cfg, result.best)
    final = meta_test(cfg, result.final)  # reported beside the selected one
    return {"method": method, "seed": seed, "best_iteration": result.best.iteration,
            "best_val_score": result.best.val_score, "rewards": adaptation.rewards,
            "action_probs": adaptation.action_probs, "final_rewards": final.rewards,
            "final_action_probs": final.action_probs, "seconds": time.perf_counter() - t0}


def _worker(cfg: ExperimentConfig, ckpt_dir: Path, tasks, events) -> None:
    """A spawned worker: run jobs from ``tasks`` until ``None``. It ignores SIGINT (inherited
    from the parent at start): on Ctrl-C the parent decides and terminates the workers."""
    while (job := tasks.get()) is not None:
        method, seed = job
        try:
            events.put(("result", _job(cfg, method, seed, ckpt_dir, events)))
        except BaseException:
            events.put(("error", method, seed, traceback.format_exc()))
            return


class _Monitor:
    """The parent's side of a run: every event from the jobs goes to the sinks, the progress
    display (work done, see ``league.progress``) and, every ``log_every`` iterations of a
    job, a log line; finished jobs are collected in ``results``."""

    def __init__(self, cfg: ExperimentConfig, jobs: list[tuple[str, int]], sinks: RunSinks, progress: Progress,
                 work: dict[str, JobWork], log_every: int) -> None:
        self.cfg, self.jobs, self.sinks, self.progress = cfg, jobs, sinks, progress
        self.work, self.log_every = work, max(int(log_every), 1)
        self.done: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []

    def _advance(self, job: tuple[str, int], amount: float, note: str) -> None:
        self.done[job] = min(self.done.get(job, 0.0) + amount, self.work[job[0]].total)
        self.progress.update(sum(self.done.values()), note)

    def put(self, event: tuple) -> None:
        kind = event[0]
        if kind == "record":
            row = event[1]
            job = (row["method"], int(row["seed"]))
            self.sinks.record(row)
            last = self.last.setdefault(job, {})
            last.update({k: v for k, v in row.items() if k not in ("method", "seed")})
            validation = "val_score" in row
            work = self.work[job[0]]
            it = int(row["iteration"])
            self._advance(job, work.validation if validation else work.iteration, f"{job[0]} seed {job[1]} it {it}")
            if not validation and (it % self.log_every == 0 or it == self.cfg.train.iterations):
                shown = ", ".join(f"{k} {last[k]:.4g}" for k in ("objective", "grad_norm", "meta_reward", "val_score")
                                  if isinstance(last.get(k), (int, float)))
                self.progress.log(f"{job[0]} seed {job[1]}: iteration {it}/{self.cfg.train.iterations}, {shown}")
        elif kind == "phase":
            _, method, seed, phase = event
            self.progress.update(sum(self.done.values()), f"{method} seed {seed} {phase}")
            self.progress.log(f"{method} seed {seed}: {phase}")
        elif kind == "result":
            r = event[1]
            job = (r["method"], r["seed"])
            self.results.append(r)
            self.done[job] = self.work[job[0]].total
            self.progress.update(sum(self.done.values()), f"{job[0]} seed {job[1]} done")
            self.progress.log(f"{job[0]} seed {job[1]}: done in {r['seconds']:.0f}s, best iteration "
                              f"{r['best_iteration']} (validation score {r['best_val_score']:.4g}); "
                              f"{len(self.results)}/{len(self.jobs)} jobs")
        elif kind == "error":
            _, method, seed, tb = event
            raise RuntimeError(f"{method} seed {seed} failed in its worker:\n{tb}")


def _run_jobs(cfg: ExperimentConfig, jobs: list[tuple[str, int]], ckpt_dir: Path, monitor: _Monitor) -> None:
    """Run the jobs (inline with one worker, else in spawned workers) until all are done; on
    Ctrl-C (KeyboardInterrupt) the workers are terminated at once and it propagates."""
    if cfg.workers == 1:
        for m, s in jobs:
            monitor.put(("result", _job(cfg, m, s, ckpt_dir, monitor)))
        return
    ctx = mp.get_context("spawn")
    tasks, events = ctx.Queue(), ctx.Queue()
    tasks.cancel_join_thread()
    for job in jobs:
        tasks.put(job)
    procs = [ctx.Process(target=_worker, args=(cfg, ckpt_dir, tasks, events), daemon=True)
             for _ in range(min(cfg.workers, len(jobs)))]
    for _ in procs:
        tasks.put(None)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # inherited by the workers
    try:
        for p in procs:
            p.start()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    try:
        while len(monitor.results) < len(jobs):
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a worker died with exit code {dead[0]}") from None
                continue
            monitor.put(event)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


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
    """Per group and method: curve and AUC with 95% t-intervals over the seeds that finished,
    and mean dynamics. Methods without a finished seed are left out."""
    out: dict[str, Any] = {}
    for group, sel in _groups(cfg, test_types).items():
        curves, dynamics = {}, {}
        for m in cfg.methods:
            seeds = [s for s in cfg.seeds if (m, s) in by_job]
            if not seeds:
                continue
            curves[m] = np.stack([by_job[(m, s)].rewards[:, sel, 0].mean(axis=1) for s in seeds])
            if by_job[(m, seeds[0])].action_probs is not None:  # matrix games: per-state action probabilities
                probs = np.stack([by_job[(m, s)].action_probs[:, sel] for s in seeds])  # [seeds,L+1,N,n,S,A]
                dynamics[m] = np.nanmean(probs, axis=(0, 2)).tolist()  # [L+1, n, S, A]
        out[group] = {"methods": stats.summarize(curves), "action_dynamics": dynamics}
    return out


def _read_records(run: Path) -> list[dict[str, Any]] | None:
    """The records of ``run/metrics.jsonl`` (None without the file)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_plots(cfg: ExperimentConfig, summary: dict[str, Any], out: Path,
                records: list[dict[str, Any]] | None = None) -> list[str]:
    """Adaptation curves and action dynamics per test group, and (given the metrics records)
    the training curves."""
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    game = cfg.game.name
    states = IPD_STATES if game == "ipd" else None
    actions = ["C", "D"] if game == "ipd" else ["R", "P", "S"]
    if records is not None:
        written.append(str(plots.plot_training_curves(records, plot_dir / "training_curves.png",
                                                      f"{cfg.name}: meta-training")))
    for group, block in summary["groups"].items():
        title = f"{cfg.name}: meta-test vs {group} personas"
        written.append(str(plots.plot_adaptation_curves(block["methods"], plot_dir / f"adaptation_{group}.png", title)))
        for m, dyn in block["action_dynamics"].items():
            dyn = np.asarray(dyn)  # [L+1, n, S, A]
            names = states or [f"s{i}" for i in range(dyn.shape[2])]
            n = block["methods"][m]["n_seeds"]
            written.append(str(plots.plot_action_dynamics(
                dyn[:, 0], dyn[:, 1], names, actions, plot_dir / f"dynamics_{group}_{m.replace(':', '-')}.png",
                f"{m} vs {group} personas (solid: meta-agent, dashed: peer)\n"
                f"mean over n={n} seeds and the group's test personas")))
    return written


def run_experiment(cfg: ExperimentConfig, out: Path, track: bool = False, log_every: int = 10,
                   project: str = "league", stream=None) -> dict[str, Any]:
    """Train and meta-test every (method, seed) of ``cfg`` into run directory ``out``.

    Metrics records stream to ``metrics.jsonl``, TensorBoard (``tensorboard/``) and, with
    ``track``, Weights & Biases as they are made; progress (work, not jobs) goes to
    ``stream`` (stderr): a bar on a terminal, a log line every ``log_every`` iterations of a
    job elsewhere. On Ctrl-C (or SIGTERM from ``league train``) the workers stop at once and
    ``summary.json`` of the jobs that finished is written (``summary["interrupted"]`` is true;
    their checkpoints are already on disk); ``league evaluate`` draws its plots."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(to_toml(cfg))
    setting = build_setting(cfg)
    t0 = time.perf_counter()
    jobs = [(m, s) for m in cfg.methods for s in cfg.seeds]
    n_val, n_test = pool_size(setting.population.val), pool_size(setting.population.test)
    work = {m: job_work(m, cfg.train.iterations, cfg.train.meta_batch, cfg.chain.length, cfg.train.validate_every,
                        n_val, n_test) for m in cfg.methods}
    progress = Progress(sum(work[m].total for m, _ in jobs), cfg.name, stream)
    sinks = RunSinks(out, cfg, track, project)
    monitor = _Monitor(cfg, jobs, sinks, progress, work, log_every)
    progress.log(f"{len(jobs)} jobs ({', '.join(cfg.methods)} x seeds {cfg.seeds}) on {cfg.workers} workers; "
                 f"metrics stream to {out / 'metrics.jsonl'} and {out / 'tensorboard'}")
    interrupted = False
    try:
        _run_jobs(cfg, jobs, out / "checkpoints", monitor)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    try:
        results = sorted(monitor.results, key=lambda r: jobs.index((r["method"], r["seed"])))
        if interrupted:
            progress.log(f"interrupted: keeping the {len(results)} of {len(jobs)} jobs that finished")
        by_job = {(r["method"], r["seed"]): Adaptation(r["rewards"], r["action_probs"]) for r in results}
        by_final = {(r["method"], r["seed"]): Adaptation(r["final_rewards"], r["final_action_probs"]) for r in results}
        summary = {
            "experiment": cfg.name, "paper": cfg.paper, "seeds": cfg.seeds, "methods": cfg.methods,
            "interrupted": interrupted, "completed_jobs": [f"{r['method']}/seed{r['seed']}" for r in results],
            "budget": {"iterations": cfg.train.iterations, "meta_batch": cfg.train.meta_batch,
                       "trajectories": cfg.chain.trajectories, "horizon": cfg.chain.horizon,
                       "chain_length": cfg.chain.length, "wall_seconds": round(time.perf_counter() - t0, 1),
                       "job_seconds": {f"{r['method']}/seed{r['seed']}": round(r["seconds"], 1) for r in results},
                       "workers": cfg.workers},
            "machine": machine(),
            "auc_definition": "sum over l=1..L of the meta-agent's mean per-step reward at joint policy phi_l",
            "interval": stats.CI_LABEL,
            "selected_iteration": {f"{r['method']}/seed{r['seed']}": r["best_iteration"] for r in results},
            "groups": summarize_adaptations(cfg, by_job, setting.personas.test_types) if results else {},
            "final_checkpoints": {
                "note": "the same meta-test for each job's last checkpoint (not selected by validation)",
                "groups": {g: {"methods": blk["methods"]} for g, blk in
                           (summarize_adaptations(cfg, by_final, setting.personas.test_types) if results else {}).items()},
            },
            "estimator": cfg.train.estimator,
        }
        summary["plots"] = []
        if interrupted:  # stop now: plots take seconds to minutes on a loaded machine
            progress.log(f"no plots for an interrupted run: `league evaluate {out}` draws them for the finished jobs")
        else:
            sinks.jsonl.flush()
            summary["plots"] = write_plots(cfg, summary, out, _read_records(out))
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        sinks.summary(summary)
    finally:
        sinks.close(interrupted)
    return summary


def evaluate_run(run: Path, overrides: list[str], out: Path | None = None, stream=None) -> dict[str, Any]:
    """Re-run meta-testing of a run directory's selected checkpoints (optionally with config
    overrides, e.g. the out-of-distribution personas) and write ``evaluation.json``. Jobs
    without a checkpoint (an interrupted run) are listed as missing; none at all is an error."""
    ignored = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] in ("train", "workers")]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} would be ignored: evaluate meta-tests the trained checkpoints "
                          "(train.* and workers apply to `league train`)")
    cfg = load_config(run / "config.toml", overrides)
    out = out or run / "evaluation"
    setting = build_setting(cfg)
    paths = {(m, s): run / "checkpoints" / f"{m}_seed{s}.pt" for m in cfg.methods for s in cfg.seeds}
    found = {job: p for job, p in paths.items() if p.exists()}
    if not found:
        raise FileNotFoundError(f"{run / 'checkpoints'} holds none of {', '.join(p.name for p in paths.values())}: "
                                f"was {run} written by `league train`?")
    out.mkdir(parents=True, exist_ok=True)
    test_work = job_work(cfg.methods[0], 0, 1, cfg.chain.length, 1, 0, pool_size(setting.population.test)).meta_test
    progress = Progress(len(found) * test_work, f"evaluate {run.name}", stream)
    by_job = {}
    try:
        for i, ((m, s), path) in enumerate(found.items()):
            progress.update(i * test_work, f"{m} seed {s} meta-test")
            ckpt = Checkpoint.from_dict(torch.load(path, map_location="cpu")["best"])
            by_job[(m, s)] = meta_test(cfg, ckpt)
            progress.update((i + 1) * test_work, f"{m} seed {s} done")
            progress.log(f"{m} seed {s}: meta-tested ({i + 1}/{len(found)})")
    finally:
        progress.close()
    summary = {"run": str(run), "overrides": list(overrides), "machine": machine(), "interval": stats.CI_LABEL,
               "missing": [f"{m}/seed{s}" for (m, s) in paths if (m, s) not in found],
               "groups": summarize_adaptations(cfg, by_job, setting.personas.test_types)}
    summary["plots"] = write_plots(cfg, summary, out, _read_records(run))
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1))
    return summary


def results_table(summary: dict[str, Any]) -> str:
    """A plain-text table: per group and method, the number of seeds n, AUC and the reward at
    phi_0 and phi_L, each as mean ± the half-width of its 95% t-interval over the n seeds."""
    lines = [f"{stats.CI_LABEL} (n per method; no interval with n=1)"]
    if summary.get("interrupted"):
        lines.append(f"interrupted: {len(summary['completed_jobs'])} jobs finished: "
                     f"{', '.join(summary['completed_jobs']) or 'none'}")
    for group, block in summary["groups"].items():
        lines.append(f"meta-test vs {group} personas")
        lines.append(f"  {'method':<18}{'n':>3}{'AUC (phi_1..phi_L)':>24}{'reward at phi_0':>20}{'reward at phi_L':>20}")
        final = summary.get("final_checkpoints", {}).get("groups", {}).get(group, {}).get("methods", {})
        for m, s in block["methods"].items():
            cm, ci = s["curve_mean"], s["curve_ci95"]
            last = f"   final checkpoint AUC {final[m]['auc_mean']:.3f} ± {final[m]['auc_ci95']:.3f}" if m in final else ""
            lines.append(f"  {m:<18}{s['n_seeds']:>3}{s['auc_mean']:>14.3f} ± {s['auc_ci95']:<7.3f}"
                         f"{cm[0]:>10.3f} ± {ci[0]:<7.3f}{cm[-1]:>10.3f} ± {ci[-1]:<7.3f}{last}")
    return "\n".join(lines)
