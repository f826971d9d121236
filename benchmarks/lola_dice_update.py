"""Benchmark: one LOLA-DiCE update of two tabular agents on IPD (K = 128 episodes of H = 150
steps, look-ahead 1, one torch thread), today's code against the code of an earlier commit,
side by side in one run.

One update is both agents' LOLA-DiCE steps from the same joint policy, as
``league.chain.unroll`` takes them: each agent samples fresh episodes, takes its peer's
differentiable policy-gradient step (``create_graph``), samples again under the looked-ahead
peer and ascends its own DiCE return there (4 rollouts of 128 x 150, 2 second-order
gradients). The progress-evaluation rollout that the standard PyTorch port of LOLA-DiCE adds
per update is not part of it. The issue's reference: that port takes 0.42-0.50 s per update
on this kind of machine; the goal is at most 0.25 s.

Each variant runs in its own persistent worker (``_lola_worker.py``; the earlier commit is
exported with ``git archive``, see ``_baseline.py``); repetitions alternate between the two
and the order flips every repetition. Both workers start from the same seed, but since the
table sampler (``league.rollout._play_tables``) they use the random numbers differently
(inverse CDF against the base's per-step Gumbel-max), so they play other episodes of the same
law and ``max_abs_difference_mean_p_cooperate`` is the gap between two independent sampled
runs, not rounding.

    python benchmarks/lola_dice_update.py                 # writes benchmarks/lola_dice_update.json
    python benchmarks/lola_dice_update.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import Worker, export_commit  # noqa: E402
from _bench_common import ROOT, loadavg, machine_info, med, summary  # noqa: E402

BASELINE = "59b7407"  # the code before the speed work (branch speed's base)
REFERENCE_PORT_S = (0.42, 0.50)
GOAL_S = 0.25


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 repetitions of 1 update (a ~30 s smoke run)")
    p.add_argument("--reps", type=int, default=None, help="alternating repetitions (default 8)")
    p.add_argument("--updates", type=int, default=2, help="updates per repetition and variant")
    p.add_argument("--baseline", default=BASELINE, help="commit to compare against")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "lola_dice_update.json"))
    args = p.parse_args()
    reps = args.reps or (2 if args.quick else 8)
    updates = 1 if args.quick else args.updates

    t_start = time.perf_counter()
    info, load_start = machine_info(), loadavg()
    script = Path(__file__).resolve().parent / "_lola_worker.py"
    workers = {"today": Worker(ROOT, script), "before": Worker(export_commit(args.baseline), script)}
    print(f"LOLA-DiCE update: {reps} x {updates} updates per variant, load {load_start}", flush=True)
    samples: dict[str, dict[str, list[float]]] = {k: {"wall_s": [], "cpu_s": []} for k in workers}
    coop: dict[str, list] = {k: [] for k in workers}
    try:
        for w in workers.values():  # warm-up: first update pays for lazy initialisation
            w.call({"updates": 1})
        for r in range(reps):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for name in order:
                out = workers[name].call({"updates": updates})
                samples[name]["wall_s"] += out["wall_s"]
                samples[name]["cpu_s"] += out["cpu_s"]
                coop[name].append(out["mean_p_cooperate"])
            print(f"  rep {r}: " + ", ".join(f"{k} {med(samples[k]['wall_s'][-updates:]):.3f} s "
                                             f"(cpu {med(samples[k]['cpu_s'][-updates:]):.3f})" for k in workers),
                  flush=True)
    finally:
        hello = {k: w.hello for k, w in workers.items()}
        for w in workers.values():
            w.close()
    results = {k: {"wall_s": summary(v["wall_s"]), "cpu_s": summary(v["cpu_s"])} for k, v in samples.items()}
    speedup = {t: med(samples["before"][t]) / med(samples["today"][t]) for t in ("wall_s", "cpu_s")}
    max_coop_diff = max(abs(a - b) for x, y in zip(coop["today"], coop["before"]) for a, b in zip(x, y))
    doc = {
        "benchmark": "lola_dice_update", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": {"game": "ipd", "agents": "two tabular LOLA-DiCE learners", "K": 128, "H": 150, "lookahead": 1,
                    "gamma": 0.96, "lr_in": 0.3, "lr_out": 0.2, "torch_threads": 1, "reps": reps,
                    "updates_per_rep": updates, "baseline_commit": args.baseline},
        "workers": hello, "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(),
        "results": results, "before_over_today": speedup,
        "max_abs_difference_mean_p_cooperate": max_coop_diff,
        "reference_standard_port_s": REFERENCE_PORT_S, "goal_s": GOAL_S,
        "notes": [
            "Seconds per update (both agents), medians over every update after one warm-up update per variant.",
            "today: this tree; before: the baseline commit exported with git archive, each in its own worker "
            "process with one torch thread; repetitions alternate and the order flips every repetition.",
            "cpu_s is the worker's process CPU time; with other jobs on the machine it is the steadier figure.",
            "max_abs_difference_mean_p_cooperate: both variants start from one seed, but today's table sampler "
            "(inverse CDF from one uniform draw per rollout) uses the random numbers differently from the base's "
            "per-step Gumbel-max sampler, so the two play different episodes of the same law: the number is the gap "
            "between two independent sampled runs (the largest over all repetitions), not rounding.",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"today {med(samples['today']['wall_s']):.3f} s (cpu {med(samples['today']['cpu_s']):.3f}), before "
          f"{med(samples['before']['wall_s']):.3f} s (cpu {med(samples['before']['cpu_s']):.3f}); speed-up "
          f"{speedup['wall_s']:.2f}x wall, {speedup['cpu_s']:.2f}x cpu; policies agree to {max_coop_diff:.1e}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
