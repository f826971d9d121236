"""Benchmark: the same meta-test chain (Algorithm 2) embedded in one process and played by
a league of processes over gRPC on 127.0.0.1.

Setting (defaults): IPD, a meta-agent LSTM (64 units, random initial parameters, learned
per-step rates 0.3/0.2/0.2/0.1) against N = 4 test personas, K = 32, H = 50, L = 4,
float32, seed 12345; experiment config ``configs/ipd_quick.toml`` with the chain
overridden, exactly as ``tests/test_league_equivalence.py`` sets it up.

* **embedded**: ``league.experiment.adapt`` in one freshly spawned process with one torch
  thread. It times the first call in that process (``cold``, the league's processes are
  fresh too) and two more calls (``warm``). A last, instrumented call splits the time into
  rollouts (``SampledEvaluator.observe``: sampling plus scoring) and learning (DiCE
  objectives and the inner gradient steps).
* **league**: ``league up`` of a league TOML with the referee's seed equal to the embedded
  generator's seed, ``rounds = L + 1``, ``chains = 1``: a referee and 5 agent processes (the
  meta-agent and 4 personas).

**How the league is timed.** The chain runs from the referee's first ``play_round`` call
to the last ``TrajectoryBatch`` it queues for broadcast in round ``L``. The timestamps
come from ``benchmarks/_league_hooks/sitecustomize.py``: the benchmark puts that folder on
the ``PYTHONPATH`` of ``league up`` with ``LEAGUE_BENCH_TIMING`` set, so every league
process wraps a few referee and agent functions to log ``time.time()`` events (round,
pin, each parameter fetch, sampling, play_group, each broadcast; each agent's ``learn``).
Nothing else changes. These events also split the league's time into where it goes.
Start-up (launch until every ready file exists, until the first round) and the coarse
``league up`` wall minus time-to-all-ready-files are recorded too, as a cross-check.

Repetitions alternate embedded and league (the order flips every repetition) so both see
the same machine load; medians over repetitions; every sample is kept.

    python benchmarks/league_overhead.py                 # full run, writes benchmarks/league_overhead.json
    python benchmarks/league_overhead.py --quick --out /tmp/q.json   # K=8, H=20, L=2, 1 repetition
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, loadavg, machine_info, med, summary  # noqa: E402

sys.path.insert(0, str(ROOT))
HOOKS = Path(__file__).resolve().parent / "_league_hooks"
LRS = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]


def experiment_overrides(args) -> list[str]:
    return [f"chain.trajectories={args.K}", f"chain.horizon={args.H}", f"chain.length={args.L}",
            f"agent.hidden={args.hidden}"]


def load_setting(args):
    """The experiment's setting (game, policies, personas) for ``args.config``."""
    from league.config import load_config
    from league.setting import build_setting

    return build_setting(load_config(ROOT / "configs" / args.config, experiment_overrides(args)))


def persona_seats(setting, N: int) -> list[list[tuple[str, int]]]:
    """Per chain, its persona processes (id, test persona index) in seat order: seated as the
    embedded ``adapt`` seats ``personas.test[:N]`` (``Setting.peer_group_indices``)."""
    groups = setting.peer_group_indices(N).tolist()
    if setting.n_peers == 1:
        return [[(f"p{c}", g[0])] for c, g in enumerate(groups)]
    return [[(f"p{c}s{s + 1}", p) for s, p in enumerate(g)] for c, g in enumerate(groups)]


# ----------------------------------------------------------------------------- embedded child

