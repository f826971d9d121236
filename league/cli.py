"""The library's commands of ``league``: embedded experiments (``train``, ``evaluate``),
configs (``config show``) and built-in benchmarks (``bench``). The commands of the league of
processes (``up``, ``agent``, ...) extend this parser from ``services.cli``, the console
script's entry, so that the library imports no services."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable

# league.config (and so torch, ~1 s of CPU) is imported where it is needed, so that
# `league health`, a container healthcheck run every few seconds, stays cheap.


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> int:
    from league.config import load_config
    from league.run import results_table, run_experiment

    if args.project is not None and not args.track:
        raise UsageError("--project names the Weights & Biases project of --track; add --track")
    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the run like Ctrl-C: what finished is kept
    summary = run_experiment(cfg, out, track=args.track, log_every=args.log_every, project=args.project or "league")
    if args.json:
        print(json.dumps(summary))
    else:
        print(results_table(summary))
        print(f"\nrun directory: {out}")
        for p in summary["plots"]:
            if "adaptation_" in p or "training_curves" in p:
                print(f"plot: {p}")
    if summary["interrupted"]:
        print(f"league: interrupted: kept the {len(summary['completed_jobs'])} of "
              f"{len(cfg.methods) * len(cfg.seeds)} jobs that finished in {out}", file=sys.stderr)
        return 130
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from league.run import evaluate_run, results_table

    summary = evaluate_run(Path(args.run), args.set, Path(args.out) if args.out else None)
    print(json.dumps(summary) if args.json else results_table(summary))
    return 0


#: Config kinds besides experiment configs: (recognise a TOML table, load it, its name).
CONFIG_KINDS: list[tuple[Callable[[dict], bool], Callable[[str, list[str]], Any], str]] = []


def _config_show(args: argparse.Namespace) -> int:
    import dataclasses

    from league.config import load_config, read_table
    from league.configdoc import format_rows, rows

    table = read_table(args.config, args.set)
    for is_kind, load, name in CONFIG_KINDS:  # e.g. a league of processes (registered by services.cli)
        if is_kind(table):
            cfg, kind = load(args.config, args.set), name
            break
    else:
        cfg, kind = load_config(args.config, args.set), "experiment config"
    found = rows(cfg)
    if args.json:
        print(json.dumps([{"key": r.key, "value": r.value,
                           "default": None if r.default is dataclasses.MISSING else r.default, "doc": r.doc}
                          for r in found]))
    else:
        print(format_rows(found, f"{args.config} ({kind}{', with overrides' if args.set else ''})"))
    return 0


def overrides(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "set", []) or [])


def fail(message: object) -> int:
    """A process command's failure: one line on stderr, exit status 1."""
    print(f"league: error: {str(message).splitlines()[0] if str(message) else type(message).__name__}",
          file=sys.stderr)
    return 1


class UsageError(ValueError):
    """A flag that is wrong or would be ignored: one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default that means something; ``None`` (unset) and ``False`` switches are
    left out, as are defaults a help text already states."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


EXPERIMENT_SET = "override an experiment config field (repeatable), e.g. --set train.iterations=10; " \
                 "`league config show CONFIG` lists every field"


def _bench_matrix_games(args: argparse.Namespace) -> int:
    """MATRL's Table 1: every matrix-game rule on the random 2x2 game classes (league.matrl)."""
    import dataclasses

    import torch

    from league.matrl.experiments import MatrixGamesConfig, markdown_table, run_matrix_games

    torch.set_num_threads(1)
    base = MatrixGamesConfig()
    cfg = dataclasses.replace(base, games=args.games, seed=args.seed,
                              learner=dataclasses.replace(base.learner, iterations=args.iterations))
    summary = run_matrix_games(cfg, args.out)
    print(json.dumps(summary, indent=2) if args.json else markdown_table(summary), end="")
    return 0


def build_parser(extend: Callable[[Callable[[str, str], argparse.ArgumentParser]], None] | None = None,
                 description: str | None = None) -> argparse.ArgumentParser:
    """The library's commands; ``extend(command)`` adds more (``services.cli`` adds the league's)."""
    parser = argparse.ArgumentParser(prog="league", description=description or __doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)

    t = command("train", "meta-train and meta-test every method x seed of a config (embedded)")
    t.add_argument("config", help="TOML experiment config (see configs/)")
    t.add_argument("--out", help="run directory (default: runs/<name>)")
    t.add_argument("--track", action="store_true",
                   help="also log to Weights & Biases (needs the 'track' extra; WANDB_MODE=offline keeps the run "
                        "on disk under OUT/wandb for a later `wandb sync`)")
    t.add_argument("--project", help="Weights & Biases project of --track (default: league)")
    t.add_argument("--log-every", type=int, default=10, metavar="N",
                   help="where stderr is not a terminal, log a progress line every N iterations of each job")
    t.set_defaults(func=_train)
    e = command("evaluate", "meta-test a run directory's selected checkpoints again")
    e.add_argument("run", help="run directory written by `league train`")
    e.add_argument("--out", help="output directory (default: RUN/evaluation)")
    e.set_defaults(func=_evaluate)
    cfg = command("config", "inspect configs")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = cfg_sub.add_parser("show", formatter_class=HelpFormatter,
                              help="every resolved field of an experiment or league config with its default and doc",
                              description="every resolved field of an experiment or league config (overrides "
                                          "applied) with its default and its documentation")
    show.add_argument("config", help="experiment or league TOML (see configs/)")
    show.set_defaults(func=_config_show)
    b = command("bench", "built-in benchmarks")
    b_sub = b.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    mg = b_sub.add_parser("matrix-games", formatter_class=HelpFormatter,
                          help="MATRL Table 1: IGA, IGA-PP, MATRL, MATRL w/o BR on random 2x2 games",
                          description="convergence rate (95%% Wilson interval) and mean steps to converge of "
                                      "IGA, IGA-PP, MATRL and MATRL w/o BR on random coordination, "
                                      "anti-coordination and cyclic 2x2 games")
    mg.add_argument("--games", type=int, default=1000, help="games per class")
    mg.add_argument("--seed", type=int, default=0, help="seed of the game generator")
    mg.add_argument("--iterations", type=int, default=1000, help="learning iterations per game")
    mg.add_argument("--out", default="results/matrl_matrix_games", help="where summary.json and table.md go")
    mg.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    mg.set_defaults(func=_bench_matrix_games)
    for p in (t, e, show):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=EXPERIMENT_SET)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if extend is not None:
        extend(command)
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command; a ValueError (config, usage) or a missing file is one line and exit 2."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:  # ValueError includes ConfigError and UsageError
        print(f"league: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("league: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
