"""Iterated matrix games: payoffs, state transitions, shapes, validation, registry."""

from __future__ import annotations

import itertools

import pytest
import torch

from league.games import GAMES, IteratedMatrixGame, ipd, make_game, matrix_game, rps
from league.games.zero_sum import bilinear_zero_sum_values

C, D = 0, 1
R, P, S = 0, 1, 2


def test_ipd_payoff_table_matches_conventions():
    g = ipd()
    expected = {(C, C): (0.5, 0.5), (C, D): (-1.5, 1.5), (D, C): (1.5, -1.5), (D, D): (-0.5, -0.5)}
    for (a0, a1), (r0, r1) in expected.items():
        assert g.payoff[0, a0, a1].item() == r0
        assert g.payoff[1, a0, a1].item() == r1
        _, rew = g.step(g.reset(()), torch.tensor([a0, a1]))
        assert rew.tolist() == [r0, r1]
    assert g.payoff.dtype == torch.float32
    assert ipd(torch.float64).payoff.dtype == torch.float64


def test_ipd_sizes():
    g = ipd()
    assert (g.n_agents, g.n_actions, g.n_states, g.obs_dim) == (2, 2, 5, 5)


def test_ipd_state_transitions_follow_seat0_perspective():
    g = ipd()
    s = g.reset((4,))
    acts = torch.tensor([[C, C], [C, D], [D, C], [D, D]])
    nxt, _ = g.step(s, acts)
    assert nxt.tolist() == [1, 2, 3, 4]  # CC, CD, DC, DD
    nxt, _ = g.step(g.reset(()), torch.tensor([D, C]))
    assert nxt.item() == 3  # DC
    assert nxt.dtype == torch.long


def test_rps_payoff_two_players():
    g = rps()
    wins = [(P, R), (S, P), (R, S)]
    for a, b in wins:
        assert g.payoff[0, a, b].item() == 1.0 and g.payoff[1, a, b].item() == -1.0
        assert g.payoff[0, b, a].item() == -1.0 and g.payoff[1, b, a].item() == 1.0
    for a in range(3):
        assert g.payoff[:, a, a].tolist() == [0.0, 0.0]
    assert (g.n_agents, g.n_actions, g.n_states) == (2, 3, 10)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_rps_is_zero_sum_for_every_joint_action(n):
    g = rps(n_players=n)
    acts = torch.tensor(list(itertools.product(range(3), repeat=n)))
    nxt, rew = g.step(g.reset((acts.shape[0],)), acts)
    assert rew.shape == (3**n, n)
    assert torch.allclose(rew.sum(-1), torch.zeros(3**n), atol=1e-6)  # thirds round in float32
    assert g.n_states == 1 + 3**n
    assert nxt.tolist() == list(range(1, 3**n + 1))


def test_rps_three_players_averages_pairwise_outcomes():
    g = rps(n_players=3)
    # seat 0 paper beats rock (seat 1) and loses to scissors (seat 2)
    _, rew = g.step(g.reset(()), torch.tensor([P, R, S]))
    assert rew.tolist() == [0.0, 0.0, 0.0]
    _, rew = g.step(g.reset(()), torch.tensor([P, R, R]))
    assert rew.tolist() == [1.0, -0.5, -0.5]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_rps_payoff_is_mean_pairwise_outcome_by_enumeration(n):
    """Every joint action: seat k's reward is the mean over j != k of win(+1)/loss(-1)/tie(0)."""
    beats = {(P, R), (S, P), (R, S)}

    def outcome(a, b):
        return 1 if (a, b) in beats else -1 if (b, a) in beats else 0

    g = rps(n_players=n, dtype=torch.float64)
    for joint in itertools.product(range(3), repeat=n):
        for k in range(n):
            outcomes = [outcome(joint[k], joint[j]) for j in range(n) if j != k]
            assert g.payoff[(k, *joint)].item() == pytest.approx(sum(outcomes) / (n - 1))
    assert g.payoff.abs().max().item() == 1.0