def child_embedded(args) -> None:
    t_proc = time.time()
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import league.updates as updates_mod
    from league.evaluators import SampledEvaluator
    from league.experiment import adapt
    from league.methods import make_method

    setting = load_setting(args)
    best = torch.load(args.checkpoint, weights_only=False)["best"]
    method = make_method("meta-mapg")
    personas = setting.personas.test[:args.N]

    def once():
        t0, c0 = time.perf_counter(), time.process_time()
        a = adapt(setting, method, best["policy"], best["lr"], personas, torch.Generator().manual_seed(args.seed))
        return time.perf_counter() - t0, time.process_time() - c0, a

    t_ready = time.time()
    cold, cold_cpu, a = once()
    curve = a.rewards[:, :, 0].tolist()  # [L+1, N]
    warm = [once()[:2] for _ in range(args.warm)]
    # instrumented call: rollouts (sample + score) vs the rest (objectives, inner gradient steps)
    spent = {"observe": 0.0, "objective": 0.0, "ascend": 0.0}
    real_observe, real_ascend = SampledEvaluator.observe, updates_mod.ascend
    real_objective = method.meta_rule.__class__.objective

    def wrap(key, fn):
        def w(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0
        return w

    SampledEvaluator.observe = wrap("observe", real_observe)
    updates_mod.ascend = wrap("ascend", real_ascend)
    method.meta_rule.__class__.objective = wrap("objective", real_objective)
    total, _, _ = once()
    SampledEvaluator.observe, updates_mod.ascend = real_observe, real_ascend
    method.meta_rule.__class__.objective = real_objective
    learn = learn_microbench(setting, best, personas, args)
    Path(args.child_out).write_text(json.dumps({
        "meta_learn_microbench": learn,
        "cold_s": cold, "cold_cpu_s": cold_cpu, "warm_s": [w[0] for w in warm], "warm_cpu_s": [w[1] for w in warm],
        "curve": curve, "startup_s": t_ready - t_proc,
        "split": {"total_s": total, "rollouts_s": spent["observe"], "objectives_s": spent["objective"],
                  "inner_steps_s": spent["ascend"],
                  "other_s": total - spent["observe"] - spent["objective"] - spent["ascend"]},
    }))


def learn_microbench(setting, best, personas, args, reps: int = 5) -> dict:
    """The meta-agent's learning from one chain step's episodes of all N chains: N
    ``seat_step`` calls on B = 1 (what the meta-agent process does, one broadcast batch at a
    time) against one ``seat_step`` on B = N (the batched shape of the embedded chain).
    Both score the episodes with gradients, build the DiCE objective and take the step."""
    import torch

    from league.updates import PolicyGradient, seat_step
    from league.evaluators import SampledEvaluator
    from league.rollout import sample_episodes

    g = torch.Generator().manual_seed(args.seed)
    N, policy = personas.shape[0], setting.meta_policy
    meta = {k: v.expand(N, *v.shape[1:]).contiguous() for k, v in best["policy"].items()}
    peers = setting.peer_params(personas)
    episodes = sample_episodes(setting.game, [policy] + [setting.peer_policy] * setting.n_peers, [meta, *peers], N,
                               args.K, args.H, g)
    evaluator = SampledEvaluator(setting.game, [], 0, 0, setting.cfg.chain.gamma, torch.Generator())
    lr = best["lr"][:, 0]
    rule = PolicyGradient()
    one = lambda b: type(episodes)(episodes.obs[b:b + 1], episodes.actions[b:b + 1], episodes.rewards[b:b + 1])  # noqa: E731
    seq, batched = [], []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        for b in range(N):
            seat_step(rule, evaluator, policy, {k: v[b:b + 1] for k, v in meta.items()}, one(b), 0, lr)
        t1 = time.perf_counter()
        seat_step(rule, evaluator, policy, meta, episodes, 0, lr.expand(N))
        t2 = time.perf_counter()
        if i:
            seq.append(t1 - t0)
            batched.append(t2 - t1)
    return {"sequential_B1_s": med(seq), "batched_BN_s": med(batched), "reps": reps}


def run_embedded(args, ckpt: Path, tmp: Path, env: dict) -> dict:
    out = tmp / "embedded.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-embedded", "--child-out", str(out),
           "--checkpoint", str(ckpt), "--K", str(args.K), "--H", str(args.H), "--L", str(args.L),
           "--N", str(args.N), "--hidden", str(args.hidden), "--seed", str(args.seed), "--warm", str(args.warm),
           "--config", args.config]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=str(ROOT), timeout=args.timeout)
    rec = json.loads(out.read_text())
    rec["process_wall_s"] = time.time() - t0
    rec["loadavg_after"] = loadavg()
    return rec


