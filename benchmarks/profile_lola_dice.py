"""Where one LOLA-DiCE update's time goes: cProfile's cumulative times of the league's functions
and torch.profiler's dispatched-op counts, for the update that ``lola_dice_update.py`` times
(two tabular IPD agents, K = 128, H = 150, look-ahead 1, one torch thread).

    PYTHONPATH=. .venv/bin/python benchmarks/profile_lola_dice.py [--updates 3] [--out PATH]

Prints both tables and writes them (with the CPU seconds per update) as JSON, by default to
``benchmarks/profile_lola_dice.json``. Run it with another tree first on ``PYTHONPATH`` to
profile that tree (the worker's update is version-independent).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, loadavg, machine_info  # noqa: E402
from _lola_worker import build_update  # noqa: E402

#: The functions whose cumulative time is reported (the update's stages).
STAGES = ("update", "objective", "observe", "play", "sample_episodes", "score", "inner_objective", "ascend",
          "grad", "sample_categorical", "step")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=3, help="profiled updates (after one warm-up update)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "profile_lola_dice.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import league

    update, params = build_update()
    params = update(params)  # warm-up
    load_start = loadavg()

    c0 = time.process_time()
    for _ in range(args.updates):
        params = update(params)
    cpu_per_update = (time.process_time() - c0) / args.updates

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.updates):
        params = update(params)
    prof.disable()
    stats = pstats.Stats(prof)
    stages: dict[str, float] = {}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name in STAGES and ("league" in file or "_lola_worker" in file or name == "grad"):
            stages[f"{Path(file).name}:{name}"] = max(stages.get(f"{Path(file).name}:{name}", 0.0),
                                                      cumulative / args.updates)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
        params = update(params)
    ops = sorted(((e.key, e.count, e.self_cpu_time_total) for e in tp.key_averages()), key=lambda x: -x[1])
    total_ops = sum(c for _, c, _ in ops)

    doc = {
        "benchmark": "profile_lola_dice", "league": league.__file__, "machine": machine_info(),
        "loadavg_start": load_start, "loadavg_end": loadavg(), "updates": args.updates,
        "cpu_s_per_update_unprofiled": cpu_per_update,
        "cumulative_s_per_update": dict(sorted(stages.items(), key=lambda kv: -kv[1])),
        "dispatched_ops_per_update": total_ops,
        "top_ops": [{"op": k, "count": c, "self_cpu_us": round(t, 1)} for k, c, t in ops[:25]],
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"{league.__file__}: {cpu_per_update:.3f} CPU s per update (unprofiled), load {load_start}")
    print("cumulative seconds per update (cProfile):")
    for k, v in doc["cumulative_s_per_update"].items():
        print(f"  {v:8.4f}  {k}")
    print(f"dispatched ops per update (torch.profiler): {total_ops}")
    for row in doc["top_ops"][:15]:
        print(f"  {row['count']:7d}  {row['op']}  ({row['self_cpu_us'] / 1e3:.1f} ms self)")
    print(text.getvalue()[:4000])


if __name__ == "__main__":
    main()
