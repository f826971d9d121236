"""The `league` command line and the run-directory contract, end to end on a tiny budget."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from league.config import ConfigError, load_config, to_toml

TINY = [
    "--set", 'methods=["meta-mapg","reinforce"]', "--set", "seeds=[0,1]", "--set", "workers=1",
    "--set", "chain.trajectories=4", "--set", "chain.horizon=8", "--set", "chain.length=2",
    "--set", "train.iterations=2", "--set", "train.meta_batch=2", "--set", "train.validate_every=1",
    "--set", "agent.hidden=8",
]


def _league(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "ipd"
    config = Path(__file__).parents[1] / "configs" / "ipd_quick.toml"
    proc = _league("train", str(config), "--out", str(out), "--json", *TINY, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_train_writes_the_run_directory_contract(tiny_run):
    out, summary = tiny_run
    for name in ("config.toml", "summary.json", "metrics.jsonl"):
        assert (out / name).is_file()
    for m in ("meta-mapg", "reinforce"):
        for s in (0, 1):
            assert (out / "checkpoints" / f"{m}_seed{s}.pt").is_file()
    assert (out / "plots" / "adaptation_all.png").stat().st_size > 10_000
    assert (out / "plots" / "training_curves.png").stat().st_size > 10_000
    assert len(list((out / "tensorboard").glob("*_seed*/events.out.tfevents.*"))) == 4
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["interrupted"] is False and summary["interval"] == "mean ± 95% t-interval over n seeds"
    block = summary["groups"]["cooperating"]["methods"]["meta-mapg"]
    assert len(block["curve_mean"]) == 3 and block["n_seeds"] == 2
    assert summary["budget"]["iterations"] == 2 and summary["seeds"] == [0, 1]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"meta-mapg", "reinforce"}
    # the resolved config reproduces the run's config
    assert load_config(out / "config.toml").chain.horizon == 8


def test_evaluate_reproduces_the_meta_test(tiny_run, tmp_path):
    out, summary = tiny_run
    proc = _league("evaluate", str(out), "--out", str(tmp_path / "ev"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    for group in summary["groups"]:
        for m, s in summary["groups"][group]["methods"].items():
            assert again["groups"][group]["methods"][m]["curve_mean"] == s["curve_mean"]
    assert (tmp_path / "ev" / "plots" / "training_curves.png").is_file()  # from the run's metrics.jsonl
    assert again["missing"] == []


@pytest.mark.slow  # a second training run; determinism stays checked by default in test_meta_training_state.py and below
def test_same_seed_same_numbers(tiny_run, tmp_path):
    out, summary = tiny_run
    config = Path(__file__).parents[1] / "configs" / "ipd_quick.toml"
    proc = _league("train", str(config), "--out", str(tmp_path / "again"), "--json", *TINY,
                   "--set", 'methods=["meta-mapg"]', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["groups"]["all"]["methods"]["meta-mapg"] == summary["groups"]["all"]["methods"]["meta-mapg"]


def test_bad_input_gets_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[chain]\ntrajectorys = 3\n')
    proc = _league("train", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key" in proc.stderr and "trajectories" in proc.stderr
    proc = _league("train", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = _league("evaluate", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "config" in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("methods=[\"maml\"]", "unknown method"),
    ("chain.horizon=0", "chain.horizon"),
    ("chain.gamma=1.5", "gamma"),
    ("train.iterations=abc", "expected int"),
    ("game.name=chess", "unknown game"),
    ("dtype=float16", "dtype"),
])
def test_invalid_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_config_round_trips_through_toml(tmp_path):
    cfg = load_config(Path(__file__).parents[1] / "configs" / "rps.toml", ["train.outer.grad_clip=none"])
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg


def test_every_shipped_config_loads():
    from services.league_config import load_league_config

    paths = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert paths
    for path in paths:
        (load_league_config if path.name.startswith("league_") else load_config)(path)


# -- the command line itself ---------------------------------------------------------------
def _main(*argv: str, capsys) -> tuple[int, str, str]:
    from services.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse's own errors and --help
        code = exit.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_config_show_prints_every_field_with_value_default_and_doc(capsys):
    import dataclasses

    from league.config import ExperimentConfig
    from league.configdoc import rows

    config = Path(__file__).parents[1] / "configs" / "ipd_quick.toml"
    code, out, err = _main("config", "show", str(config), "--set", "train.iterations=7", capsys=capsys)
    assert code == 0, err
    assert "* train.iterations = 7   (default: 100)\n      Meta-updates per (method, seed)." in out
    assert "  train.outer.pcgrad = true   (default: true)\n      Combine the chains' gradients with PCGrad" in out
    every = rows(ExperimentConfig())
    assert len(every) > 25 and all(r.doc for r in every), [r.key for r in every if not r.doc]
    for r in every:
        assert f" {r.key} = " in out
    code, out, _ = _main("config", "show", str(config), "--json", capsys=capsys)
    shown = {r["key"]: r for r in json.loads(out)}
    assert shown["chain.horizon"] == {"key": "chain.horizon", "value": 50, "default": 150, "doc": "H: steps per episode."}
    assert set(shown) == {r.key for r in every} and not dataclasses.is_dataclass(shown["train.outer.grad_clip"]["value"])


def test_config_show_reads_league_configs_and_rejects_unknown_keys(capsys):
    config = Path(__file__).parents[1] / "configs" / "league_ipd.toml"
    code, out, err = _main("config", "show", str(config), capsys=capsys)
    assert code == 0, err
    assert "agents[0].id = " in out and "referee.lease_seconds = " in out and "A member not heard from" in out
    code, out, err = _main("config", "show", str(config), "--set", "referee.roundz=3", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown key(s) ['roundz']" in err


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, subsub in _subparsers(sub):
                    yield f"{name} {inner}", subsub


def test_every_flag_has_help_and_help_shows_defaults(capsys):
    import argparse
    import re

    from services.cli import build_parser

    parser = build_parser()
    for name, sub in _subparsers(parser):
        for action in sub._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"league {name} {'/'.join(action.option_strings) or action.dest}: no help"
    code, out, _ = _main("train", "--help", capsys=capsys)
    out = " ".join(out.split())  # argparse wraps lines
    assert code == 0 and "(default: 10)" in out and "(default: runs/<name>)" in out
    code, out, _ = _main("agent", "--help", capsys=capsys)
    out = " ".join(out.split())
    assert "(default: 0.96)" in out and "(default: learner)" in out and "(default: runs/league/agents)" in out
    # the --set example each command gives is a key its kind of config accepts
    from league.config import load_config
    from services.league_config import load_league_config

    for name, loader, config in (("train", load_config, "ipd_quick.toml"), ("up", load_league_config, "league_ipd.toml"),
                                 ("agent", load_league_config, "league_ipd.toml")):
        code, out, _ = _main(*name.split(), "--help", capsys=capsys)
        example = re.search(r"e\.g\.\s+--set\s+(\S+=\S+?);", " ".join(out.split())).group(1)
        loader(Path(__file__).parents[1] / "configs" / config, [example])


@pytest.mark.parametrize("argv, message", [
    (["agent", "--join", "127.0.0.1:1", "--set", "referee.rounds=3"], "--set overrides fields of a league config: it needs --config"),
    (["agent", "--join", "127.0.0.1:1", "--config", "configs/league_ipd.toml", "--id", "meta", "--lr", "0.5"],
     "--lr would be ignored"),
    (["train", "configs/ipd_quick.toml", "--project", "x"], "--project names the Weights & Biases project of --track"),
    (["train", "configs/ipd_quick.toml", "--iterations", "3"], "unrecognized arguments: --iterations 3"),
    (["evaluate", "results/ipd", "--set", "train.iterations=3"], "train.iterations=3 would be ignored"),
])
def test_wrong_or_ignored_flags_are_one_line_errors(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])
    code, out, err = _main(*argv, capsys=capsys)
    assert code == 2 and message in err
    assert len([line for line in err.splitlines() if line.startswith("league")]) == 1, err


def test_shipped_league_configs_fit_their_agents_checkpoints():
    """Every agent of every shipped league config (the README's main job among them) builds its
    initial state the way its process will: a committed checkpoint that no longer fits the
    league's chains (too few learning rates, another shape) fails here, not at `league up`."""
    from agents.policy_factory import initial_state, make_policy
    from services.league_config import league_env, load_league_config, seats_of

    for config in sorted((Path(__file__).parents[1] / "configs").glob("league_*.toml")):
        cfg = load_league_config(str(config), [])
        r = cfg.referee
        env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
        for spec in cfg.agents:
            policy = make_policy(spec, env, seats_of(spec.role, env.n_agents)[0])
            params, lr = initial_state(spec, policy, env, cfg.population_seed, r.chain_length, r.env)
            assert lr.shape == (1, cfg.referee.chain_length), (config.name, spec.id)