# ----------------------------------------------------------------------------- league

def write_league(args, setting, ckpt: Path, path: Path) -> None:
    """The league of the embedded run: the meta-agent and one persona process per peer seat
    of each chain (consecutive in league order, the referee's default grouping), learning at
    the config's peer rate, with its game, seat count and discount."""
    cfg = setting.cfg
    agents = [f'[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm"\nhidden = {args.hidden}\n'
              f'init = "checkpoint:{ckpt}"\n']
    agents += [f'[[agents]]\nid = "{a}"\nrole = "persona"\ninit = "persona:test:{p}"\nlr = [{cfg.agent.peer_lr}]\n'
               for chain in persona_seats(setting, args.N) for a, p in chain]
    path.write_text(
        f'name = "overhead"\npopulation_seed = {cfg.population.seed}\n[referee]\nenv = "{cfg.game.name}"\n'
        f'n_players = {setting.game.n_agents}\ntrajectories = {args.K}\n'
        f'horizon = {args.H}\ngamma = {cfg.chain.gamma}\nchain_length = {args.L}\nrounds = {args.L + 1}\n'
        f'chains = 1\nseed = {args.seed}\n\n' + "\n".join(agents))


def _kill_recorded(state_file: Path) -> None:
    """Stop the league processes recorded by this run's `league up` (by PID)."""
    if not state_file.exists():
        return
    for pid in json.loads(state_file.read_text()).get("pids", {}).values():
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
                time.sleep(1.0)
            except ProcessLookupError:
                break


def run_league(args, setting, toml: Path, tmp: Path, rep: int, env: dict) -> dict:
    run, timing = tmp / f"run{rep}", tmp / f"timing{rep}"
    timing.mkdir()
    state = tmp / f"up{rep}.json"
    lenv = {**env, "PYTHONPATH": f"{HOOKS}{os.pathsep}{ROOT}", "LEAGUE_BENCH_TIMING": str(timing),
            "LEAGUE_STATE": str(state)}
    if args.profile:  # cProfile of the round loop, stream readers and learners (see _league_hooks)
        (Path(args.profile) / f"rep{rep}").mkdir(parents=True, exist_ok=True)
        lenv["LEAGUE_BENCH_PROFILE"] = str(Path(args.profile).resolve() / f"rep{rep}")
    seats = persona_seats(setting, args.N)
    ids = ["referee", "meta", *[a for chain in seats for a, _ in chain]]
    ready: dict[str, float] = {}
    out_f, err_f = open(tmp / f"up{rep}.out", "w"), open(tmp / f"up{rep}.err", "w")
    t_launch = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", str(toml), "--out", str(run), "--json",
                             "--insecure"],  # plaintext, as recorded (auth_cost.py measures TLS)
                            stdout=out_f, stderr=err_f, cwd=str(tmp), env=lenv)
    deadline = time.monotonic() + args.timeout
    while proc.poll() is None and time.monotonic() < deadline:
        for a in ids:
            if a not in ready and (run / f"{a}.ready.json").exists():
                ready[a] = time.time()
        time.sleep(0.005)
    if proc.poll() is None:  # bounded: interrupt `league up` (it stops its processes), then by PID
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        _kill_recorded(state)
        raise TimeoutError(f"league up did not finish within {args.timeout}s; see {tmp}")
    t_exit = time.time()
    out_f.close()
    err_f.close()
    if proc.returncode != 0:
        raise RuntimeError(f"league up failed ({proc.returncode}):\n" + (tmp / f"up{rep}.err").read_text()[-3000:])
    summary_ = json.loads((tmp / f"up{rep}.out").read_text().strip().splitlines()[-1])
    events = []
    for f in timing.glob("*.jsonl"):
        events += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    results_mtime = (run / "referee_results.json").stat().st_mtime
    rec = analyse(args, events, ready, t_launch, t_exit, results_mtime)
    chains = {tuple(c["personas"]): c["rewards"] for c in summary_["chains"]}
    order = [tuple(a for a, _ in chain) for chain in seats]
    rec["curve"] = [[chains[o][l] for o in order] for l in range(args.L + 1)]
    rec["aborted_matches"] = summary_["aborted_matches"]
    rec["loadavg_after"] = loadavg()
    return rec


