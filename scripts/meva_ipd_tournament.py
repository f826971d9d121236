"""IPD tournament of learning rules on the exact differentiable IPD (MeVa paper, Section 5.2).

    .venv/bin/python scripts/meva_ipd_tournament.py [--config configs/meva/ipd_tournament.toml]
        [--out results/meva_ipd_tournament]

Every pairing of two rules plays ``trials`` games, batched as one tensor, of ``steps``
simultaneous learning steps from N(0, 1) logits (common starts across pairings). The game is
symmetric, so each unordered pairing plays once and gives both table entries ("a vs b" is
a's return, "b vs a" b's, from the same trials). Every rule learns on the normalised value
with its own learning rate (``lr`` in its ``[rules.*]`` table); a ``model`` setting names
trained MeVa weights, loaded with the model shape of the ``model_config`` file; a ``start``
names a meta-learned start and lr. Writes ``summary.json`` (row player's final normalised
return, mean and standard error over trials, per pairing; mean P(cooperate) per state;
budget, seeds, machine), ``table.md`` and ``returns.png`` (mean return of both seats per step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.eval.plots import _new_figure, _save  # noqa: E402
from league.eval.stats import mean_se  # noqa: E402
from league.games.differentiable import ExactIPD  # noqa: E402
from league.meva.config import load_ipd_model  # noqa: E402
from league.meva.play import optimise  # noqa: E402
from league.meva.rules import Rule, make_rule  # noqa: E402
from league.run import machine  # noqa: E402

STATES = ["s0", "CC", "CD", "DC", "DD"]


def build_rule(name: str, settings: dict) -> tuple[Rule, float, torch.Tensor | None]:
    """A ``[rules.<name>]`` table -> (the rule, its learning rate, its own start or None).
    ``rule`` names the registry entry (default: the table's name); ``model`` / ``model_config``
    load MeVa weights; a list ``gamma`` becomes the per-seat tensor; ``start`` names a
    meta-learned start (``scripts/meva_ipd_meta_mapg.py``: its logits replace the N(0, 1)
    start of the entry's seat, its lr is the entry's); the other keys are the rule's settings."""
    s = dict(settings)
    start = None
    if "start" in s:
        learned = json.loads(Path(s.pop("start")).read_text())
        start, lr = torch.tensor(learned["logits"]), learned["lr"]
    else:
        lr = s.pop("lr")
    if "model" in s:
        s["model"] = load_ipd_model(s.pop("model_config"), s["model"])
    if isinstance(s.get("gamma"), list):
        s["gamma"] = torch.tensor(s["gamma"])
    return make_rule(s.pop("rule", name), **s), lr, start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/ipd_tournament.toml")
    ap.add_argument("--out", default="results/meva_ipd_tournament")
    args = ap.parse_args()
    torch.set_num_threads(1)
    raw = tomllib.loads(Path(args.config).read_text())
    tc, out = raw["tournament"], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(raw["game"])
    game = ExactIPD(gamma=settings["gamma"], normalised=True)  # what every rule learns on and what is reported
    built = {name: build_rule(name, s) for name, s in raw["rules"].items()}
    rules = {n: b[0] for n, b in built.items()}
    lrs = {n: b[1] for n, b in built.items()}
    starts = {n: b[2] for n, b in built.items()}
    gen = torch.Generator().manual_seed(tc["seed"])
    x0 = torch.randn(tc["trials"], 2, 5, generator=gen) * tc["init_std"]
    table, curves = {}, {}
    t_all = time.perf_counter()
    names = list(rules)
    # The game is symmetric (f_1(x_1, x_2) = f_2(x_2, x_1)) and the starts are i.i.d., so
    # "a vs b" and "b vs a" are one match read from either seat: each unordered pairing plays once.
    for i, row in enumerate(names):
        for col in names[i:]:
            t0 = time.perf_counter()
            x = x0.clone()
            for seat, name in enumerate((row, col)):
                if starts[name] is not None:
                    x[:, seat] = starts[name]  # a meta-learned start replaces the entry's N(0, 1) start
            curve = [game.values(x).mean(0)]
            lr = torch.tensor([[lrs[row]], [lrs[col]]])  # per seat
            for _ in range(tc["steps"]):
                x, _ = optimise(game, [rules[row], rules[col]], x, 1, lr)
                curve.append(game.values(x).mean(0))
            v = game.values(x)  # [trials, 2]
            p_coop = torch.sigmoid(x).mean(0)  # [2, 5]
            seconds = time.perf_counter() - t0
            views = ((row, col, 0, 1),) if row == col else ((row, col, 0, 1), (col, row, 1, 0))
            for a, b, sa, sb in views:  # self-play reports seat 0
                rs, cs = mean_se(v[:, sa].numpy()), mean_se(v[:, sb].numpy())
                table[f"{a} vs {b}"] = {
                    "row": a, "col": b, "trials": v.shape[0], "row_seat": sa,
                    "row_return_mean": rs["mean"], "row_return_se": rs["se"],
                    "col_return_mean": cs["mean"], "col_return_se": cs["se"],
                    "row_p_coop": dict(zip(STATES, p_coop[sa].tolist())),
                    "col_p_coop": dict(zip(STATES, p_coop[sb].tolist())),
                    "seconds": seconds,
                }
                curves[f"{a} vs {b}"] = torch.stack(curve).numpy()[:, [sa, sb]]
            e = table[f"{row} vs {col}"]
            print(f"{row} vs {col}: row {e['row_return_mean']:.3f} +- {e['row_return_se']:.3f}, col "
                  f"{e['col_return_mean']:.3f} +- {e['col_return_se']:.3f} ({seconds:.0f} s)", flush=True)
    lines = ["| row \\ column | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in names:
        cells = [f"{table[f'{r} vs {c}']['row_return_mean']:.3f} ± {table[f'{r} vs {c}']['row_return_se']:.3f}" for c in names]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    caption = (f"Row player's normalised return (LOLA payoff: CC -1, DD -2) after {tc['steps']} steps, mean ± standard "
               f"error over {tc['trials']} trials from N(0, {tc['init_std']:g}) logits; learning rates on the normalised "
               f"value: " + ", ".join(f"{n} {lrs[n]:g}" for n in names) + ".")
    (out / "table.md").write_text(caption + "\n\n" + "\n".join(lines) + "\n")
    fig = _new_figure((3.2 * len(names), 3.0 * len(names)))
    for k, name in enumerate(f"{r} vs {c}" for r in names for c in names):
        c = curves[name]
        ax = fig.add_subplot(len(names), len(names), k + 1)
        ax.plot(np.arange(len(c)), c[:, 0], label="row")
        ax.plot(np.arange(len(c)), c[:, 1], label="column", ls="--")
        ax.set_ylim(-3.05, 0.05), ax.set_title(name, fontsize=8)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"IPD: mean normalised return per learning step ({tc['trials']} trials per pairing)", fontsize=9)
    _save(fig, out / "returns.png")
    summary = {"experiment": "meva_ipd_tournament", "table": table, "config": raw,
               "budget": {"trials_per_pairing": tc["trials"], "steps": tc["steps"],
                          "seconds": time.perf_counter() - t_all,
                          "note": "paper: 1024 trials per pairing; the standard errors are over trials"},
               "seeds": {"starts": tc["seed"]}, "machine": machine()}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
