"""MATRL meta-game construction plus solve for n = 2..8 players, every solver side by side.

For each n: ``GAMES`` random n-player games with 3 actions per seat (payoffs i.i.d. normal),
random current policies and predicted policies one softmax-logit perturbation away; the exact
``[n, 2, ..., 2]`` meta-game is built (``league.nash.exact_metagame``) and solved by every
applicable solver of ``league.nash.NASH_SOLVERS``, and by the selector MATRL uses for n players
(``pure`` then ``lyapunov``). Every returned profile is checked with ``is_epsilon_nash``
(eps 1e-6), after one untimed warm-up game per n; the JSON records per n and solver the median and max wall time, how many profiles
verified and the largest regret. Random meta-games almost always have a pure equilibrium, so a
second series times the n-player solvers on a game without one: cyclic matching pennies (seat k
wants to match seat k + 1, the last seat to mismatch seat 0; the only equilibrium is everyone
mixing 1/2). Last, the 2-player case as the matrix-game dynamics meet it: the batched closed
form on 1 and on 1000 meta-games against nashpy called game by game. Goal: n = 8 in under 1 s
with a verified equilibrium.

    .venv/bin/python benchmarks/matrl_metagame.py [--games 5] [--out benchmarks/matrl_metagame.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from league.nash import NASH_SOLVERS, exact_metagame, is_epsilon_nash, nash_regret, select_equilibrium, solve_2x2_batched

TWO_PLAYER_ONLY = ("closed-form-2x2", "support-enumeration", "nashpy")
SELECTOR = ("pure", "lyapunov")
EPS = 1e-6


def one_game(n: int, g: torch.Generator) -> tuple[torch.Tensor, float]:
    payoff = torch.randn(n, *([3] * n), generator=g, dtype=torch.float64)
    cur_logits = [torch.randn(3, generator=g, dtype=torch.float64) for _ in range(n)]
    current = [torch.softmax(x, -1) for x in cur_logits]
    predicted = [torch.softmax(x + 0.5 * torch.randn(3, generator=g, dtype=torch.float64), -1) for x in cur_logits]
    t = time.perf_counter()
    meta = exact_metagame(payoff, current, predicted)
    return meta, time.perf_counter() - t


def cyclic_pennies(n: int) -> torch.Tensor:
    """``[n, 2, ..., 2]``: seat k gets 1 for matching seat k + 1 (the last seat: for mismatching
    seat 0), -1 otherwise. No pure equilibrium; the unique one is every seat mixing 1/2."""
    joint = torch.cartesian_prod(*[torch.arange(2)] * n).reshape(*([2] * n), n) if n > 1 else None
    nxt = joint.roll(-1, dims=-1)
    match = joint == nxt
    match[..., -1] = ~match[..., -1]
    return (match.double() * 2 - 1).movedim(-1, 0).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=5, help="random games per n")
    parser.add_argument("--max-players", type=int, default=8)
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in range(2, args.max_players + 1):
        names = [s for s in NASH_SOLVERS if n == 2 or s not in TWO_PLAYER_ONLY]
        times: dict[str, list[float]] = {s: [] for s in [*names, "selector pure>lyapunov"]}
        verified = {s: 0 for s in times}
        regret = {s: 0.0 for s in times}
        build = []
        warm, _ = one_game(n, g)  # untimed: the first call of each shape pays torch's one-off setup
        select_equilibrium(warm, SELECTOR, EPS)
        for _ in range(args.games):
            meta, t_build = one_game(n, g)
            build.append(t_build)
            for s in names:
                t = time.perf_counter()
                prof = NASH_SOLVERS[s](meta)
                times[s].append(time.perf_counter() - t)
                if prof is not None and bool(is_epsilon_nash(meta, prof, EPS)):
                    verified[s] += 1
                    regret[s] = max(regret[s], float(nash_regret(meta, prof).max()))
            t = time.perf_counter()
            prof, _ = select_equilibrium(meta, SELECTOR, EPS)
            times["selector pure>lyapunov"].append(time.perf_counter() - t + build[-1])
            if prof is not None:
                verified["selector pure>lyapunov"] += 1
                regret["selector pure>lyapunov"] = max(regret["selector pure>lyapunov"], float(nash_regret(meta, prof).max()))
        row = {"n": n, "games": args.games, "build_s_median": statistics.median(build), "build_s_max": max(build),
               "solvers": {s: {"median_s": statistics.median(times[s]), "max_s": max(times[s]),
                               "verified": verified[s], "max_regret_of_verified": regret[s]} for s in times}}
        hard = cyclic_pennies(n)
        row["no_pure_equilibrium"] = {}
        for s in ("pure", "lyapunov"):
            t = time.perf_counter()
            prof = NASH_SOLVERS[s](hard)
            dt = time.perf_counter() - t
            ok = prof is not None and bool(is_epsilon_nash(hard, prof, EPS))
            row["no_pure_equilibrium"][s] = {"seconds": dt, "verified": ok,
                                             "max_abs_from_half": max(abs(float(p[0]) - 0.5) for p in prof) if ok else None}
        rows.append(row)
        print(f"n={n} cyclic pennies: " + "; ".join(
            f"{s} {v['seconds'] * 1e3:.1f} ms (verified {v['verified']})" for s, v in row["no_pure_equilibrium"].items()))
        print(f"n={n}: build {row['build_s_median'] * 1e3:.2f} ms; " + "; ".join(
            f"{s} {v['median_s'] * 1e3:.1f} ms ({v['verified']}/{args.games} verified)" for s, v in row["solvers"].items()))
    # the 2-player case as the matrix-game dynamics meet it: 1000 meta-games per iteration
    batch = torch.randn(1000, 2, 2, 2, generator=g, dtype=torch.float64)
    batched = {}
    for size in (1, 1000):
        NASH_SOLVERS["closed-form-2x2"](batch[0])  # warm-up
        t = time.perf_counter()
        w, found = solve_2x2_batched(batch[:size])
        batched[f"closed-form-2x2 batched, {size} games"] = time.perf_counter() - t
    t = time.perf_counter()
    for b in range(100):
        NASH_SOLVERS["nashpy"](batch[b])
    batched["nashpy, 1000 games (100 timed x 10)"] = (time.perf_counter() - t) * 10
    print("2-player batch: " + "; ".join(f"{k} {v * 1e3:.1f} ms" for k, v in batched.items()))
    out = {
        "benchmark": "matrl_metagame",
        "two_player_batch_seconds": batched,
        "what": "exact meta-game build and Nash solve per n (3 actions per seat in the underlying game); "
                "'selector pure>lyapunov' times include the build; verified = eps-Nash with eps 1e-6",
        "eps": EPS,
        "rows": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