def analyse(args, events: list[dict], ready: dict, t_launch: float, t_exit: float, results_mtime: float) -> dict:
    by = lambda ev: [e for e in events if e["ev"] == ev]  # noqa: E731
    rounds = sorted(by("round"), key=lambda e: e["round"])
    pins = {e["round"]: e for e in by("pin")}
    samples = sorted(by("sample"), key=lambda e: e["t0"])
    groups = {e["round"]: e for e in by("group")}
    broadcasts = by("broadcast")
    learns = by("learn")
    fetches = by("fetch")
    assert len(rounds) == args.L + 1, f"expected {args.L + 1} rounds, got {len(rounds)}"
    t_first = rounds[0]["t0"]
    t_last_bc = max(b["t"] for b in broadcasts)
    t_ready_all = max(ready.values())
    per_round = []
    for i, r in enumerate(rounds):
        n = r["round"]
        bc = [b for b in broadcasts if b["round"] == n]
        pin, grp, smp = pins[n], groups[n], samples[i]
        row = {"round": n, "round_s": r["t1"] - r["t0"], "pin_s": pin["t1"] - pin["t0"],
               "sample_s": smp["t1"] - smp["t0"], "encode_broadcast_s": grp["t1"] - smp["t1"],
               "sample_cpu_s": smp["cpu_s"], "encode_broadcast_cpu_s": grp["cpu_s"] - smp["cpu_s"],
               "stack_params_s": smp["t0"] - grp["t0"], "schedule_s": pin["t0"] - r["t0"],
               "after_broadcast_s": r["t1"] - max(b["t"] for b in bc)}
        fs = [f for f in fetches if f["round"] == n]
        row["fetch_polls"] = sum(f["polls"] for f in fs)
        row["fetch_last_transfer_s_max"] = max(f["t1"] - f["t_last_poll"] for f in fs)
        if n > 0:  # the pin waits for the agents to learn from the previous round's broadcast
            prev_bc = {b["match"]: b["t"] for b in broadcasts if b["round"] == n - 1}
            prev = [e for e in learns if e["round"] == n - 1]
            meta = [e for e in prev if e["agent"] == "meta"]
            published = max(e["t1"] for e in prev)
            row.update({
                "meta_learn_s": sum(e["t1"] - e["t0"] for e in meta),
                "meta_learn_each_s": [e["t1"] - e["t0"] for e in sorted(meta, key=lambda e: e["t0"])],
                "meta_learn_batches_each": [e.get("batches", 1) for e in sorted(meta, key=lambda e: e["t0"])],
                "persona_learn_s_max": max((e["t1"] - e["t0"] for e in prev if e["agent"] != "meta"), default=0.0),
                "delivery_s_median": med([e["t0"] - prev_bc[e["match"]] for e in prev]),
                "meta_learn_calls": len(meta),
                "meta_learn_cpu_s": sum(e["cpu_s"] for e in meta),
                "meta_idle_between_batches_s": (max(e["t1"] for e in meta) - min(e["t0"] for e in meta)
                                                - sum(e["t1"] - e["t0"] for e in meta)),
                "wait_for_learning_s": published - pin["t0"],
                "detect_and_fetch_s": pin["t1"] - published,
            })
        per_round.append(row)
    later = per_round[1:]
    tot = lambda key, rows=per_round: sum(r[key] for r in rows)  # noqa: E731
    chain_s = t_last_bc - t_first
    return {
        "chain_s": chain_s,
        "startup": {"referee_ready_s": ready.get("referee", float("nan")) - t_launch,
                    "all_ready_s": t_ready_all - t_launch, "first_round_s": t_first - t_launch,
                    "joins_after_ready_s": t_first - t_ready_all},
        "teardown_s": t_exit - t_last_bc,
        "league_up_wall_s": t_exit - t_launch,
        "coarse": {"up_wall_minus_all_ready_s": t_exit - t_ready_all,
                   "results_file_minus_all_ready_s": results_mtime - t_ready_all},
        "split": {
            "pin_s": tot("pin_s"), "sample_s": tot("sample_s"), "encode_broadcast_s": tot("encode_broadcast_s"),
            "stack_params_s": tot("stack_params_s"), "schedule_s": tot("schedule_s"),
            "pin_round0_s": per_round[0]["pin_s"],
            "wait_for_learning_s": tot("wait_for_learning_s", later),
            "detect_and_fetch_s": tot("detect_and_fetch_s", later),
            "meta_learn_s": tot("meta_learn_s", later),
            "meta_learn_calls": tot("meta_learn_calls", later),
            "meta_learn_cpu_s": tot("meta_learn_cpu_s", later),
            "sample_cpu_s": tot("sample_cpu_s"), "encode_broadcast_cpu_s": tot("encode_broadcast_cpu_s"),
            # CPU seconds of the chain's critical path: the referee's sampling and encoding of every
            # round and the meta-agent's learning between rounds. Unlike wall time it does not count
            # waiting for a CPU on a loaded machine (contention still inflates it: caches, SMT); it
            # leaves out the waits between processes (delivery, fetch, wake-ups).
            "critical_path_cpu_s": (tot("sample_cpu_s") + tot("encode_broadcast_cpu_s")
                                    + tot("meta_learn_cpu_s", later)),
            "meta_idle_between_batches_s": tot("meta_idle_between_batches_s", later),
            "delivery_s_median": med([r["delivery_s_median"] for r in later]),
        },
        "per_round": per_round,
        "events": len(events),
    }


