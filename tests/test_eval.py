"""Statistics (t critical values, CIs, AUC, summaries) and PNG output of the plot helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from league.eval import auc, mean_ci, summarize, t_critical_975, t_two_sided_tail
from league.eval.plots import plot_action_dynamics, plot_adaptation_curves, plot_auc_vs_k, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- stats


@pytest.mark.parametrize(
    "df, expected",
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (100, 1.9840),
     (10**6, 1.95996)],
)
def test_t_critical_matches_tables(df: int, expected: float) -> None:
    assert t_critical_975(df) == pytest.approx(expected, abs=1e-3)


def test_t_critical_inverts_tail_and_decreases() -> None:
    vals = [t_critical_975(df) for df in range(1, 60)]
    assert all(a > b for a, b in zip(vals, vals[1:]))
    for df in (1, 3, 17):
        assert t_two_sided_tail(t_critical_975(df), df) == pytest.approx(0.05, abs=1e-10)
    # df = 1 is the Cauchy distribution: critical value tan(0.475 * pi) in closed form.
    assert t_critical_975(1) == pytest.approx(math.tan(0.475 * math.pi), abs=1e-9)
    # df = 2 has closed form t = sqrt(2 / (p (2 - p)) - 2) with p = 0.05 two-sided.
    assert t_critical_975(2) == pytest.approx(math.sqrt(2 / (0.05 * 1.95) - 2), abs=1e-9)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_t_critical_rejects_bad_df(bad: float) -> None:
    with pytest.raises(ValueError):
        t_critical_975(bad)  # type: ignore[arg-type]


def test_mean_ci_hand_values() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])  # std (ddof=1) = 1, n = 3
    assert float(mean) == pytest.approx(2.0)
    assert float(half) == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)

    mean, half = mean_ci([[1.0, 10.0], [3.0, 14.0]])  # std = [sqrt 2, sqrt 8], n = 2
    np.testing.assert_allclose(mean, [2.0, 12.0])
    np.testing.assert_allclose(half, [12.706205, 2 * 12.706205], atol=1e-5)


def test_mean_ci_single_seed_is_nan() -> None:
    mean, half = mean_ci([[0.5, -1.0, 2.0]])
    np.testing.assert_allclose(mean, [0.5, -1.0, 2.0])
    assert half.shape == (3,) and np.isnan(half).all()
    with pytest.raises(ValueError):
        mean_ci(np.zeros((0, 3)))


def test_auc_sums_adapted_steps_only() -> None:
    curve = np.array([100.0, 1.0, 2.0, 3.0])  # phi_0's value is excluded
    assert float(auc(curve)) == pytest.approx(6.0)
    batch = np.array([[[0.0, 1.0, 1.0], [5.0, -1.0, 0.5]]])  # [1, 2, L+1=3]
    out = auc(batch)
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out, [[2.0, -0.5]])
    with pytest.raises(ValueError):
        auc(np.array([1.0]))


def test_summarize_values_and_json() -> None:
    curves = {
        "meta-mapg": np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]),  # AUCs 3 and 7
        "lopt": np.array([[0.5, 0.5, 0.5]]),  # single seed: NaN CIs
    }
    s = summarize(curves)
    m = s["meta-mapg"]
    assert m["n_seeds"] == 2
    assert m["curve_mean"] == pytest.approx([0.0, 2.0, 3.0])
    assert m["curve_ci95"][0] == pytest.approx(0.0)
    assert m["curve_ci95"][1] == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2), abs=1e-5)
    assert m["auc_per_seed"] == pytest.approx([3.0, 7.0])
    assert m["auc_mean"] == pytest.approx(5.0)
    assert m["auc_ci95"] == pytest.approx(12.706205 * math.sqrt(8) / math.sqrt(2), abs=1e-5)
    lo = s["lopt"]
    assert lo["n_seeds"] == 1 and lo["auc_mean"] == pytest.approx(1.0)
    assert math.isnan(lo["auc_ci95"]) and all(math.isnan(v) for v in lo["curve_ci95"])
    for stats in s.values():
        assert type(stats["auc_mean"]) is float and type(stats["n_seeds"]) is int
        assert all(type(v) is float for v in stats["curve_mean"] + stats["auc_per_seed"])
    text = json.dumps(s)
    back = json.loads(text)
    assert back["meta-mapg"]["auc_per_seed"] == [3.0, 7.0]


# ---------------------------------------------------------------- plots


def _check_png(path: Path, expected: Path) -> None:
    assert Path(path) == expected and expected.is_file()
    data = expected.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    img = imread(expected)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.shape[2] in (3, 4)


def test_plot_adaptation_curves_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = summarize({
        "Meta-MAPG": rng.normal(size=(3, 5)).cumsum(-1),
        "Meta-PG": rng.normal(size=(3, 5)),
        "LOPT": rng.normal(size=(1, 5)),  # NaN band
    })
    out = tmp_path / "sub" / "curves.png"
    _check_png(plot_adaptation_curves(s, out, "IPD, cooperative personas"), out)


def test_plot_adaptation_curves_long_chain(tmp_path: Path) -> None:
    s = summarize({"a": np.random.default_rng(1).normal(size=(2, 41))})
    out = tmp_path / "long.png"
    _check_png(plot_adaptation_curves(s, out, "long", ylabel="Reward"), out)


def test_plot_auc_vs_k_png(tmp_path: Path) -> None:
    auc_by_k = {
        "Meta-MAPG": {4: (3.0, 0.5), 8: (4.0, 0.3), 16: (5.0, float("nan"))},
        "Meta-PG": {4: (2.0, 0.4), 16: (2.5, 0.2)},  # K=8 missing
    }
    out = tmp_path / "auc_k.png"
    _check_png(plot_auc_vs_k(auc_by_k, out, "AUC vs K"), out)


def test_plot_action_dynamics_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 5, 2))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    states, actions = ["s0", "CC", "CD", "DC", "DD"], ["C", "D"]
    out = tmp_path / "dyn.png"
    _check_png(plot_action_dynamics(probs[0], probs[1], states, actions, out, "IPD dynamics"), out)
    out2 = tmp_path / "dyn_nopeer.png"
    _check_png(plot_action_dynamics(probs[0], None, states, actions, out2, "meta only"), out2)
    with pytest.raises(ValueError):
        plot_action_dynamics(probs[0], probs[1][:, :3], states, actions, out, "bad")


def test_t_quantile_is_scipys() -> None:
    from scipy import stats as scipy_stats

    for df in (1, 2, 5, 30):
        assert t_critical_975(df) == scipy_stats.t.ppf(0.975, df)


def _pixels_near(path: Path, hex_color: str, tol: float = 0.08) -> int:
    img = imread(path)[..., :3]
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - rgb).max(axis=-1) < tol).sum())


def test_adaptation_plot_labels_its_interval_and_hides_no_curve(tmp_path: Path) -> None:
    from PIL import Image

    curves = np.random.default_rng(3).normal(size=(3, 5))
    s = summarize({"meta-mapg": curves, "meta-pg": curves.copy(), "lola-dice": curves[:2]})  # two identical
    out = plot_adaptation_curves(s, tmp_path / "a.png", "IPD")
    text = Image.open(out).text
    assert "mean ± 95% t-interval over n seeds (n per method in the legend)" in text["Title"]
    for label in ("meta-mapg (n=3)", "meta-pg (n=3)", "lola-dice (n=2)", "thin lines: single seeds"):
        assert label in text["Description"]
    # the second of two identical curves does not cover the first: both colours are drawn
    assert _pixels_near(out, "#1f77b4") > 300 and _pixels_near(out, "#ff7f0e") > 300
    one = summarize({"a": curves})
    assert "over n=3 seeds" in Image.open(plot_adaptation_curves(one, tmp_path / "b.png", "x")).text["Title"]


def test_training_curves_plot(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    records = []
    for m in ("meta-mapg", "reinforce"):
        for seed in (0, 1, 2):
            records.append({"method": m, "seed": seed, "iteration": 0, "val_score": float(rng.normal())})
            for it in range(1, 21):
                records.append({"method": m, "seed": seed, "iteration": it, "objective": float(rng.normal()),
                                "grad_norm": float(rng.uniform(0.1, 3)), "seconds": 0.1})
                if it % 10 == 0:
                    records.append({"method": m, "seed": seed, "iteration": it, "val_score": float(rng.normal())})
    out = tmp_path / "training.png"
    _check_png(plot_training_curves(records, out, "ipd"), out)
    text = Image.open(out).text
    assert "mean ± 95% t-interval over n=3 seeds" in text["Title"]
    for label in ("Meta-objective", "Validation score", "Gradient norm (before clipping)", "reinforce (n=3)"):
        assert label in text["Description"]


def test_auc_vs_k_plot_labels_n(tmp_path: Path) -> None:
    from PIL import Image

    out = plot_auc_vs_k({"a": {4: (1.0, 0.5)}}, tmp_path / "k.png", "K", per_seed={"a": {4: [0.6, 1.0, 1.4]}})
    assert "mean ± 95% t-interval over n=3 seeds" in Image.open(out).text["Title"]


def test_mean_se_closed_form():
    from league.eval.stats import mean_se

    out = mean_se([1.0, 2.0, 3.0, 6.0])  # mean 3, sample sd sqrt(14/3), se sqrt(14/3)/2
    assert out["mean"] == pytest.approx(3.0)
    assert out["se"] == pytest.approx((14 / 3) ** 0.5 / 2)
    with pytest.raises(ValueError):
        mean_se([1.0])
