"""Differentiable games against closed forms: the logistic game's stable fixed points and
known exact IPD values (all-C, all-D, tit-for-tat)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import brentq

from league.games.differentiable import DIFFERENTIABLE_GAMES, ExactIPD, make_differentiable_game
from league.games.logistic import LogisticGame
from league.meva.rules import Naive, simultaneous_gradient, step

G = 0.96
BIG = 40.0  # logit of a deterministic choice (sigmoid(40) = 1 - 4e-18)
C, D = BIG, -BIG
ALL_C, ALL_D = [C] * 5, [D] * 5
# own-perspective states [s0, CC, CD, DC, DD]; tit-for-tat copies the opponent's last action
TFT = [C, C, D, C, D]


def _logistic_fixed_point() -> float:
    """The positive diagonal fixed point ``a``: ``4 s'(a) (2 s(a) - 1) = 2 a^3 / 10000``."""
    sig = lambda a: 1.0 / (1.0 + math.exp(-a))  # noqa: E731
    return brentq(lambda a: 4 * sig(a) * (1 - sig(a)) * (2 * sig(a) - 1) - 2 * a**3 / 10000, 1.0, 9.0, xtol=1e-14)


def test_logistic_fixed_points_are_stationary_and_stable():
    game = LogisticGame()
    a = _logistic_fixed_point()
    assert abs(a - 5.03) < 0.01  # the paper's and the authors' notebooks' B = (5.03, 5.03)
    points = torch.tensor([[[a], [a]], [[-a], [-a]]], dtype=torch.float64)
    grad = simultaneous_gradient(game, points)
    assert grad.abs().max() < 1e-10, grad
    for p in points:
        jac = torch.autograd.functional.jacobian(lambda y: simultaneous_gradient(game, y.unsqueeze(0), create_graph=True)[0].flatten(), p)
        eig = torch.linalg.eigvals(jac.reshape(2, 2))
        assert (eig.real < 0).all(), eig  # a stable fixed point of gradient ascent


def test_logistic_naive_ascent_reaches_the_nearer_fixed_point():
    game, a = LogisticGame(), _logistic_fixed_point()
    x = torch.tensor([[[3.0], [1.0]], [[-1.0], [-4.0]], [[8.0], [6.0]]], dtype=torch.float64)
    for _ in range(500):
        x = step(Naive(), game, x, 1.0)
    expected = torch.tensor([a, -a, a], dtype=torch.float64)
    assert torch.allclose(x[:, :, 0], expected.unsqueeze(-1).expand(3, 2), atol=1e-4), x


def test_logistic_values_closed_form_and_symmetry():
    game = LogisticGame()
    x = torch.tensor([[[2.0], [-1.0]]], dtype=torch.float64)
    s1, s2 = torch.sigmoid(torch.tensor(2.0, dtype=torch.float64)), torch.sigmoid(torch.tensor(-1.0, dtype=torch.float64))
    confine = (4.0 * 1.0 + 9.0 * 1.0) / 10000
    expected = torch.stack([-4 * s1 * (1 - 2 * s2) - confine, -4 * s2 * (1 - 2 * s1) - confine])
    assert torch.allclose(game.values(x)[0], expected)
    y = torch.randn(16, 2, 1, dtype=torch.float64) * 5
    assert torch.allclose(game.values(y), game.values(y.flip(-2)).flip(-1))


@pytest.mark.parametrize(
    "p1, p2, expected",
    [
        (ALL_C, ALL_C, (-1.0, -1.0)),
        (ALL_D, ALL_D, (-2.0, -2.0)),
        (ALL_C, ALL_D, (-3.0, 0.0)),
        (TFT, TFT, (-1.0, -1.0)),
        # TFT is exploited once, then both defect forever: (1 - g)(-3) + g(-2) and g(-2)
        (TFT, ALL_D, ((1 - G) * -3 + G * -2, G * -2)),
        # against all-C, TFT cooperates forever
        (TFT, ALL_C, (-1.0, -1.0)),
    ],
)
def test_ipd_known_normalised_values(p1, p2, expected):
    game = ExactIPD()
    x = torch.tensor([[p1, p2]], dtype=torch.float64)
    assert torch.allclose(game.values(x)[0], torch.tensor(expected, dtype=torch.float64), atol=1e-9)
    # the same pair seen with seats swapped
    assert torch.allclose(game.values(x.flip(-2))[0], torch.tensor(expected[::-1], dtype=torch.float64), atol=1e-9)


def test_ipd_unnormalised_and_project_payoff():
    x = torch.tensor([[ALL_C, ALL_D]], dtype=torch.float64)
    lola = ExactIPD(normalised=False).values(x)[0]
    assert torch.allclose(lola, torch.tensor([-3.0, 0.0], dtype=torch.float64) / (1 - G))
    ours = ExactIPD(normalised=False, lola_payoff=False).values(x)[0]
    assert torch.allclose(ours, torch.tensor([-1.5, 1.5], dtype=torch.float64) / (1 - G))


def test_ipd_is_symmetric_in_own_perspective():
    game = ExactIPD()
    x = torch.randn(32, 2, 5, dtype=torch.float64)
    assert torch.allclose(game.values(x), game.values(x.flip(-2)).flip(-1))


def test_registry():
    assert set(DIFFERENTIABLE_GAMES) >= {"logistic", "ipd"}
    assert isinstance(make_differentiable_game("ipd", gamma=0.9), ExactIPD)
    with pytest.raises(ValueError, match="unknown differentiable game"):
        make_differentiable_game("chess")
