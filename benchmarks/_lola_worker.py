"""Worker of benchmarks/lola_dice_update.py: times LOLA-DiCE updates of two tabular IPD agents
with whichever ``league`` is first on the import path. Protocol: one JSON request per stdin
line ({"updates": n}), one JSON answer per stdout line."""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def build_update(K: int = 128, H: int = 150, lookahead: int = 1, seed: int = 0):
    """``(update, params)``: one LOLA-DiCE update of two tabular IPD agents (``update(params)
    -> params``) with whichever ``league`` is first on the import path, and the initial
    parameters. Also used by ``profile_lola_dice.py``."""
    try:  # today's tree: update rules live in league.updates
        from league.updates import LolaDice, ascend
    except ImportError:  # the baseline commit's tree
        from league.chain import LolaDice, ascend
    from league.evaluators import SampledEvaluator
    from league.games import ipd
    from league.policies import Tabular

    game = ipd()
    table = Tabular(n_states=game.n_states, n_actions=game.n_actions)
    generator = torch.Generator().manual_seed(seed)
    evaluator = SampledEvaluator(game, [table, table], K, H, 0.96, generator)
    rule = LolaDice(lookahead=lookahead)
    lr_in = [torch.full((1, 1), 0.3), torch.full((1, 1), 0.3)]  # the peers' look-ahead steps
    lr_out = torch.tensor([0.2])
    params = [table.init_params(generator) for _ in range(2)]

    def update(params):
        """Both agents' LOLA-DiCE steps from the same joint policy (as ``league.chain.unroll``
        takes them): each looks ahead on fresh episodes, then ascends its own return there."""
        live = [{n: v.detach().requires_grad_(True) for n, v in p.items()} for p in params]
        new = []
        for k in range(2):
            objective = rule.objective(evaluator, live, None, k, lr_in, 0)
            new.append({n: v.detach() for n, v in ascend(live[k], objective, lr_out, create_graph=False).items()})
        return new

    return update, params


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--K", type=int, default=128)
    p.add_argument("--H", type=int, default=150)
    p.add_argument("--lookahead", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    import league

    update, params = build_update(args.K, args.H, args.lookahead, args.seed)
    print(json.dumps({"league": league.__file__, "K": args.K, "H": args.H, "lookahead": args.lookahead}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        wall, cpu = [], []
        for _ in range(request["updates"]):
            t0, c0 = time.perf_counter(), time.process_time()
            params = update(params)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        coop = [float(torch.softmax(p["logits"], -1)[0, :, 0].mean()) for p in params]
        print(json.dumps({"wall_s": wall, "cpu_s": cpu, "mean_p_cooperate": coop}), flush=True)


if __name__ == "__main__":
    main()
