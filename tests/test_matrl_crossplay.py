"""The checkpoint cross-play matrix (league.matrl.crossplay, Figure 6) against exact values:
iterated rock-paper-scissors with tabular checkpoints, every (row, column) entry against the
exact expected return by dynamic programming (league.games.exact), and a deterministic pair
whose every episode's score is known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from league.envs import make_env
from league.games.exact import exact_value
from league.matrl.crossplay import cross_play, transitivity
from league.policies import Tabular, make_policy

H = 3  # rounds per episode


def _checkpoint(probs: torch.Tensor) -> list:
    """One checkpoint: both seats play the tabular policy ``probs [S, A]``."""
    p = Tabular.from_probs(probs.unsqueeze(0))
    return [p, p]


def _random_probs(g: torch.Generator, n_states: int) -> torch.Tensor:
    return torch.softmax(1.5 * torch.randn(n_states, 3, generator=g, dtype=torch.float64), -1)


@pytest.mark.parametrize("row_seat", [0, 1])
def test_cross_play_matrix_matches_the_exact_values(row_seat):
    env = make_env("rps", n_players=2, horizon=H, dtype=torch.float64)
    S = env.game.n_states
    policies = [make_policy("tabular", env.observation_spaces[k], env.action_spaces[k], dtype=torch.float64)
                for k in range(2)]
    g = torch.Generator().manual_seed(0)
    row_probs = [_random_probs(g, S) for _ in range(3)]
    col_probs = [_random_probs(g, S) for _ in range(2)]
    out = cross_play(env, policies, [_checkpoint(p) for p in row_probs], [_checkpoint(p) for p in col_probs],
                     episodes=4000, generator=torch.Generator().manual_seed(1), row_seat=row_seat)
    assert out.returns.shape == (3, 2, 4000, 2)
    for margin in (False, True):
        mean, half = out.summary(margin)
        se = half / 1.9607  # t quantile at 3999 degrees of freedom
        for i, pr in enumerate(row_probs):
            for j, pc in enumerate(col_probs):
                seats = [pr, pc] if row_seat == 0 else [pc, pr]
                v = exact_value(env.game, seats, 1.0, horizon=H)
                exact = float(v[row_seat] - (v[1 - row_seat] if margin else 0.0))
                z = (mean[i, j] - exact) / se[i, j]
                assert abs(z) < 4.5, (margin, i, j, float(mean[i, j]), exact, float(z))
        # the grand mean over the 6 cells against the mean of the exact values
        exact_all = []
        for pr in row_probs:
            for pc in col_probs:
                v = exact_value(env.game, [pr, pc] if row_seat == 0 else [pc, pr], 1.0, horizon=H)
                exact_all.append(float(v[row_seat] - (v[1 - row_seat] if margin else 0.0)))
        grand, half_all = out.overall(margin)
        assert grand == pytest.approx(float(mean.mean()))
        assert abs(grand - np.mean(exact_all)) < 4.5 * half_all / 1.96, (grand, np.mean(exact_all), half_all)


def test_a_deterministic_pair_scores_what_the_rules_say():
    """A row that always plays the action that beats the column's fixed action wins every
    round: its return is exactly ``H`` times the win payoff, the column's exactly ``H`` times the
    loss payoff, with no spread; a row against itself in symmetric RPS scores 0 on average."""
    env = make_env("rps", n_players=2, horizon=H, dtype=torch.float64)
    S = env.game.n_states
    policies = [make_policy("tabular", env.observation_spaces[k], env.action_spaces[k], dtype=torch.float64)
                for k in range(2)]
    onehot = lambda a: torch.nn.functional.one_hot(torch.full((S,), a), 3).double()  # noqa: E731
    # a pure policy as finite logits (0 and -40: the other actions have probability 4e-18 each;
    # a log(0) = -inf logit would turn the one-hot observation's product into NaN)
    pure = lambda a: torch.softmax(40 * onehot(a), -1)  # noqa: E731
    # find by the game's own one-shot payoff which action beats action 0
    values = [exact_value(env.game, [onehot(a), onehot(0)], 1.0, horizon=1) for a in range(3)]
    winner = max(range(3), key=lambda a: float(values[a][0]))
    win, loss = float(values[winner][0]), float(values[winner][1])
    assert win > 0 > loss
    uniform = torch.full((S, 3), 1 / 3, dtype=torch.float64)
    out = cross_play(env, policies, [_checkpoint(pure(winner)), _checkpoint(uniform)], [_checkpoint(pure(0)),
                     _checkpoint(uniform)], episodes=2000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out.returns[0, 0, :, 0], torch.full((2000,), H * win, dtype=torch.float64))
    assert torch.equal(out.returns[0, 0, :, 1], torch.full((2000,), H * loss, dtype=torch.float64))
    mean, half = out.summary(margin=True)
    assert mean[0, 0] == H * (win - loss) and half[0, 0] == 0.0
    assert abs(mean[1, 1]) <= half[1, 1] * 4.5 / 1.96 and half[1, 1] > 0  # symmetric game: mean 0
    assert np.all(np.isfinite(half))


def test_cross_play_refuses_other_than_two_seats():
    env = make_env("rps", n_players=3, horizon=2)
    policies = [make_policy("tabular", env.observation_spaces[k], env.action_spaces[k]) for k in range(3)]
    with pytest.raises(ValueError, match="two-seat"):
        cross_play(env, policies, [], [], 1, torch.Generator())


def test_transitivity_counts_pairs_won_by_the_later_checkpoint():
    ordered = np.array([[0, -1, -2], [1, 0, -1], [2, 1, 0]], dtype=float)  # later always wins
    assert transitivity(ordered) == 1.0 and transitivity(-ordered) == 0.0
    cyclic = np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]], dtype=float)  # 0 beats 1 beats 2 beats 0
    assert transitivity(cyclic) == pytest.approx(2 / 6)  # only checkpoint 2 over 0 counts, seen from both seats
    by_hand = [(i, j) for i in range(3) for j in range(3) if i != j and (cyclic[i, j] > 0) == (i > j)]
    assert by_hand == [(0, 2), (2, 0)]
    assert transitivity(np.zeros((4, 4))) == 0.5  # ties count one half


def test_the_shipped_pong_config_builds():
    """configs/matrl/pong.toml (scripts/matrl_pong.py): a valid DeepMATRLConfig on pong-2p, known
    variants, pairs among them."""
    from pathlib import Path

    from league.config import build, read_table
    from league.envs import ENVIRONMENTS
    from league.matrl.deep import VARIANTS, DeepMATRLConfig

    table = read_table(Path(__file__).resolve().parents[1] / "configs" / "matrl" / "pong.toml", [])
    cfg = build(DeepMATRLConfig, table["base"], "base")
    assert cfg.env == "pong-2p" and cfg.env in ENVIRONMENTS and set(table["variants"]) <= set(VARIANTS)
    assert all(set(p) <= set(table["variants"]) for p in table["pairs"])
    assert table["checkpoint_every"] <= cfg.iterations and table["eval_episodes"] >= 2