def hook_cost(tmp: Path) -> float:
    """Seconds one logged event costs (the hooks' open-append-close of a JSON line)."""
    f = tmp / "cost.jsonl"
    t0 = time.perf_counter()
    for i in range(2000):
        with open(f, "a") as fh:
            fh.write(json.dumps({"ev": "x", "pid": 1, "t0": time.time(), "t1": time.time(), "i": i}) + "\n")
    return (time.perf_counter() - t0) / 2000


# ----------------------------------------------------------------------------- driver

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="K=8, H=20, L=2, 1 repetition (a ~20 s smoke run)")
    p.add_argument("--K", type=int, default=None)
    p.add_argument("--H", type=int, default=None)
    p.add_argument("--L", type=int, default=None)
    p.add_argument("--N", type=int, default=4, help="meta-test chains (test personas at seat 1)")
    p.add_argument("--config", default="ipd_quick.toml", help="experiment config under configs/ (its game, "
                   "seat count, discount and peer learning rate)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=12345, help="embedded generator seed = referee seed")
    p.add_argument("--reps", type=int, default=None, help="repetitions of each (default 7; 1 with --quick)")
    p.add_argument("--warm", type=int, default=2, help="warm embedded calls per embedded process")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per league or embedded run")
    p.add_argument("--keep", action="store_true", help="keep the temporary run directories")
    p.add_argument("--profile", help="write cProfile dumps of the league processes' round threads under "
                   "PROFILE/rep<i>/ (slows the league: for finding where the time goes, not for timings)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "league_overhead.json"))
    p.add_argument("--child-embedded", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.K = args.K or (8 if args.quick else 32)
    args.H = args.H or (20 if args.quick else 50)
    args.L = args.L or (2 if args.quick else 4)
    args.reps = args.reps or (1 if args.quick else 7)
    if args.child_embedded:
        return child_embedded(args)

    import numpy as np
    import torch

    t_start = time.perf_counter()
    info = machine_info()
    load_start = loadavg()
    setting = load_setting(args)
    shape = {"game": setting.cfg.game.name, "n_players": setting.game.n_agents, "config": args.config, "K": args.K, "H": args.H, "L": args.L, "N": args.N, "hidden": args.hidden,
             "seed": args.seed, "dtype": "float32", "method": "meta-mapg", "meta_lr": LRS[:args.L]}
    print(f"league overhead benchmark: {shape}, {args.reps} reps, load {load_start}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="league_overhead_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        policy = setting.meta_policy.init_params(torch.Generator().manual_seed(7))
        ckpt = tmp / "meta.pt"
        torch.save({"best": {"policy": policy, "lr": torch.tensor([LRS[:args.L]])}}, ckpt)
        toml = tmp / "league.toml"
        write_league(args, setting, ckpt, toml)
        per_event = hook_cost(tmp)
        embedded, leagues = [], []
        for rep in range(args.reps):
            order = ("embedded", "league") if rep % 2 == 0 else ("league", "embedded")
            for what in order:
                if what == "embedded":
                    embedded.append(run_embedded(args, ckpt, tmp, env))
                    e = embedded[-1]
                    print(f"  rep {rep} embedded: cold {e['cold_s']:.2f} s, warm "
                          f"{' '.join(f'{w:.2f}' for w in e['warm_s'])} s, load {e['loadavg_after'][0]}", flush=True)
                else:
                    leagues.append(run_league(args, setting, toml, tmp, rep, env))
                    lg = leagues[-1]
                    s = lg["split"]
                    print(f"  rep {rep} league: chain {lg['chain_s']:.2f} s (start-up {lg['startup']['first_round_s']:.1f}"
                          f" s; pin {s['pin_s']:.2f} = wait-for-learning {s['wait_for_learning_s']:.2f} + detect/"
                          f"fetch {s['detect_and_fetch_s']:.2f} + round-0 {s['pin_round0_s']:.2f}; sample "
                          f"{s['sample_s']:.2f}; encode+broadcast {s['encode_broadcast_s']:.2f}), load "
                          f"{lg['loadavg_after'][0]}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    emb_curve = np.array(embedded[0]["curve"])
    curve_diffs = [float(np.abs(np.array(lg["curve"]) - emb_curve).max()) for lg in leagues]
    curve_diffs_emb = [float(np.abs(np.array(e["curve"]) - emb_curve).max()) for e in embedded]
    cold = [e["cold_s"] for e in embedded]
    warm = [med(e["warm_s"]) for e in embedded]
    chain = [lg["chain_s"] for lg in leagues]
    split_keys = list(leagues[0]["split"])
    results = {
        "embedded": {
            "cold_s": summary(cold), "cold_cpu_s": summary([e["cold_cpu_s"] for e in embedded]),
            "warm_s": summary(warm), "warm_cpu_s": summary([med(e["warm_cpu_s"]) for e in embedded]),
            "startup_s": summary([e["startup_s"] for e in embedded]),
            "split_instrumented": {k: med([e["split"][k] for e in embedded]) for k in embedded[0]["split"]},
            "meta_learn_one_chain_step_s": {k: med([e["meta_learn_microbench"][k] for e in embedded])
                                            for k in ("sequential_B1_s", "batched_BN_s")},
            "runs": embedded,
        },
        "league": {
            "chain_s": summary(chain),
            "startup_all_ready_s": summary([lg["startup"]["all_ready_s"] for lg in leagues]),
            "startup_first_round_s": summary([lg["startup"]["first_round_s"] for lg in leagues]),
            "teardown_s": summary([lg["teardown_s"] for lg in leagues]),
            "league_up_wall_s": summary([lg["league_up_wall_s"] for lg in leagues]),
            "coarse_up_wall_minus_all_ready_s": summary([lg["coarse"]["up_wall_minus_all_ready_s"] for lg in leagues]),
            "coarse_results_file_minus_all_ready_s": summary(
                [lg["coarse"]["results_file_minus_all_ready_s"] for lg in leagues]),
            "split_median_s": {k: med([lg["split"][k] for lg in leagues]) for k in split_keys},
            "aborted_matches": [lg["aborted_matches"] for lg in leagues],
            "runs": leagues,
        },
        "ratio_league_over_embedded_cold": med(chain) / med(cold),
        "ratio_league_over_embedded_warm": med(chain) / med(warm),
        "ratio_paired_cold_median": med([c / e for c, e in zip(chain, cold)]),
        "ratio_cpu_critical_path_over_embedded_cold_cpu": (
            med([lg["split"]["critical_path_cpu_s"] for lg in leagues]) / med([e["cold_cpu_s"] for e in embedded])),
        "target_ratio": 1.15,
        "curves": {"embedded_curve": emb_curve.tolist(), "league_max_abs_diff": curve_diffs,
                   "embedded_runs_max_abs_diff": curve_diffs_emb, "agree_within_1e-5": max(curve_diffs) <= 1e-5},
        "hook_cost": {"s_per_event": per_event, "events_per_league_run": med([lg["events"] for lg in leagues]),
                      "s_per_league_run": per_event * med([lg["events"] for lg in leagues])},
    }
    doc = {
        "benchmark": Path(args.out).stem, "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": shape, "reps": args.reps, "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(),
        "results": results,
        "notes": [
            "league chain_s: referee's first play_round start to the last broadcast of round L (timestamps from "
            "benchmarks/_league_hooks/sitecustomize.py, time.time() in each league process).",
            "embedded cold_s: the first adapt() call in a fresh process (torch 1 thread); warm_s: median of the "
            "next calls in that process.",
            "split: pin_s = Referee._pin over all rounds; for rounds 1..L it is wait_for_learning_s (until the "
            "last agent finished learning from the previous round) + detect_and_fetch_s (the agent's answer to the "
            "referee's long poll once it published, and the parameter transfer). meta_learn_s: the meta-agent's "
            "AgentProcess.learn_many time summed over rounds 0..L-1; meta_learn_calls: how many learn_many calls "
            "that took (L when each round's chains are learned as one batched step, as the batch header's "
            "Seat.round_batches lets the agent do).",
            "coarse_*: league up wall time (or the referee results file's mtime) minus the time when every ready "
            "file existed; includes joins (and teardown).",
            "Both sides ran with OMP_NUM_THREADS=1; the league processes set torch.set_num_threads(1) themselves.",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    r = results
    print(f"\nembedded (one process): cold {med(cold):.3f} s, warm {med(warm):.3f} s "
          f"(rollouts {r['embedded']['split_instrumented']['rollouts_s']:.3f} s, rest "
          f"{r['embedded']['split_instrumented']['total_s'] - r['embedded']['split_instrumented']['rollouts_s']:.3f} s)")
    mb = r["embedded"]["meta_learn_one_chain_step_s"]
    print(f"meta-agent learning from one chain step of {args.N} chains: {mb['sequential_B1_s']:.3f} s as {args.N} x B=1 "
          f"(league agent) vs {mb['batched_BN_s']:.3f} s as one B={args.N} step")
    print(f"league chain: {med(chain):.3f} s (start-up to first round {r['league']['startup_first_round_s']['median']:.1f}"
          f" s, teardown {r['league']['teardown_s']['median']:.1f} s)")
    print("league split (medians): " + ", ".join(f"{k} {v:.3f}" for k, v in r["league"]["split_median_s"].items()))
    print(f"ratio league/embedded: {r['ratio_league_over_embedded_cold']:.2f} (cold), "
          f"{r['ratio_league_over_embedded_warm']:.2f} (warm), paired cold {r['ratio_paired_cold_median']:.2f}; "
          f"target <= 1.15")
    print(f"CPU: league critical path {med([lg['split']['critical_path_cpu_s'] for lg in leagues]):.3f} s / "
          f"embedded cold {med([e['cold_cpu_s'] for e in embedded]):.3f} s = "
          f"{r['ratio_cpu_critical_path_over_embedded_cold_cpu']:.2f} (leaves out the waits between processes)")
    print(f"curves agree within 1e-5: {r['curves']['agree_within_1e-5']} (max |diff| {max(curve_diffs):.2e})")
    print(f"wrote {args.out} ({doc['total_wall_s']:.0f} s, load {doc['loadavg_end']})")


if __name__ == "__main__":
    main()
