"""Benchmark: the referee's rollout throughput (environment steps per second) against the
embedded chain's rollout, on IPD.

Steps are counted as chains x K x H (every seat of a match counts once), as the referee's
``league_env_steps`` counter does. Shapes (defaults): 8 chains (matches), K = 32 episodes,
H = 50 steps, float32, one torch thread. Two seatings:

* ``lstm_vs_tabular``: a meta-agent LSTM (64 units) against 8 tabular test personas, the
  meta-agent's 8 parameter sets stacked along the chain dimension (one ``policy@<chain>``
  per persona, as a chain round pins them).
* ``tabular_vs_tabular``: 8 pairs of tabular learners (16 learner agents).

Variants, interleaved within every repetition so they see the same machine load:

* ``referee_sample``: ``league.rollout.sample_episodes`` called as ``Referee._play_group``
  calls it: parameters pinned and concatenated per seat, no autograd.
* ``embedded_rollout``: ``league.rollout.rollout`` (sampling plus ``score`` with gradients
  enabled, parameters as autograd leaves), what ``SampledEvaluator.observe`` does at every
  step of the embedded chain.
* ``referee_play_group``: ``Referee._play_group`` on the same pinned parameters (no
  parameter fetch): concatenation, ``sample_episodes``, encoding of every match's
  trajectories into a ``TrajectoryBatch``, bookkeeping and queueing for the broadcast (one
  subscriber queue per agent, drained outside the timed region). The inner
  ``sample_episodes`` call is timed too, so encode + record + broadcast is the difference.

    python benchmarks/referee_rollout.py                 # full run, writes benchmarks/referee_rollout.json
    python benchmarks/referee_rollout.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, loadavg, machine_info, med, summary  # noqa: E402

sys.path.insert(0, str(ROOT))


def build_case(name: str, n: int, hidden: int):
    """(policies, per-seat list of n pinned parameter rows, roles) of one seating."""
    from league.games import make_game
    from league.personas import ipd_personas
    from league.policies import LSTMCategorical, Tabular

    game = make_game("ipd")
    g = torch.Generator().manual_seed(0)
    tab = Tabular(game.n_states, game.n_actions)
    if name == "lstm_vs_tabular":
        lstm = LSTMCategorical(obs_dim=game.obs_dim, out_dim=game.n_actions, hidden=hidden)
        base = lstm.init_params(g)
        # n distinct chain parameter sets (phi_l of each chain differ once the chain adapts)
        metas = [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(n)]
        personas = ipd_personas(0)
        pool = torch.cat([personas.test, personas.train])
        peers = [Tabular.from_probs(pool[i % pool.shape[0]].unsqueeze(0)) for i in range(n)]
        return game, [lstm, tab], [metas, peers], ("meta", "persona"), ("lstm_categorical", "tabular")
    if name == "tabular_vs_tabular":
        rows = [[{"logits": torch.randn(1, game.n_states, game.n_actions, generator=g)} for _ in range(n)]
                for _ in range(2)]
        return game, [tab, tab], rows, ("learner", "learner"), ("tabular", "tabular")
    raise ValueError(name)


def stacked(rows):
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


class PlayGroupHarness:
    """A Referee with fake members (no sockets), the group's matches and pinned params."""

    def __init__(self, game, policies, rows, roles, classes, K: int, H: int):
        from services.league_config import RefereeConfig
        from services.referee import Member, Referee

        n = len(rows[0])
        self.referee = Referee(RefereeConfig(env="ipd", trajectories=K, horizon=H, seed=0), [])
        self.members: dict = {}
        self.seats: list[list[str]] = []
        for b in range(n):
            if roles[0] == "meta":
                ids = ["meta", f"persona{b}"]
            else:
                ids = [f"learner{2 * b}", f"learner{2 * b + 1}"]
            self.seats.append(ids)
            for s, a in enumerate(ids):
                if a not in self.members:
                    self.members[a] = Member(a, "127.0.0.1:0", roles[s], policies[s], classes[s], None, None,
                                             len(self.members), float("inf"))
        self.pinned = {f"m{b}": [(1, rows[s][b]) for s in range(2)] for b in range(n)}
        self.queues = []
        for a in self.members:  # one subscriber per agent, as every agent process subscribes
            q: queue.Queue = queue.Queue()
            self.referee.subscribers[id(q)] = (a, q.put_nowait)  # a stream's deliver(batch)
            self.queues.append(q)
        self.chained = roles[0] == "meta"

    def matches(self):
        from services.referee import Chain, Match

        out = []
        for b, ids in enumerate(self.seats):
            chain = Chain(f"c{b}", ids[0], ids[1]) if self.chained else None
            kinds = ["policy", "policy"]
            out.append(Match(f"m{b}", ids, kinds, [0, 0], chain, 0, chain.chain_id if chain else "", False))
        return out

    def drain(self) -> int:
        n = 0
        for q in self.queues:
            while True:
                try:
                    q.get_nowait()
                    n += 1
                except queue.Empty:
                    break
        return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a ~20 s smoke run)")
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--K", type=int, default=32)
    p.add_argument("--H", type=int, default=50)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per variant (default 100; 30 with --quick)")
    p.add_argument("--cases", default="lstm_vs_tabular,tabular_vs_tabular")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "referee_rollout.json"))
    args = p.parse_args()
    reps = args.reps if args.reps is not None else (30 if args.quick else 100)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    import services.referee as referee_mod
    from league.rollout import rollout, sample_episodes

    inner: list[float] = []
    real_sample = referee_mod.play  # the referee's rollout (league.rollout.play on the game's environment)

    def timed_sample(*a, **kw):
        t0 = time.perf_counter()
        out = real_sample(*a, **kw)
        inner.append(time.perf_counter() - t0)
        return out

    referee_mod.play = timed_sample

    t_start = time.perf_counter()
    info = machine_info()
    load_start = loadavg()
    B, K, H = args.chains, args.K, args.H
    steps = B * K * H
    print(f"referee rollout benchmark: chains={B} K={K} H={H} hidden={args.hidden}, {steps} env steps per call, "
          f"{reps} reps, load {load_start}", flush=True)
    results = {}
    for case in args.cases.split(","):
        game, policies, rows, roles, classes = build_case(case, B, args.hidden)
        harness = PlayGroupHarness(game, policies, rows, roles, classes, K, H)
        gen = torch.Generator().manual_seed(1)

        def referee_sample():
            params = [stacked(r) for r in rows]  # the referee concatenates the pinned rows every round
            return sample_episodes(game, policies, params, B, K, H, gen)

        def embedded_rollout():
            params = [{k: v.detach().requires_grad_(True) for k, v in stacked(r).items()} for r in rows]
            return rollout(game, policies, params, B, K, H, gen)

        def play_group():
            return harness.referee._play_group(harness.matches(), harness.members, harness.pinned, gen)

        variants = {"referee_sample": referee_sample, "embedded_rollout": embedded_rollout,
                    "referee_play_group": play_group}
        wall = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        play_inner: list[float] = []
        for rep in range(reps + 1):  # repetition 0 is a warm-up
            for name, fn in variants.items():
                inner.clear()
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                del out
                if name == "referee_play_group":
                    got = harness.drain()
                    assert got == 2 * B, got  # each match queued for both seats' subscribers
                if rep == 0:
                    continue
                wall[name].append(dt)
                cpu[name].append(dc)
                if name == "referee_play_group":
                    play_inner.append(inner[0])
            if rep:
                print(f"  {case} rep {rep}: " + "  ".join(f"{v} {wall[v][-1]:.3f}s" for v in variants), flush=True)
        res = {}
        for name in variants:
            w = med(wall[name])
            res[name] = {"s_per_call": summary(wall[name]), "cpu_s_per_call": summary(cpu[name]),
                         "env_steps_per_s": steps / w, "env_steps_per_cpu_s": steps / med(cpu[name])}
        res["referee_play_group"]["inner_sample_s"] = summary(play_inner)
        res["referee_play_group"]["encode_record_broadcast_s_median_of_differences"] = med(
            [a - b for a, b in zip(wall["referee_play_group"], play_inner)])
        res["embedded_over_referee_sample"] = med(wall["embedded_rollout"]) / med(wall["referee_sample"])
        res["play_group_over_referee_sample"] = med(wall["referee_play_group"]) / med(wall["referee_sample"])
        results[case] = res

    doc = {
        "benchmark": "referee_rollout", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": {"game": "ipd", "chains": B, "K": K, "H": H, "hidden": args.hidden, "dtype": "float32",
                    "env_steps_per_call": steps, "torch_threads": 1, "reps": reps, "warmup": 1},
        "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(), "results": results,
        "notes": [
            "env steps = chains x K x H (a match's seats count once), the referee's league_env_steps.",
            "Variants run interleaved within each repetition (same load); medians over repetitions after 1 warm-up.",
            "embedded_rollout = sample_episodes + score with autograd leaves (the graph is built, no backward).",
            "referee_play_group = Referee._play_group with pre-pinned parameters: torch.cat of the pinned rows, "
            "sample_episodes, encode_tensor of obs/actions/rewards/dones per match, _record, _broadcast into one "
            "queue per agent; no gRPC send (the Subscribe streams serialise from those queues in gRPC threads).",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"\n{'':<20}{'variant':<20}{'s/call':>9}{'steps/s':>11}{'steps/CPU-s':>13}")
    for case, res in results.items():
        for v in ("referee_sample", "embedded_rollout", "referee_play_group"):
            r = res[v]
            print(f"{case:<20}{v:<20}{r['s_per_call']['median']:>9.3f}{r['env_steps_per_s']:>11.0f}"
                  f"{r['env_steps_per_cpu_s']:>13.0f}")
        print(f"{case:<20}embedded/referee sample {res['embedded_over_referee_sample']:.2f}x, play_group/sample "
              f"{res['play_group_over_referee_sample']:.2f}x, encode+record+broadcast "
              f"{res['referee_play_group']['encode_record_broadcast_s_median_of_differences'] * 1e3:.1f} ms")
    print(f"wrote {args.out} ({doc['total_wall_s']:.0f} s, load {doc['loadavg_end']})")


if __name__ == "__main__":
    main()
