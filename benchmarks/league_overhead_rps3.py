"""Benchmark: the league's overhead on the 3-player RPS meta-test chain (Algorithm 2), the
league of processes against embedded ``league.experiment.adapt``, side by side in one run.

The machinery is ``benchmarks/league_overhead.py``'s (same timing hooks, alternating
repetitions, the same split of the league's time), with ``configs/rps3.toml``: a meta-agent
LSTM and, per chain, 2 persona processes seated as the embedded run seats them (persona
``i`` at seat 1 of chain ``i``, seat 2 from ``Setting.peer_group_indices``), learning at the
config's peer rate. Defaults here: N = 2 chains (4 persona processes + the meta-agent + the
referee), K = 32, H = 50, L = 4, 3 repetitions: a run of a few minutes on 2 CPU cores.
Goal: the league's chain within 1.15x of embedded.

    python benchmarks/league_overhead_rps3.py            # writes benchmarks/league_overhead_rps3.json
    python benchmarks/league_overhead_rps3.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league_overhead  # noqa: E402

DEFAULTS = ["--config", "rps3.toml", "--N", "2", "--reps", "3",
            "--out", str(Path(__file__).resolve().parent / "league_overhead_rps3.json")]

if __name__ == "__main__":
    sys.argv = [sys.argv[0], *DEFAULTS, *sys.argv[1:]]  # flags given later win (argparse keeps the last)
    league_overhead.main()
