"""Exact discounted values: LOLA cross-check, closed forms, Monte-Carlo agreement, gradients."""

from __future__ import annotations

import pytest
import torch

from league.games import ipd, matrix_game, rps
from league.games.exact import (
    LOLA_IPD_OFFSET,
    exact_value,
    ipd_probs_from_lola,
    ipd_probs_to_lola,
    state_transition,
)

F64 = torch.float64


def lola_exact_value(p1: torch.Tensor, p2: torch.Tensor, gamma: float) -> tuple[float, float]:
    """LOLA's exact IPD value, written in LOLA's own convention.

    ``p1``, ``p2``: P(cooperate) in ``[s0, CC, CD, DC, DD]`` from each player's own perspective.
    Chain over joint outcomes ``[CC, CD, DC, DD]`` from player 1's perspective; LOLA payoffs.
    """
    outcomes = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (player-1 action, player-2 action), 0 = C

    def own_index(x: int, y: int) -> int:  # own action x, other action y -> 1..4
        return 1 + 2 * x + y

    def joint_row(c1: float, c2: float) -> torch.Tensor:
        return torch.tensor([c1 * c2, c1 * (1 - c2), (1 - c1) * c2, (1 - c1) * (1 - c2)], dtype=F64)

    p0 = joint_row(float(p1[0]), float(p2[0]))
    trans = torch.stack([joint_row(float(p1[own_index(x, y)]), float(p2[own_index(y, x)])) for x, y in outcomes])
    r1 = torch.tensor([-1.0, -3.0, 0.0, -2.0], dtype=F64)
    r2 = torch.tensor([-1.0, 0.0, -3.0, -2.0], dtype=F64)
    m = torch.linalg.inv(torch.eye(4, dtype=F64) - gamma * trans)
    return float(p0 @ m @ r1), float(p0 @ m @ r2)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.96])
def test_matches_lola_exact_ipd_value(gamma):
    gen = torch.Generator().manual_seed(0)
    g = ipd(F64)
    p1 = torch.rand(32, 5, generator=gen, dtype=F64)
    p2 = torch.rand(32, 5, generator=gen, dtype=F64)
    ours = exact_value(g, [ipd_probs_from_lola(p1, 0), ipd_probs_from_lola(p2, 1)], gamma)
    assert ours.shape == (32, 2)
    shift = LOLA_IPD_OFFSET / (1 - gamma)
    for b in range(32):
        v1, v2 = lola_exact_value(p1[b], p2[b], gamma)
        assert abs(ours[b, 0].item() - (v1 + shift)) < 1e-10
        assert abs(ours[b, 1].item() - (v2 + shift)) < 1e-10


def test_lola_conversion_swaps_seat1_and_round_trips():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=F64)
    seat0 = ipd_probs_from_lola(p, 0)
    seat1 = ipd_probs_from_lola(p, 1)
    assert seat0.shape == (5, 2)
    assert seat0[:, 0].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert seat1[:, 0].tolist() == [0.1, 0.2, 0.4, 0.3, 0.5]
    assert torch.allclose(seat1.sum(-1), torch.ones(5, dtype=F64))
    for seat, conv in ((0, seat0), (1, seat1)):
        assert torch.equal(ipd_probs_to_lola(conv, seat), p)


def _constant(p_coop: float, batch: tuple[int, ...] = ()) -> torch.Tensor:
    return ipd_probs_from_lola(torch.full((*batch, 5), p_coop, dtype=F64), 0)


@pytest.mark.parametrize("gamma", [0.0, 0.9, 0.99])
def test_closed_forms(gamma):
    g = ipd(F64)
    allc, alld = _constant(1.0), _constant(0.0)
    v = exact_value(g, [allc, allc], gamma)
    assert torch.allclose(v, torch.tensor([0.5, 0.5], dtype=F64) / (1 - gamma), atol=1e-10)
    v = exact_value(g, [alld, allc], gamma)
    assert torch.allclose(v, torch.tensor([1.5, -1.5], dtype=F64) / (1 - gamma), atol=1e-10)
    v = exact_value(g, [allc, alld], gamma)
    assert torch.allclose(v, torch.tensor([-1.5, 1.5], dtype=F64) / (1 - gamma), atol=1e-10)
    v = exact_value(g, [alld, alld], gamma)
    assert torch.allclose(v, torch.tensor([-0.5, -0.5], dtype=F64) / (1 - gamma), atol=1e-10)


