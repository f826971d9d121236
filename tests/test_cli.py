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
    return subprocess.run([sys.executable, "-m", "league.cli", *args], cwd=cwd, capture_output=True,
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
    assert json.loads((out / "summary.json").read_text()) == summary
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
