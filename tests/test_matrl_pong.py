"""scripts/matrl_pong.py over several seeds: the aggregates over seeds against values computed by
hand, and a tiny two-seed run whose seeds are each the run they would be alone."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from league.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("matrl_pong", ROOT / "scripts" / "matrl_pong.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed(matrices: dict[str, list], trans: dict[str, float]) -> dict:
    """A seed's run as run_seed returns it (only what aggregation reads, plus episode
    half-widths that an aggregate over seeds must ignore)."""
    out = {}
    for name, mean in matrices.items():
        row, col = name.split("_vs_")
        out[name] = {"row": row, "column": col, "mean": mean, "ci95": [[99.0] * len(mean)] * len(mean),
                     "overall_mean": float(np.mean(mean)), "overall_ci95": 99.0}
        if name in trans:
            out[name]["transitivity"] = trans[name]
    return {"matrices": out}


def test_aggregate_over_seeds_matches_hand_values():
    """Three seeds of 2x2 matrices: each pair's grand mean is the mean of the three seed means
    with t_{0.975,2} * sd / sqrt(3); each cell likewise; transitivity per seed; the contrast
    A_vs_C minus B_vs_C the per-seed difference of matrix means."""
    pong = _script()
    seeds = [_seed({"matrl_vs_il": [[1.0, 3.0], [5.0, 7.0]], "il_vs_il": [[0.0, 0.0], [0.0, 4.0]]}, {"il_vs_il": 0.5}),
             _seed({"matrl_vs_il": [[2.0, 2.0], [2.0, 2.0]], "il_vs_il": [[1.0, 1.0], [1.0, 1.0]]}, {"il_vs_il": 1.0}),
             _seed({"matrl_vs_il": [[0.0, 0.0], [0.0, 4.0]], "il_vs_il": [[3.0, 3.0], [3.0, 7.0]]}, {"il_vs_il": 0.0})]
    agg = pong.aggregate_seeds(seeds)
    t2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
    # matrl_vs_il: seed means 4, 2, 1 -> mean 7/3, sd = sqrt(((5/3)^2 + (1/3)^2 + (4/3)^2) / 2) = sqrt(7/3)
    m = agg["matrl_vs_il"]
    assert m["n_seeds"] == 3 and m["overall"]["per_seed"] == [4.0, 2.0, 1.0]
    assert m["overall"]["mean"] == pytest.approx(7 / 3)
    assert m["overall"]["ci95"] == pytest.approx(t2 * math.sqrt(7 / 3) / math.sqrt(3))
    # cell (0, 1): 3, 2, 0 -> mean 5/3, sd sqrt(((4/3)^2 + (1/3)^2 + (5/3)^2) / 2) = sqrt(7/3)
    assert m["mean"][0][1] == pytest.approx(5 / 3)
    assert m["ci95"][0][1] == pytest.approx(t2 * math.sqrt(7 / 3) / math.sqrt(3))
    # cell (1, 1): 7, 2, 4 -> mean 13/3, sd sqrt(((8/3)^2 + (7/3)^2 + (1/3)^2) / 2) = sqrt(19/3)
    assert m["ci95"][1][1] == pytest.approx(t2 * math.sqrt(19 / 3) / math.sqrt(3))
    assert "transitivity" not in m
    t = agg["il_vs_il"]["transitivity"]
    assert t["per_seed"] == [0.5, 1.0, 0.0] and t["mean"] == pytest.approx(0.5)
    assert t["ci95"] == pytest.approx(t2 * 0.5 / math.sqrt(3))
    # matrl_vs_il minus il_vs_il: 4 - 1, 2 - 1, 1 - 4 = 3, 1, -3 -> mean 1/3, sd sqrt((64+4+100)/9/2)
    contrasts = pong.pair_contrasts(seeds)
    assert list(contrasts) == ["matrl_vs_il minus il_vs_il"]
    c = contrasts["matrl_vs_il minus il_vs_il"]
    assert c["per_seed"] == pytest.approx([3.0, 1.0, -3.0]) and c["mean"] == pytest.approx(1 / 3)
    assert c["ci95"] == pytest.approx(t2 * math.sqrt(168 / 18) / math.sqrt(3))


def test_a_config_with_the_single_seed_key_is_refused():
    pong = _script()
    with pytest.raises(ConfigError, match="`seed` is no longer read"):
        pong.read_seeds({"seed": 0}, "pong.toml")
    with pytest.raises(ConfigError, match="non-empty list"):
        pong.read_seeds({"seeds": []}, "pong.toml")
    assert pong.read_seeds({"seeds": [0, 3]}, "pong.toml") == [0, 3]


TINY = ["--set", "base.iterations=2", "--set", "checkpoint_every=1", "--set", "eval_episodes=2",
        "--set", "base.episodes=2", "--set", "base.env_kwargs.max_steps=125"]  # long enough that seeds differ


@pytest.mark.slow  # about 45 s: three tiny runs of Pong
def test_two_seed_run_aggregates_seeds_that_equal_their_single_seed_runs(tmp_path):
    """A tiny run of seeds [0, 1]: each seed's matrices equal that seed run alone; every
    aggregate is the t-interval over the two seeds' numbers (not over episodes or cells);
    --resume reuses the saved seeds and writes the same summary."""
    pytest.importorskip("multi_agent_ale_py")
    pong = _script()
    pong.main(["--out", str(tmp_path / "both"), "--set", "seeds=[0,1]", *TINY])
    pong.main(["--out", str(tmp_path / "one"), "--set", "seeds=[1]", *TINY])
    both = json.loads((tmp_path / "both" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert both["seeds"] == [0, 1] and one["per_seed"]["1"] == both["per_seed"]["1"]
    assert both["per_seed"]["0"] != both["per_seed"]["1"]  # the seeds differ, so the intervals are not all 0
    t1 = 12.706204736174707  # scipy.stats.t.ppf(0.975, 1)
    for name, agg in both["aggregate"].items():
        a, b = (np.asarray(both["per_seed"][s][name]["mean"]) for s in ("0", "1"))
        assert agg["n_seeds"] == 2 and agg["overall"]["per_seed"] == pytest.approx([a.mean(), b.mean()])
        assert agg["overall"]["mean"] == pytest.approx((a.mean() + b.mean()) / 2)
        assert agg["overall"]["ci95"] == pytest.approx(t1 * abs(a.mean() - b.mean()) / 2)
        np.testing.assert_allclose(agg["mean"], (a + b) / 2)
        np.testing.assert_allclose(agg["ci95"], t1 * np.abs(a - b) / 2)
    assert np.isnan(one["aggregate"]["il_vs_il"]["overall"]["ci95"])  # one seed: no interval over seeds
    records = [json.loads(line) for line in (tmp_path / "both" / "records.jsonl").read_text().splitlines()]
    assert {(r["seed"], r["method"]) for r in records} == {(s, v) for s in (0, 1) for v in ("il", "matrl")}
    assert (tmp_path / "both" / "curves.png").stat().st_size > 0 and (tmp_path / "both" / "crossplay.png").exists()
    pong.main(["--out", str(tmp_path / "both"), "--set", "seeds=[0,1]", *TINY, "--resume"])
    again = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert again["aggregate"] == both["aggregate"] and again["seconds_per_seed"] == both["seconds_per_seed"]


def test_training_drift_is_the_paired_quarter_difference_over_seeds():
    """Two seeds of 4 iterations (records out of order): first quarter = iteration 0, last =
    iteration 3; per seed the difference, then mean and t_{0.975,1} * sd / sqrt(2) over seeds."""
    pong = _script()

    def run(values):
        recs = [{"method": "il", "iteration": i, "return_0": v} for i, v in enumerate(values)]
        return {"records": recs[::-1]}

    drift = pong.training_drift([run([1.0, 5.0, 5.0, 2.0]), run([3.0, 0.0, 0.0, 0.0])])
    d = drift["il"]
    assert d["first_quarter"]["per_seed"] == [1.0, 3.0] and d["last_quarter"]["per_seed"] == [2.0, 0.0]
    assert d["last_minus_first"]["per_seed"] == [1.0, -3.0] and d["last_minus_first"]["mean"] == pytest.approx(-1.0)
    assert d["last_minus_first"]["ci95"] == pytest.approx(12.706204736174707 * 2.0)  # sd = 2 sqrt 2, / sqrt 2