def test_tit_for_tat_vs_always_defect():
    g = ipd(F64)
    # tit-for-tat for seat 0: cooperate at s0, then copy seat 1's last action
    tft = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=F64)
    alld = _constant(0.0)
    gamma = 0.9
    v = exact_value(g, [tft, alld], gamma)
    expected = torch.tensor([-1.5 - 0.5 * gamma / (1 - gamma), 1.5 - 0.5 * gamma / (1 - gamma)], dtype=F64)
    assert torch.allclose(v, expected, atol=1e-10)


def _random_policies(gen, batch, n, s, a, dtype=F64):
    return [torch.softmax(2 * torch.randn(*batch, s, a, generator=gen, dtype=dtype), -1) for _ in range(n)]


def test_state_transition_is_a_markov_chain():
    gen = torch.Generator().manual_seed(3)
    g = rps(n_players=3, dtype=F64)
    probs = _random_policies(gen, (4,), 3, g.n_states, 3)
    P, r = state_transition(g, probs)
    assert P.shape == (4, 28, 28) and r.shape == (4, 28, 3)
    assert torch.allclose(P.sum(-1), torch.ones(4, 28, dtype=F64))
    assert torch.all(P[..., 0] == 0)  # s0 is never re-entered
    assert torch.allclose(r.sum(-1), torch.zeros(4, 28, dtype=F64), atol=1e-12)  # zero-sum
    # row for state s: joint prob of a = (a0, a1, a2) lands on 1 + 9 a0 + 3 a1 + a2
    s, a = 5, (2, 0, 1)
    expected = probs[0][1, s, a[0]] * probs[1][1, s, a[1]] * probs[2][1, s, a[2]]
    assert torch.isclose(P[1, s, 1 + 9 * a[0] + 3 * a[1] + a[2]], expected)


def test_batch_broadcasting_of_shared_policy():
    gen = torch.Generator().manual_seed(4)
    g = ipd(F64)
    meta = _random_policies(gen, (1,), 1, 5, 2)[0]
    opps = _random_policies(gen, (6,), 1, 5, 2)[0]
    v = exact_value(g, [meta.expand(6, 5, 2), opps], 0.9)
    v_bc = exact_value(g, [meta, opps], 0.9)
    assert v.shape == v_bc.shape == (6, 2)
    assert torch.allclose(v, v_bc)
    for b in range(6):
        assert torch.allclose(v[b], exact_value(g, [meta[0], opps[b]], 0.9))
    assert exact_value(g, [meta, opps], 0.9, horizon=7).shape == (6, 2)


def _monte_carlo_returns(game, probs, gamma, horizon, episodes, gen):
    """Discounted returns ``[B, K, n]`` of sampled episodes under tabular policies ``[B, S, A]``."""
    batch = probs[0].shape[0]
    rows = torch.arange(batch)[:, None]
    state = game.reset((batch, episodes))
    ret = torch.zeros(batch, episodes, game.n_agents, dtype=F64)
    for t in range(horizon):
        acts = []
        for p in probs:
            cdf = p[rows, state].cumsum(-1)  # [B, K, A]; inverse-CDF sampling
            u = torch.rand(batch, episodes, 1, generator=gen, dtype=F64)
            acts.append((cdf < u).sum(-1).clamp(max=game.n_actions - 1))
        state, rew = game.step(state, torch.stack(acts, -1))
        ret += gamma**t * rew
    return ret


@pytest.mark.parametrize("game", [ipd(F64), rps(n_players=3, dtype=F64)], ids=["ipd", "rps3"])
def test_finite_horizon_matches_monte_carlo(game):
    gen = torch.Generator().manual_seed(5)
    gamma, horizon, episodes = 0.9, 8, 20000
    probs = _random_policies(gen, (3,), game.n_agents, game.n_states, game.n_actions)
    exact = exact_value(game, probs, gamma, horizon=horizon)
    ret = _monte_carlo_returns(game, probs, gamma, horizon, episodes, gen)
    mean, se = ret.mean(1), ret.std(1) / episodes**0.5
    assert torch.all((mean - exact).abs() <= 4 * se), (mean, exact, se)