def test_batch_shapes_and_observation():
    g = rps()
    gen = torch.Generator().manual_seed(0)
    s = g.reset((3, 4, 5))
    assert s.shape == (3, 4, 5) and s.dtype == torch.long and torch.all(s == 0)
    acts = torch.randint(0, 3, (3, 4, 5, 2), generator=gen)
    nxt, rew = g.step(s, acts)
    assert nxt.shape == (3, 4, 5) and rew.shape == (3, 4, 5, 2)
    assert torch.equal(nxt, 1 + 3 * acts[..., 0] + acts[..., 1])
    assert torch.equal(nxt, 1 + g.joint_index(acts))
    obs = g.observe(nxt)
    assert obs.shape == (3, 4, 5, 10) and obs.dtype == torch.float32
    assert torch.all(obs.sum(-1) == 1)
    assert torch.equal(obs.argmax(-1), nxt)
    assert g.observe(nxt, dtype=torch.float64).dtype == torch.float64
    assert g.reset(7).shape == (7,)


def test_rewards_are_payoff_lookups():
    gen = torch.Generator().manual_seed(1)
    payoff = torch.randn(3, 2, 2, 2, generator=gen, dtype=torch.float64)
    g = matrix_game(payoff, "random3")
    acts = torch.randint(0, 2, (50, 3), generator=gen)
    _, rew = g.step(g.reset((50,)), acts)
    assert rew.dtype == torch.float64
    expected = torch.stack([payoff[k, acts[:, 0], acts[:, 1], acts[:, 2]] for k in range(3)], -1)
    assert torch.equal(rew, expected)
    assert g.name == "random3"


@pytest.mark.parametrize(
    "acts, match",
    [
        (torch.tensor([[0, 2]]), r"actions must lie in \[0, 1\]"),
        (torch.tensor([[-1, 0]]), r"actions must lie in \[0, 1\]"),
        (torch.tensor([[0, 1, 0]]), r"shape \[\*batch, n=2\]"),
        (torch.tensor([[0.0, 1.0]]), r"integer"),
    ],
)
def test_bad_actions_raise(acts, match):
    g = ipd()
    with pytest.raises(ValueError, match=match):
        g.step(g.reset((1,)), acts)
    with pytest.raises(ValueError, match=match):
        g.joint_index(acts)


def test_bad_state_raises():
    g = ipd()
    with pytest.raises(ValueError, match=r"state must lie in \[0, 4\]"):
        g.observe(torch.tensor([5]))
    with pytest.raises(ValueError, match="state shape"):
        g.step(g.reset((2,)), torch.tensor([[0, 1]]))


def test_bad_payoff_raises():
    with pytest.raises(ValueError, match="action axes"):
        IteratedMatrixGame(torch.zeros(2, 2), "bad")
    with pytest.raises(ValueError, match="same size"):
        IteratedMatrixGame(torch.zeros(2, 2, 3), "bad")
    with pytest.raises(ValueError, match="floating"):
        IteratedMatrixGame(torch.zeros(2, 2, 2, dtype=torch.long), "bad")


def test_registry():
    assert set(GAMES) >= {"ipd", "rps"}
    assert make_game("ipd").name == "ipd"
    assert make_game("rps", n_players=3).n_agents == 3
    assert make_game("ipd", n_players=2).n_agents == 2
    with pytest.raises(ValueError, match=r"game 'ipd' takes 2 players, got n_players=3"):
        make_game("ipd", n_players=3)
    with pytest.raises(ValueError, match=r"game 'rps' takes 2\.\.4 players, got n_players=5"):
        make_game("rps", n_players=5)
    with pytest.raises(ValueError, match=r"unknown game 'chess'.*ipd.*rps"):
        make_game("chess")


def test_bilinear_zero_sum_values():
    phi_i = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    phi_j = torch.tensor([[3.0], [0.5]], requires_grad=True)
    v_i, v_j = bilinear_zero_sum_values(phi_i, phi_j)
    assert v_i.shape == (2, 3)
    assert torch.equal(v_i, phi_i * phi_j) and torch.equal(v_j, -v_i)
    (gi,) = torch.autograd.grad(v_i.sum(), phi_i)
    assert torch.allclose(gi, phi_j.sum(0).expand(3))
