"""Benchmark: one referee with N = 8, 16, 32, 64 agent processes on 127.0.0.1, today's tree
side by side with a baseline commit (``--baseline``, exported with ``git archive``; default
the thread-per-stream referee before ``grpc.aio``), in one run so both see the same machine.

Setting: IPD, N tabular learners (``league agent`` processes, one torch thread each) paired
at random every round, K = 8 episodes x H = 20 steps per match, lease 10 s. For each tree
(baseline first) the script starts ``league referee`` from that tree and adds ``league
agent`` processes until each N in turn is reached (one league grows through the sizes, so
starting 64 agents is paid once per tree; all stopped by their PIDs afterwards); at each N,
once all have joined and three more rounds have been played, it polls ``league status`` for
``--window`` seconds and records:

- seconds per round (median and every round-to-round interval seen by the poller),
- the latency of a Status RPC while the league runs (the referee stays responsive),
- memory of the referee and of every agent: resident (``VmRSS``, counts shared library
  pages in every process), proportional (``Pss``, shared pages split between the processes
  mapping them) and private (pages only this process holds: what one more agent costs),
- thread counts of the referee (the baseline holds one server thread per Subscribe
  stream) and of the agents,
- voided matches during the window, and the load average (the machine may be shared).

    python benchmarks/league_scale.py                       # N = 8,16,32,64, writes benchmarks/league_scale.json
    python benchmarks/league_scale.py --sizes 8 --window 10 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baseline import export_commit  # noqa: E402
from benchmarks._bench_common import ROOT, loadavg, machine_info, med, summary  # noqa: E402
from tests.league_procs import stop, threads, wait_until  # noqa: E402

BASELINE = "054c3f9"
"""The last commit whose referee serves every Subscribe stream on a thread of its own."""

LEAGUE = """
name = "scale"
[referee]
env = "ipd"
trajectories = 8
horizon = 20
rounds = 0
seed = 0
lease_seconds = 10.0
fetch_timeout = 30.0
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_mib(pid: int) -> dict[str, float]:
    """Resident, proportional and private memory of a process (``/proc/PID/smaps_rollup``)."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        kib[key] = int(value.split()[0])
    return {"rss": kib["Rss"] / 1024, "pss": kib["Pss"] / 1024,
            "private": (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024}


def spawn(root: Path, args: list[str], log: Path) -> subprocess.Popen:
    """``league <args>`` run from the source tree ``root``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, cwd=str(root), start_new_session=True)


def measure(address: str, window: float) -> tuple[dict, object, object]:
    """Poll Status for ``window`` seconds: round intervals and Status latencies, plus the
    first and last status seen."""
    from services.processes import referee_status

    intervals, status_s = [], []
    last_round, last_t = None, None
    start = referee_status(address)
    end = time.monotonic() + window
    while time.monotonic() < end:
        t = time.perf_counter()
        st = referee_status(address)
        status_s.append(time.perf_counter() - t)
        now = time.monotonic()
        if last_round is not None and st.round != last_round:
            intervals.append((now - last_t) / (st.round - last_round))
        if st.round != last_round:
            last_round, last_t = st.round, now
        time.sleep(0.05)
    return {"round_interval_seconds": summary(intervals), "status_rpc_seconds": summary(status_s)}, start, \
        referee_status(address)


def run_tree(sizes: list[int], window: float, tmp: Path, root: Path = ROOT) -> list[dict]:
    """One referee from the tree ``root``; agents are added until each size in turn is
    reached (``startup_seconds``: time for the added agents to start and join), then the
    league is measured for ``window`` seconds at that size."""
    from services.processes import referee_status

    tmp = tmp / root.name
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "scale.toml"
    config.write_text(LEAGUE)
    procs, agents, rows = [], [], []
    try:
        ref = spawn(root, ["referee", str(config), "--ready-file", str(tmp / "ref.json"), "--wait-for", "0",
                           "--insecure"], tmp / "ref.log")  # plaintext, as recorded (auth_cost.py measures TLS)
        procs.append(ref)
        info = json.loads(wait_until(lambda: (tmp / "ref.json").exists() and (tmp / "ref.json").read_text(),
                                     120, "the referee"))
        address = info["address"]
        for n in sizes:
            t0 = time.monotonic()
            for i in range(len(agents), n):
                agents.append(spawn(root, ["agent", "--join", address, "--id", f"a{i}", "--env", "ipd", "--role",
                                           "learner", "--init", f"random:{i}", "--lr", "0.5", "--checkpoint-dir",
                                           str(tmp / "ckpt"), "--join-wait", "600", "--insecure"], tmp / f"a{i}.log"))
                procs.append(agents[-1])
            wait_until(lambda: len(referee_status(address).members) == n, 900, f"{n} agents to join")
            started = time.monotonic() - t0
            first = referee_status(address).round
            wait_until(lambda: referee_status(address).round >= first + 3, 300, "three rounds")
            timings, start, final = measure(address, window)
            agent_rss = [rss_mib(p.pid) for p in agents]
            agent_mem = [memory_mib(p.pid) for p in agents]
            agent_threads = [threads(p.pid) for p in agents]
            referee_mem = memory_mib(ref.pid)
            played = final.round - start.round
            rows.append({
                "agents": n, "startup_seconds": round(started, 1), "rounds_in_window": played,
                "window_seconds": window, "seconds_per_round": window / played if played else None, **timings,
                "voided_matches_in_window": final.aborted_matches - start.aborted_matches,
                "members": len(final.members),
                "referee_rss_mib": round(rss_mib(ref.pid), 1), "referee_threads": threads(ref.pid),
                "referee_pss_mib": round(referee_mem["pss"], 1), "referee_private_mib": round(referee_mem["private"], 1),
                "agent_rss_mib": {"median": round(med(agent_rss), 1), "max": round(max(agent_rss), 1),
                                  "total": round(sum(agent_rss), 1)},
                "agent_pss_mib": {"median": round(med([m["pss"] for m in agent_mem]), 1),
                                  "total": round(sum(m["pss"] for m in agent_mem), 1)},
                "agent_private_mib": {"median": round(med([m["private"] for m in agent_mem]), 1),
                                      "total": round(sum(m["private"] for m in agent_mem), 1)},
                "agent_threads_median": med(agent_threads),
                "loadavg_after": loadavg(),
            })
            print(json.dumps({"tree": root.name, **rows[-1]}), flush=True)
    finally:
        stop(procs)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,16,32,64")
    p.add_argument("--window", type=float, default=20.0, help="seconds of rounds measured per size")
    p.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    p.add_argument("--baseline", default=BASELINE, help="commit to compare with ('' to run today's tree only)")
    args = p.parse_args()
    trees = {"current": ROOT, **({"baseline": export_commit(args.baseline)} if args.baseline else {})}
    results = {"setting": "IPD, tabular learners, K=8, H=20, lease 10 s, one referee", "machine": machine_info(),
               "baseline_commit": args.baseline, "current_commit": subprocess.run(
                   ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
               "window_seconds": args.window, "loadavg_before": loadavg(), "sizes": []}
    t0 = time.monotonic()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: run_tree(sizes, args.window, Path(tmp), trees[name]) for name in sorted(trees)}  # baseline first
    results["sizes"] = [{"agents": n, **{name: rows[name][i] for name in sorted(trees)}} for i, n in enumerate(sizes)]
    results["wall_seconds"] = round(time.monotonic() - t0, 1)
    results["loadavg_after"] = loadavg()
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