def test_finite_horizon_approaches_infinite_value():
    gen = torch.Generator().manual_seed(6)
    g = ipd(F64)
    gamma = 0.9
    probs = _random_policies(gen, (8,), 2, 5, 2)
    v_inf = exact_value(g, probs, gamma)
    r_max = g.payoff.abs().max().item()
    for horizon in (1, 5, 20, 80):
        v_h = exact_value(g, probs, gamma, horizon=horizon)
        bound = gamma**horizon * r_max / (1 - gamma)
        assert torch.all((v_h - v_inf).abs() <= bound + 1e-12)
    # H = 0 is empty, H = 1 is the expected first reward
    assert torch.all(exact_value(g, probs, gamma, horizon=0) == 0)
    _, r = state_transition(g, probs)
    assert torch.allclose(exact_value(g, probs, gamma, horizon=1), r[:, 0])


@pytest.mark.parametrize("horizon", [None, 6])
def test_values_are_differentiable(horizon):
    gen = torch.Generator().manual_seed(7)
    g = matrix_game(torch.randn(2, 3, 3, generator=gen, dtype=F64), "random")
    logits = [torch.randn(2, g.n_states, 3, generator=gen, dtype=F64, requires_grad=True) for _ in range(2)]

    def f(l0, l1):
        return exact_value(g, [torch.softmax(l0, -1), torch.softmax(l1, -1)], 0.8, horizon=horizon)

    assert torch.autograd.gradcheck(f, tuple(logits))


def test_bad_inputs_raise():
    g = ipd(F64)
    p = _constant(0.5)
    with pytest.raises(ValueError, match="one policy per seat"):
        exact_value(g, [p], 0.9)
    with pytest.raises(ValueError, match=r"shape \[\*batch, S=5, A=2\]"):
        exact_value(g, [p, torch.full((4, 2), 0.5, dtype=F64)], 0.9)
    with pytest.raises(ValueError, match="gamma < 1"):
        exact_value(g, [p, p], 1.0)
    with pytest.raises(ValueError, match=r"\[\*batch, 5\]"):
        ipd_probs_from_lola(torch.zeros(4), 0)
    with pytest.raises(ValueError, match="seats 0 and 1"):
        ipd_probs_from_lola(torch.zeros(5), 2)


def _brute_force_value(game, probs, gamma, horizon):
    """``sum over every joint trajectory`` of its probability times its discounted return.

    Written from the conventions alone (seat 0 the most significant digit of a joint action,
    state ``1 + joint`` after it, rewards read from ``payoff[k, a_0, ..., a_{n-1}]``), so it
    shares no code with :func:`exact_value`. ``probs[k]`` is ``[S, A]``; returns ``[n]``."""
    n, a = game.n_agents, game.n_actions
    n_joint = a**n
    joints = torch.cartesian_prod(*[torch.arange(n_joint)] * horizon).reshape(-1, horizon)  # [T, H]
    digits = torch.stack([(joints // a ** (n - 1 - k)) % a for k in range(n)], dim=-1)  # [T, H, n]
    states = torch.cat([torch.zeros_like(joints[:, :1]), 1 + joints[:, :-1]], dim=1)  # [T, H]
    prob = torch.ones(joints.shape[0], dtype=F64)
    for k in range(n):
        prob = prob * probs[k][states, digits[..., k]].prod(-1)
    rewards = game.payoff[(slice(None), *digits.unbind(-1))]  # [n, T, H]
    discounts = gamma ** torch.arange(horizon, dtype=F64)
    returns = (rewards * discounts).sum(-1)  # [n, T]
    assert torch.isclose(prob.sum(), torch.tensor(1.0, dtype=F64))  # every trajectory counted once
    return returns @ prob


@pytest.mark.parametrize("n, horizons", [(2, (1, 2, 3, 4)), (3, (1, 2, 3)), (4, (1, 2, 3))], ids=["rps2", "rps3", "rps4"])
def test_n_player_rps_value_matches_enumeration_of_every_joint_trajectory(n, horizons):
    gen = torch.Generator().manual_seed(10 + n)
    g = rps(n_players=n, dtype=F64)
    probs = _random_policies(gen, (2,), n, g.n_states, 3)  # distinct, state-dependent, asymmetric seats
    gamma = 0.9
    for horizon in horizons:
        exact = exact_value(g, probs, gamma, horizon=horizon)
        for b in range(2):
            brute = _brute_force_value(g, [p[b] for p in probs], gamma, horizon)
            assert torch.allclose(exact[b], brute, atol=1e-12), (n, horizon, exact[b], brute)
        assert torch.allclose(exact.sum(-1), torch.zeros(2, dtype=F64), atol=1e-12)  # zero-sum
