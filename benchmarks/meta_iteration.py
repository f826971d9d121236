"""Benchmark: one Meta-MAPG meta-training iteration on IPD, batched chains vs. a per-chain loop.

Setting (defaults): IPD, K = 64 trajectories, H = 150 steps, L = 7 inner steps, LSTM
meta-agent (64 units) and LSTM critic against tabular personas, meta-batch 8, float32,
one torch thread. One iteration is assembled exactly as ``league.experiment.train_one``
does (sample 8 training personas, ``meta_objective``, ``learner.step``).

Variants, each run in its own freshly spawned subprocess (so peak memory is its own):

* ``batched``: the 8 personas are the chain dimension ``B = 8`` of one ``meta_objective``
  call followed by one ``MetaLearner.step`` (the library's way).
* ``loop``: 8 sequential ``meta_objective`` calls with ``B = 1``, each followed by its own
  ``per_chain_gradients`` (and the critic's value-loss gradient), the graph freed before the
  next chain; the 8 per-chain gradients are then handed to ``MetaLearner.step`` unchanged
  (PCGrad, clipping, Adam and the critic step run exactly as for the batched variant).

Per variant: wall seconds per iteration (1 FLOP-counted warm-up iteration, ``--warmup``
plain warm-ups, then ``--iters`` timed iterations; every sample is recorded), seconds per
persona-chain (median / meta-batch), peak resident memory (``VmHWM``), and FLOPs of one
iteration from ``torch.utils.flop_counter.FlopCounterMode`` (forward, inner
``create_graph`` gradients and the outer backward through them), split by phase. A second
dispatch mode tallies every aten op (calls, matmul shapes, output elements of the ops
FlopCounterMode does not count). The parent process also times single-thread matmuls at
the shapes the iteration dispatches, plus a large square matmul as a ceiling.

    python benchmarks/meta_iteration.py                 # full run (~5 min on 2 cores)
    python benchmarks/meta_iteration.py --quick --out /tmp/q.json   # H=20, L=2 smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import export_commit  # noqa: E402
MATMUL_OPS = ("aten.mm", "aten.bmm", "aten.addmm", "aten.baddbmm")


# ----------------------------------------------------------------------------- helpers

def vm_status(key: str) -> int:
    """A ``/proc/self/status`` field in kB (VmHWM, VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def machine_info() -> dict:
    cpu = "unknown"
    flags: list[str] = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].split()
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    mem_kb = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:")), -1)
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu_model": cpu, "cpu_simd_flags": simd, "logical_cpus": os.cpu_count(),
        "mem_total_gib": round(mem_kb / 2**20, 1), "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": 1, "torch_interop_threads": 1,
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class OpTally(TorchDispatchMode):
    """Counts every aten op dispatched (including inside backward and double backward):
    calls per op, matmul calls by (op, shapes, strides), and the output elements of every
    op that is neither a matmul nor a view (a rough lower bound on the elementwise and
    reduction work that FlopCounterMode does not count)."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = defaultdict(int)
        self.matmuls: dict[tuple, int] = defaultdict(int)
        self.other_elements = 0
        self.view_calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        self.calls[name] += 1
        if name in MATMUL_OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if name in ("aten.addmm", "aten.baddbmm"):
                tensors = tensors[1:3]
            self.matmuls[(name, tuple(tuple(t.shape) for t in tensors),
                          tuple(tuple(t.stride()) for t in tensors), str(tensors[0].dtype))] += 1
        elif getattr(func, "is_view", False) or name in ("aten.detach", "aten.lift_fresh"):
            self.view_calls += 1
        else:
            outs = out if isinstance(out, (tuple, list)) else (out,)
            self.other_elements += sum(t.numel() for t in outs if isinstance(t, torch.Tensor))
        return out


def matmul_flops(name: str, shapes: tuple) -> int:
    a, b = shapes
    if name in ("aten.mm", "aten.addmm"):
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


# ----------------------------------------------------------------------------- the iteration

def build(args):
    """Everything ``train_one`` builds before its loop, for meta-mapg."""
    from league.config import load_config
    from league.learner import MetaLearner
    from league.meta import Critic
    from league.methods import make_method
    from league.setting import build_setting

    cfg = load_config(None, [f"chain.trajectories={args.K}", f"chain.horizon={args.H}",
                             f"chain.length={args.L}", f"train.meta_batch={args.B}",
                             f"agent.hidden={args.hidden}", 'dtype="float32"'])
    setting = build_setting(cfg)
    method = make_method("meta-mapg", cfg.agent.lookahead)
    g = torch.Generator().manual_seed(args.seed)
    L, dtype = cfg.chain.length, setting.dtype
    policy = setting.meta_policy.init_params(g)
    lr = torch.full((1, L), cfg.agent.inner_lr, dtype=dtype)
    critic = Critic(setting.value_net, setting.value_net.init_params(g), cfg.chain.gamma, cfg.train.gae_lambda)
    learner = MetaLearner(policy, lr, method.learn_lr, critic, cfg.train.outer, g)
    evaluator = setting.evaluator(g)
    return cfg, setting, method, g, learner, critic, evaluator


class Counting:
    """FlopCounterMode and OpTally entered together; ``flops()`` is the running total."""

    def __init__(self):
        self.fc, self.tally = FlopCounterMode(display=False), OpTally()

    def __enter__(self):
        self.fc.__enter__()
        self.tally.__enter__()
        return self

    def __exit__(self, *exc):
        self.tally.__exit__(*exc)
        self.fc.__exit__(*exc)

    def flops(self) -> int:
        return self.fc.get_total_flops()


def run_batched(ctx, timings: dict, counter: Counting | None) -> dict:
    """One ``train_one`` iteration: all chains in one ``meta_objective`` and ``learner.step``."""
    from league.meta import meta_objective

    cfg, setting, method, g, learner, critic, evaluator = ctx
    train, B, L = setting.personas.train, cfg.train.meta_batch, cfg.chain.length
    with counter or contextlib.nullcontext():
        t0 = time.perf_counter()
        idx = torch.randint(train.shape[0], (B,), generator=g)
        result = meta_objective(method, evaluator, learner.policy, learner.lr, setting.peer_params(train[idx]),
                                setting.peer_lrs(B), L, critic, cfg.train.entropy_weight, cfg.train.include_initial)
        meta_reward = float(torch.stack([evaluator.mean_rewards(s.data)[:, 0] for s in result.steps]).mean())
        t1 = time.perf_counter()
        f1 = counter.flops() if counter else 0
        stats = learner.step(result)
        del result
        t2 = time.perf_counter()
    timings["objective_s"], timings["step_s"] = t1 - t0, t2 - t1
    if counter:
        timings.update(flops_objective=f1, flops_step=counter.flops() - f1, counted_chains=B)
    return {"meta_reward": meta_reward, **stats}


def run_micro(ctx, timings: dict, counter: Counting | None, micro_batch: int = 2) -> dict:
    """One iteration through ``MetaLearner.step_micro_batched``: the same B personas, built
    and differentiated ``micro_batch`` chains at a time (each micro-batch's graph freed
    before the next is built)."""
    from league.meta import meta_objective

    cfg, setting, method, g, learner, critic, evaluator = ctx
    train, B, L = setting.personas.train, cfg.train.meta_batch, cfg.chain.length
    rewards = []
    with counter or contextlib.nullcontext():
        t0 = time.perf_counter()
        idx = torch.randint(train.shape[0], (B,), generator=g)
        peers = setting.peer_params(train[idx])

        def objective(start: int, stop: int):
            result = meta_objective(method, evaluator, learner.policy, learner.lr,
                                    [{k: v[start:stop] for k, v in p.items()} for p in peers],
                                    setting.peer_lrs(stop - start), L, critic, cfg.train.entropy_weight,
                                    cfg.train.include_initial)
            rewards.append(float(torch.stack([evaluator.mean_rewards(s.data)[:, 0] for s in result.steps]).mean()))
            return result

        stats = learner.step_micro_batched(objective, B, micro_batch)
        t1 = time.perf_counter()
    timings["objective_and_step_s"] = t1 - t0
    if counter:
        timings.update(flops_objective_and_step=counter.flops(), counted_chains=B)
    return {"meta_reward": statistics.fmean(rewards), **stats}


def run_loop(ctx, timings: dict, counter: Counting | None) -> dict:
    """One chain at a time; the per-chain gradients are combined by ``MetaLearner.step``.
    With a counter only the first chain is counted (every chain dispatches the same ops at
    the same shapes; the combine step dispatches no matmul); the caller scales by B."""
    from league.meta import MetaObjective, meta_objective, per_chain_gradients

    cfg, setting, method, g, learner, critic, evaluator = ctx
    train, B, L = setting.personas.train, cfg.train.meta_batch, cfg.chain.length
    idx = torch.randint(train.shape[0], (B,), generator=g)
    grads, objectives, rewards, chain_s = defaultdict(list), [], [], []
    critic_names = list(critic.params)
    critic_grad = {n: torch.zeros_like(p) for n, p in critic.params.items()}
    value_loss, obj_s, grad_s, f_obj, f_grad = 0.0, 0.0, 0.0, 0, 0
    for b in range(B):
        counting = counter if b == 0 else None
        scope = counting or contextlib.nullcontext()
        scope.__enter__()
        c0 = time.perf_counter()
        fa = counting.flops() if counting else 0
        result = meta_objective(method, evaluator, learner.policy, learner.lr,
                                setting.peer_params(train[idx[b:b + 1]]), setting.peer_lrs(1), L, critic,
                                cfg.train.entropy_weight, cfg.train.include_initial)
        rewards.append(float(torch.stack([evaluator.mean_rewards(s.data)[:, 0] for s in result.steps]).mean()))
        c1 = time.perf_counter()
        fb = counting.flops() if counting else 0
        for n, gr in per_chain_gradients(result).items():  # as MetaLearner.step does, B == 1
            grads[n].append(gr.detach())
        objectives.append(result.objective.detach())
        if result.value_loss is not None:  # the critic's loss: a mean, so average over chains
            for n, gr in zip(critic_names, torch.autograd.grad(result.value_loss, [critic.params[n] for n in critic_names])):
                critic_grad[n] += gr / B
            value_loss += float(result.value_loss.detach()) / B
        del result
        c2 = time.perf_counter()
        if counting:
            f_obj, f_grad = fb - fa, counting.flops() - fb
        scope.__exit__(None, None, None)
        obj_s, grad_s = obj_s + c1 - c0, grad_s + c2 - c1
        chain_s.append(c2 - c0)
    t1 = time.perf_counter()
    # Hand the stacked per-chain gradients to MetaLearner.step through a linear surrogate
    # whose gradients w.r.t. fresh [B, ...] handles are exactly those gradients (and whose
    # value is the chains' objectives), and a critic loss whose gradient is the mean one.
    stacked = {n: torch.cat(v) for n, v in grads.items()}
    handles = {n: torch.zeros_like(v, requires_grad=True) for n, v in stacked.items()}
    objective = torch.cat(objectives) + sum((handles[n] * v).flatten(1).sum(1) for n, v in stacked.items())
    lin = sum((critic.params[n] * critic_grad[n]).sum() for n in critic_names)
    surrogate = MetaObjective(objective, handles, [], value_loss + lin - lin.detach())
    stats = learner.step(surrogate)
    t2 = time.perf_counter()
    timings.update(objective_s=obj_s, chain_grad_s=grad_s, combine_step_s=t2 - t1, chain_s=chain_s)
    if counter:
        timings.update(flops_objective=f_obj, flops_chain_grads=f_grad, flops_step=0, counted_chains=1)
    return {"meta_reward": statistics.fmean(rewards), **stats}


def child(args) -> None:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    rss_start = vm_status("VmRSS")
    ctx = build(args)
    run = {"batched": run_batched, "loop": run_loop,
           "micro": functools.partial(run_micro, micro_batch=args.micro_batch)}[args.child]
    rec: dict = {"variant": args.child, "rss_after_setup_kb": vm_status("VmRSS"), "rss_start_kb": rss_start}

    # Warm-up 1: FLOP-counted (the counters slow it down; it is never timed). The loop counts
    # its first chain only and scales by B (identical ops and shapes in every chain).
    counter, timings = Counting(), {}
    t0 = time.perf_counter()
    stats = run(ctx, timings, counter)
    rec["counted_warmup_s"] = time.perf_counter() - t0
    scale = args.B // timings["counted_chains"]
    fc, tally = counter.fc, counter.tally
    rec["flops_counted_chains"] = timings["counted_chains"]
    rec["flops_total"] = scale * fc.get_total_flops()
    rec["flops_by_op"] = {str(k): scale * v for k, v in fc.get_flop_counts().get("Global", {}).items()}
    rec["flops_by_phase"] = {k: scale * v for k, v in timings.items() if k.startswith("flops_")}
    rec["op_calls_total"] = scale * sum(tally.calls.values())
    rec["op_calls_nonview"] = rec["op_calls_total"] - scale * tally.view_calls
    rec["op_calls_top"] = {k: scale * v for k, v in sorted(tally.calls.items(), key=lambda kv: -kv[1])[:12]}
    rec["other_op_output_elements"] = scale * tally.other_elements
    rec["matmul_shapes"] = [
        {"op": k[0], "dtype": k[3], "shapes": k[1], "strides": k[2], "calls": scale * n,
         "flops": scale * n * matmul_flops(k[0], k[1])}
        for k, n in sorted(tally.matmuls.items(), key=lambda kv: -kv[1] * matmul_flops(kv[0][0], kv[0][1]))]
    rec["tally_matmul_flops"] = sum(m["flops"] for m in rec["matmul_shapes"])
    rec["rss_after_counted_warmup_kb"] = vm_status("VmRSS")

    warm, samples, cpu, phases = [], [], [], []
    for i in range(args.warmup + args.iters):
        timings = {}
        t0, c0 = time.perf_counter(), time.process_time()
        stats = run(ctx, timings, None)
        dt = time.perf_counter() - t0
        if i < args.warmup:
            warm.append(dt)
        else:
            samples.append(dt)
            cpu.append(time.process_time() - c0)
            phases.append(timings)
        print(f"  [{args.child}] {'warm-up' if i < args.warmup else 'timed'} iteration: {dt:.2f} s "
              f"(objective {stats['objective']:+.3f}, |g| {stats['grad_norm']:.2f})", file=sys.stderr, flush=True)
    rec.update(warmup_s=warm, samples_s=samples, cpu_samples_s=cpu, phases=phases, last_stats=stats,
               vm_hwm_kb=vm_status("VmHWM"), vm_rss_end_kb=vm_status("VmRSS"))
    Path(args.child_out).write_text(json.dumps(rec))


# ----------------------------------------------------------------------------- matmul bound

def time_matmul(op: str, shapes, strides=None, dtype: str = "torch.float32", min_run_time: float = 0.2) -> dict:
    """Seconds per call of ``op`` at these shapes (and strides), one thread: the best of 5
    blocks of calls, in wall time and in process CPU time (the machine may be shared)."""
    g = torch.Generator().manual_seed(0)
    dt = {"torch.float32": torch.float32, "torch.float64": torch.float64}[dtype]
    tensors = []
    for i, shape in enumerate(shapes):
        stride = strides[i] if strides else None
        if stride is None:
            tensors.append(torch.randn(shape, generator=g, dtype=dt))
            continue
        size = 1 + sum((d - 1) * s for d, s in zip(shape, stride)) if all(shape) else 0
        tensors.append(torch.randn(max(size, 1), generator=g, dtype=dt).as_strided(shape, stride))
    fn = {"aten.mm": torch.mm, "aten.addmm": torch.mm, "aten.bmm": torch.bmm, "aten.baddbmm": torch.bmm}[op]
    a, b = tensors
    fn(a, b)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < min_run_time / 5 or n < 1:  # calls per block
        fn(a, b)
        n += 1
    wall, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn(a, b)
        wall.append((time.perf_counter() - t0) / n)
        cpu.append((time.process_time() - c0) / n)
    return {"wall": min(wall), "cpu": min(cpu)}


REFERENCE_SHAPES = [
    ("LSTM gate matmul, chains folded into rows", "aten.mm", ((512, 64), (64, 256))),
    ("LSTM gate matmul, one chain (B=1, K=64)", "aten.mm", ((64, 64), (64, 256))),
    ("LSTM gate matmul, batched chains", "aten.bmm", ((8, 64, 64), (8, 64, 256))),
    ("square ceiling", "aten.mm", ((2048, 2048), (2048, 2048))),
]


def layout_key(m: dict) -> tuple:
    return (m["op"], json.dumps(m["shapes"]), json.dumps(m["strides"]), m["dtype"])


def matmul_bench(children: dict) -> dict:
    torch.set_num_threads(1)
    ref = []
    for label, op, shapes in REFERENCE_SHAPES:
        t = time_matmul(op, shapes, min_run_time=1.5 if shapes[0][0] >= 1024 else 0.5)
        f = matmul_flops(op, shapes)
        ref.append({"label": label, "op": op, "shapes": shapes, "s_per_call": t["wall"], "cpu_s_per_call": t["cpu"],
                    "flops_per_s": f / t["wall"], "flops_per_cpu_s": f / t["cpu"]})
    # Every distinct (op, shapes, strides) the iterations dispatched, timed as laid out.
    seen: dict[tuple, float] = {}
    for rec in children.values():
        for m in rec["matmul_shapes"]:
            key = layout_key(m)
            if key not in seen:
                seen[key] = time_matmul(m["op"], m["shapes"], m["strides"], m["dtype"], min_run_time=0.05)
    per_shape = [{"op": k[0], "dtype": k[3], "shapes": json.loads(k[1]), "strides": json.loads(k[2]),
                  "s_per_call": v["wall"], "cpu_s_per_call": v["cpu"],
                  "flops_per_s": matmul_flops(k[0], json.loads(k[1])) / v["wall"]} for k, v in seen.items()]
    return {"reference": ref, "observed_shapes": per_shape}


# ----------------------------------------------------------------------------- driver

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="H=20, L=2 (a smoke run of a few seconds)")
    p.add_argument("--K", type=int, default=64, help="trajectories per chain step")
    p.add_argument("--H", type=int, default=None, help="horizon (default 150; 20 with --quick)")
    p.add_argument("--L", type=int, default=None, help="inner steps (default 7; 2 with --quick)")
    p.add_argument("--B", type=int, default=8, help="meta-batch (personas per iteration)")
    p.add_argument("--hidden", type=int, default=64, help="LSTM units")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per variant")
    p.add_argument("--warmup", type=int, default=None,
                   help="plain warm-up iterations after the FLOP-counted one (default: 1 for batched, 0 for "
                        "loop, whose counted iteration already ran the B=1 chain B times)")
    p.add_argument("--variants", default="before,batched,micro,loop",
                   help="before: the batched iteration of the --baseline commit's code; micro: "
                        "MetaLearner.step_micro_batched with --micro-batch chains at a time")
    p.add_argument("--micro-batch", type=int, default=2, help="chains per micro-batch of the micro variant")
    p.add_argument("--baseline", default="59b7407", help="commit whose code the before variant runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "meta_iteration.json"))
    p.add_argument("--child", choices=["batched", "loop", "micro"], help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.H = args.H if args.H is not None else (20 if args.quick else 150)
    args.L = args.L if args.L is not None else (2 if args.quick else 7)
    if args.child:
        if args.warmup is None:
            args.warmup = 0 if args.child == "loop" else 1
        return child(args)

    t_start = time.perf_counter()
    info = machine_info()
    load_start = loadavg()
    shape = dict(K=args.K, H=args.H, L=args.L, B=args.B, hidden=args.hidden, dtype="float32", game="ipd",
                 method="meta-mapg", micro_batch=args.micro_batch, baseline_commit=args.baseline)
    print(f"meta-iteration benchmark: {shape}\n{info['cpu_model']}, torch {info['torch']}, 1 thread, "
          f"load {load_start}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    children = {}
    for variant in args.variants.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        # "before" runs the baseline commit's own copy of this script, on that commit's league
        root = export_commit(args.baseline) if variant == "before" else ROOT
        cmd = [sys.executable, str(root / "benchmarks" / "meta_iteration.py"), "--child",
               "batched" if variant == "before" else variant, "--child-out", out,
               "--K", str(args.K), "--H", str(args.H), "--L", str(args.L), "--B", str(args.B),
               "--hidden", str(args.hidden), "--iters", str(args.iters), "--seed", str(args.seed)]
        if variant == "micro":
            cmd += ["--micro-batch", str(args.micro_batch)]
        if args.warmup is not None:
            cmd += ["--warmup", str(args.warmup)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=dict(env, PYTHONPATH=str(root)), cwd=root)
        children[variant] = json.loads(Path(out).read_text())
        children[variant]["process_wall_s"] = time.perf_counter() - t0
        os.unlink(out)
    bench = matmul_bench(children)
    square = next(r for r in bench["reference"] if r["label"] == "square ceiling")
    ceiling, ceiling_cpu = square["flops_per_s"], square["flops_per_cpu_s"]
    observed = {layout_key(m): m for m in bench["observed_shapes"]}

    results = {}
    for variant, rec in children.items():
        med, med_cpu = statistics.median(rec["samples_s"]), statistics.median(rec["cpu_samples_s"])
        mm_time = sum(m["calls"] * observed[layout_key(m)]["s_per_call"] for m in rec["matmul_shapes"])
        mm_cpu = sum(m["calls"] * observed[layout_key(m)]["cpu_s_per_call"] for m in rec["matmul_shapes"])
        fl = rec["flops_total"]
        results[variant] = {
            "iteration_s_median": med, "iteration_s_samples": rec["samples_s"],
            "iteration_cpu_s_median": med_cpu, "iteration_cpu_s_samples": rec["cpu_samples_s"],
            "iteration_s_warmup_plain": rec["warmup_s"], "iteration_s_counted_warmup": rec["counted_warmup_s"],
            "s_per_persona_chain": med / args.B, "cpu_s_per_persona_chain": med_cpu / args.B,
            "s_per_persona_chain_samples": [s / args.B for s in rec["samples_s"]],
            "phases_s": rec["phases"],
            "peak_rss_vmhwm_mib": rec["vm_hwm_kb"] / 1024,
            "rss_after_setup_mib": rec["rss_after_setup_kb"] / 1024,
            "flops_per_iteration_flopcounter": fl, "flops_counted_chains": rec["flops_counted_chains"],
            "flops_by_phase": rec["flops_by_phase"], "flops_by_op": rec["flops_by_op"],
            "tally_matmul_flops": rec["tally_matmul_flops"],
            "achieved_matmul_flops_per_s": fl / med,
            "fraction_of_square_ceiling": fl / med / ceiling,
            "matmul_time_at_benchmarked_speed_s": mm_time,
            "fraction_of_shape_bound": mm_time / med,
            "achieved_matmul_flops_per_cpu_s": fl / med_cpu,
            "fraction_of_square_ceiling_cpu": fl / med_cpu / ceiling_cpu,
            "fraction_of_shape_bound_cpu": mm_cpu / med_cpu,
            "op_calls_per_iteration": rec["op_calls_total"], "nonview_op_calls_per_iteration": rec["op_calls_nonview"],
            "us_per_nonview_op": med / rec["op_calls_nonview"] * 1e6,
            "op_calls_top": rec["op_calls_top"],
            "uncounted_op_output_elements": rec["other_op_output_elements"],
            "matmul_shapes_top": rec["matmul_shapes"][:10], "distinct_matmul_layouts": len(rec["matmul_shapes"]),
            "last_stats": rec["last_stats"], "process_wall_s": rec["process_wall_s"],
        }
    doc = {
        "benchmark": "meta_iteration", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": shape, "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(),
        "iters": args.iters, "results": results, "matmul_bench": bench,
        "flop_counter_check": double_backward_check(),
        "notes": [
            "FLOPs are FlopCounterMode's: matmul-family ops only (mm/bmm/addmm/baddbmm), 2*m*n*k each, counted at "
            "the aten level for forward, inner create_graph gradients and the outer (double) backward.",
            "Elementwise ops (sigmoid, tanh, exp, log_softmax, mul, add, cumsum, ...) are not counted by "
            "FlopCounterMode; uncounted_op_output_elements sums the output elements of every non-matmul, non-view "
            "op, a rough lower bound on that work.",
            "fraction_of_shape_bound: time the iteration's matmuls take when each (op, shape, stride, dtype) is timed "
            "alone in a tight loop (best of 5 blocks), divided by the measured iteration time.",
            "The machine may be shared with other processes: *_cpu fields use process CPU time (time.process_time) "
            "instead of wall time; compare loadavg_start/loadavg_end.",
            "The loop variant's FLOPs and op tallies are counted on its first chain and multiplied by B (every chain "
            "dispatches the same ops at the same shapes; the combine step dispatches no matmul).",
            "before: the batched iteration of the baseline commit's code (its own copy of this script, exported with "
            "git archive). batched: the same on today's code. micro: today's MetaLearner.step_micro_batched with "
            "micro_batch chains at a time. loop: one chain at a time. Each in a fresh process, one after another.",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1, default=str))
    print_table(doc)
    print(f"wrote {args.out} ({doc['total_wall_s']:.0f} s)")


def double_backward_check() -> dict:
    """Does FlopCounterMode see the matmuls of a double backward? y = x W, f = sum(y^2):
    forward 2nkm, create_graph gradient dW = x^T (2y) 2nkm, gradient of <dW, V> w.r.t. W
    (x V, then x^T of that) 4nkm."""
    torch.manual_seed(0)
    n, k, m = 64, 32, 16
    x, W, V = torch.randn(n, k), torch.randn(k, m, requires_grad=True), torch.randn(k, m)
    unit = 2 * n * k * m
    with FlopCounterMode(display=False) as fc:
        f = (x @ W).pow(2).sum()
        a = fc.get_total_flops()
        (dW,) = torch.autograd.grad(f, W, create_graph=True)
        b = fc.get_total_flops()
        torch.autograd.grad((dW * V).sum(), W)
        c = fc.get_total_flops()
    got = {"forward": a / unit, "inner_create_graph": (b - a) / unit, "outer_double_backward": (c - b) / unit}
    want = {"forward": 1, "inner_create_graph": 1, "outer_double_backward": 2}
    return {"in_units_of_2nkm": got, "expected": want, "sees_double_backward": got == want}


def print_table(doc: dict) -> None:
    r = doc["results"]
    names = list(r)
    rows = [
        ("median s / iteration", lambda v: f"{v['iteration_s_median']:.2f}"),
        ("s / persona-chain", lambda v: f"{v['s_per_persona_chain']:.3f}"),
        ("CPU s / persona-chain", lambda v: f"{v['cpu_s_per_persona_chain']:.3f}"),
        ("samples s / iteration", lambda v: " ".join(f"{s:.1f}" for s in v["iteration_s_samples"])),
        ("median CPU s / iteration", lambda v: f"{v['iteration_cpu_s_median']:.2f}"),
        ("peak RSS (VmHWM) MiB", lambda v: f"{v['peak_rss_vmhwm_mib']:.0f}"),
        ("matmul GFLOP / iteration", lambda v: f"{v['flops_per_iteration_flopcounter'] / 1e9:.1f}"),
        ("achieved matmul GFLOP/s", lambda v: f"{v['achieved_matmul_flops_per_s'] / 1e9:.2f}"),
        ("  / square-matmul ceiling", lambda v: f"{100 * v['fraction_of_square_ceiling']:.1f}%"),
        ("  / per-shape matmul bound", lambda v: f"{100 * v['fraction_of_shape_bound']:.1f}%"),
        ("achieved matmul GFLOP/CPU-s", lambda v: f"{v['achieved_matmul_flops_per_cpu_s'] / 1e9:.2f}"),
        ("  / ceiling (CPU time)", lambda v: f"{100 * v['fraction_of_square_ceiling_cpu']:.1f}%"),
        ("  / per-shape bound (CPU time)", lambda v: f"{100 * v['fraction_of_shape_bound_cpu']:.1f}%"),
        ("aten ops (non-view) / iteration", lambda v: f"{v['nonview_op_calls_per_iteration'] / 1e6:.2f} M"),
        ("us / non-view op", lambda v: f"{v['us_per_nonview_op']:.1f}"),
    ]
    w = max(len(x[0]) for x in rows)
    print(f"\n{'':{w}}  " + "  ".join(f"{n:>16}" for n in names))
    for label, fn in rows:
        print(f"{label:{w}}  " + "  ".join(f"{fn(r[n]):>16}" for n in names))
    if len(names) == 2 and all("iteration_s_median" in r[n] for n in names):
        a, b = names
        print(f"speed-up {a} vs {b}: {r[b]['iteration_s_median'] / r[a]['iteration_s_median']:.2f}x per iteration")
    print("\nsingle-thread matmul throughput:")
    for ref in doc["matmul_bench"]["reference"]:
        print(f"  {ref['label']:<42} {ref['op']:<9} {str(ref['shapes']):<30} {ref['flops_per_s'] / 1e9:7.2f} GFLOP/s "
              f"({ref['flops_per_cpu_s'] / 1e9:.2f} per CPU-s)")
    c = doc["flop_counter_check"]
    print(f"FlopCounterMode sees double-backward matmuls: {c['sees_double_backward']} {c['in_units_of_2nkm']}")


if __name__ == "__main__":
    main()
