"""What each Meta-MAPG experiment of the paper costs on this machine at the paper's shapes.

For every experiment config (``configs/*.toml`` at their own shapes: K 64, H 150, L 7,
meta-batch 8, as in the paper) and every method it trains, a freshly spawned process (its
own peak memory, one torch thread) builds the run exactly as ``league train`` does
(``MetaTraining``), runs ``--warmup`` meta-iterations untimed, then ``--iters`` timed ones,
and one validation pass (Algorithm 2 on the validation personas). The cost of one method
and seed is then::

    hours = (iterations * s_per_iteration + iterations / validate_every * s_per_validation) / 3600

with ``iterations`` the config's budget (2000 for every paper config; the paper trains
"until convergence"). Seconds are wall seconds of one process with one thread and, beside
them, that process's CPU seconds; the machine's load average is recorded, since both grow
with load on this 2-core machine (compare ``benchmarks/meta_iteration.json`` at load ~1
with ``meta_iteration_micro.json`` at load ~9). ``--micro-batch`` also measures the
micro-batched update (``train.micro_batch``), side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/paper_cost.py --out benchmarks/paper_cost.json
    PYTHONPATH=. .venv/bin/python benchmarks/paper_cost.py --quick     # tiny shapes, a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

from benchmarks._bench_common import ROOT, loadavg, machine_info

CONFIGS = ["ipd", "rps", "rps3", "rps4", "rps_ablation"]
QUICK = ["chain.trajectories=4", "chain.horizon=8", "chain.length=2", "agent.hidden=8", "train.meta_batch=2"]


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _measure(config: str, method: str, overrides: list[str], warmup: int, iters: int, pipe) -> None:
    import torch

    torch.set_num_threads(1)
    from league.config import load_config
    from league.experiment import adapt, adaptation_score
    from league.meta_training import MetaTraining

    cfg = load_config(ROOT / "configs" / f"{config}.toml", overrides)
    mt = MetaTraining.build(cfg, method, 0)
    wall, cpu = [], []
    for i in range(warmup + iters):
        t0, c0 = time.perf_counter(), time.process_time()
        mt.iterate(mt.evaluator, mt.sample_peers())
        if i >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    adaptation_score(adapt(mt.setting, mt.method, mt.learner.policy, mt.learner.lr, mt.setting.personas.val,
                           torch.Generator().manual_seed(1)))
    pipe.send({"iteration_s": wall, "iteration_cpu_s": cpu, "validation_s": time.perf_counter() - t0,
               "validation_cpu_s": time.process_time() - c0, "peak_rss_mib": _vm_kib("VmHWM") / 1024,
               "budget": {"iterations": cfg.train.iterations, "validate_every": cfg.train.validate_every,
                          "K": cfg.chain.trajectories, "H": cfg.chain.horizon, "L": cfg.chain.length,
                          "meta_batch": cfg.train.meta_batch, "micro_batch": cfg.train.micro_batch}})


def measure(config: str, method: str, overrides: list[str], warmup: int, iters: int) -> dict:
    """One (config, method) in its own spawned process."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_measure, args=(config, method, overrides, warmup, iters, send))
    proc.start()
    result = receive.recv()
    proc.join()
    b = result["budget"]
    per_it = sorted(result["iteration_s"])[len(result["iteration_s"]) // 2]
    per_it_cpu = sorted(result["iteration_cpu_s"])[len(result["iteration_cpu_s"]) // 2]
    validations = b["iterations"] / b["validate_every"]
    result["hours_per_method_seed"] = (b["iterations"] * per_it + validations * result["validation_s"]) / 3600
    result["cpu_hours_per_method_seed"] = (b["iterations"] * per_it_cpu + validations * result["validation_cpu_s"]) / 3600
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="*", default=CONFIGS)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--micro-batch", type=int, default=0, help="also measure train.micro_batch=N (0: not)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run, not a measurement")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import tomllib

    base = QUICK if args.quick else []
    out = {"benchmark": "paper_cost", "command": "python benchmarks/paper_cost.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "configs")),
        "machine": machine_info(), "loadavg_start": loadavg(), "rows": []}
    t_start = time.perf_counter()
    for config in args.configs:
        methods = tomllib.loads((ROOT / "configs" / f"{config}.toml").read_text())["methods"]
        for method in methods:
            variants = {"batched": base}
            if args.micro_batch:
                variants["micro"] = [*base, f"train.micro_batch={args.micro_batch}"]
            for variant, overrides in variants.items():
                row = {"config": config, "method": method, "variant": variant,
                       **measure(config, method, overrides, args.warmup, args.iters), "loadavg": loadavg()}
                out["rows"].append(row)
                print(f"{config:13s} {method:16s} {variant:8s} {row['iteration_s'][0]:7.1f} s/it "
                      f"({row['iteration_cpu_s'][0]:6.1f} cpu)  {row['peak_rss_mib']:6.0f} MiB  "
                      f"{row['hours_per_method_seed']:6.1f} h/method/seed", flush=True)
    out["loadavg_end"], out["total_wall_s"] = loadavg(), time.perf_counter() - t_start
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
