"""The ``league`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from league.config import ConfigError, load_config


def _train(args: argparse.Namespace) -> int:
    from league.run import results_table, run_experiment

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    summary = run_experiment(cfg, out)
    if args.json:
        print(json.dumps(summary))
    else:
        print(results_table(summary))
        print(f"\nrun directory: {out}")
        for p in summary["plots"]:
            if "adaptation_" in p:
                print(f"adaptation curve: {p}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from league.run import evaluate_run, results_table

    summary = evaluate_run(Path(args.run), args.set, Path(args.out) if args.out else None)
    print(json.dumps(summary) if args.json else results_table(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="league", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="meta-train and meta-test every method x seed of a config (embedded)")
    t.add_argument("config", help="TOML experiment config (see configs/)")
    t.add_argument("--out", help="run directory (default runs/<name>)")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="meta-test a run directory's selected checkpoints again")
    e.add_argument("run", help="run directory written by `league train`")
    e.add_argument("--out", help="output directory (default RUN/evaluation)")
    e.set_defaults(func=_evaluate)
    for p in (t, e):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set train.iterations=10 (repeatable)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"league: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("league: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
