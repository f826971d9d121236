"""LOLA, HOLA, COLA and MeVa on differentiable games: each against an independent
computation (finite differences, a limit, a hand-computed value)."""

from __future__ import annotations

import pytest
import torch

from league.games.differentiable import ExactIPD
from league.games.logistic import LogisticGame
from league.meva.cola import consistency_loss
from league.meva.model import NetConfig, PlayerSymmetricNet, sign_flips
from league.meva.rules import (DIFFERENTIABLE_RULES, Hola, LolaLookahead, LolaTaylor, Naive, make_rule,
                               own_gradients, simultaneous_gradient)
from league.meva.train import lambda_returns, meta_value_direction, quantile_huber_loss

GAMES = {"logistic": (LogisticGame(), 1), "ipd": (ExactIPD(), 5)}


def _points(name: str, batch: int = 3, seed: int = 0) -> torch.Tensor:
    game, d = GAMES[name]
    gen = torch.Generator().manual_seed(seed)
    scale = 4.0 if name == "logistic" else 1.0
    return torch.randn(batch, 2, d, generator=gen, dtype=torch.float64) * scale


def _f(game, x: torch.Tensor) -> torch.Tensor:
    return game.values(x)


def _fd_lola_correction(game, x: torch.Tensor, h1: float = 1e-6, h2: float = 1e-4) -> torch.Tensor:
    """``sum_{j != i} (d^2 f_j / dx_i dx_j)^T (d f_i / d x_j)`` per player, from values of f only
    (central differences), for one joint policy ``x [n, d]``."""
    n, d = x.shape
    out = torch.zeros(n, d, dtype=x.dtype)

    def e(p, a):
        v = torch.zeros(n, d, dtype=x.dtype)
        v[p, a] = 1.0
        return v

    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            for a in range(d):
                for b in range(d):
                    ea, eb = e(i, a), e(j, b)
                    pts = torch.stack([x + h2 * ea + h2 * eb, x + h2 * ea - h2 * eb, x - h2 * ea + h2 * eb,
                                       x - h2 * ea - h2 * eb, x + h1 * eb, x - h1 * eb])
                    f = _f(game, pts)
                    mixed = (f[0, j] - f[1, j] - f[2, j] + f[3, j]) / (4 * h2 * h2)
                    df_i = (f[4, i] - f[5, i]) / (2 * h1)
                    out[i, a] += mixed * df_i
    return out


@pytest.mark.parametrize("name", ["logistic", "ipd"])
def test_lola_taylor_correction_matches_finite_differences(name):
    game, _ = GAMES[name]
    x = _points(name)
    alpha = 0.7
    correction = (LolaTaylor(alpha)(game, x) - Naive()(game, x)) / alpha
    fd = torch.stack([_fd_lola_correction(game, p) for p in x])
    print("max |autograd - finite differences|:", (correction - fd).abs().max().item(), "scale", fd.abs().max().item())
    assert torch.allclose(correction, fd, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["logistic", "ipd"])
def test_lola_lookahead_matches_finite_differences_of_its_surrogate(name):
    """``grad_i f_i(x + alpha S_-i^T S_-i naive(x))`` against central differences of that surrogate."""
    game, _ = GAMES[name]
    x = _points(name, batch=2, seed=1)
    alpha, h = 0.5, 1e-6

    def surrogate(y: torch.Tensor) -> torch.Tensor:  # [B, n, d] -> [B, n], f_i at player i's look-ahead
        g = simultaneous_gradient(game, y).detach() if not y.requires_grad else simultaneous_gradient(game, y)
        out = []
        for i in range(2):
            moved = y.clone()
            moved[:, 1 - i] = y[:, 1 - i] + alpha * g[:, 1 - i]
            out.append(game.values(moved)[:, i])
        return torch.stack(out, -1)

    fd = torch.zeros_like(x)
    for i in range(2):
        for a in range(x.shape[-1]):
            e = torch.zeros_like(x)
            e[:, i, a] = h
            fd[:, i, a] = (surrogate(x + e)[:, i] - surrogate(x - e)[:, i]) / (2 * h)
    got = LolaLookahead(alpha)(game, x)
    print("max |LOLA look-ahead - finite differences|:", (got - fd).abs().max().item())
    assert torch.allclose(got, fd, rtol=1e-5, atol=1e-7)


def test_hola_base_cases():
    game = ExactIPD()
    x = _points("ipd")
    assert torch.equal(Hola(0.3, order=0)(game, x), Naive()(game, x))
    assert torch.allclose(Hola(0.3, order=1)(game, x), LolaLookahead(0.3)(game, x), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["logistic", "ipd"])
def test_hola2_reduces_to_lola_as_alpha_vanishes(name):
    """HOLA-2 - LOLA = O(alpha^2) while LOLA - naive = O(alpha): their ratio shrinks like alpha."""
    game, _ = GAMES[name]
    x = _points(name, seed=2)
    naive = Naive()(game, x)
    ratios = []
    for alpha in (1e-2, 1e-3):
        lola, hola2 = LolaLookahead(alpha)(game, x), Hola(alpha, order=2)(game, x)
        ratios.append(((hola2 - lola).norm() / (lola - naive).norm()).item())
    print("|HOLA2 - LOLA| / |LOLA - naive| at alpha 1e-2, 1e-3:", ratios)
    assert ratios[1] < 1e-2
    assert 5 < ratios[0] / ratios[1] < 20  # linear in alpha


def test_lambda_returns_hand_computed():
    rewards = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    next_values = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)
    # Y2 = .5*3 + .5*30 = 16.5; Y1 = .5*2 + .5*(.5*20 + .5*16.5) = 10.125;
    # Y0 = .5*1 + .5*(.5*10 + .5*10.125) = 5.53125
    y = lambda_returns(rewards, next_values, 0.5, 0.5)
    assert torch.allclose(y, torch.tensor([5.53125, 10.125, 16.5], dtype=torch.float64))
    # lambda = 0: one-step normalised TD targets
    assert torch.allclose(lambda_returns(rewards, next_values, 0.5, 0.0), 0.5 * rewards + 0.5 * next_values)
    # lambda = 1: normalised discounted rewards plus the discounted bootstrap of the last state
    g = 0.9
    mc0 = (1 - g) * (1 + g * 2 + g**2 * 3) + g**3 * 30
    assert torch.allclose(lambda_returns(rewards, next_values, g, 1.0)[0], torch.tensor(mc0, dtype=torch.float64))


def test_lambda_returns_per_player_gamma_and_quantiles():
    rewards = torch.tensor([[[1.0], [2.0]]]).expand(2, 2, 1)  # [k=2, n=2, 1]
    next_values = torch.arange(8.0).reshape(2, 2, 2)  # [k, n, M=2]
    gamma = torch.tensor([[0.0], [1.0]])  # player 0 myopic, player 1 pure bootstrap
    y = lambda_returns(rewards, next_values, gamma, 0.0)
    assert torch.allclose(y[:, 0], torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    assert torch.allclose(y[:, 1], next_values[:, 1])


def test_quantile_loss_is_minimised_by_the_empirical_quantiles():
    target = torch.arange(100.0)  # samples 0..99
    m = 4  # levels 0.125, 0.375, 0.625, 0.875
    best = torch.tensor([12.5, 37.5, 62.5, 87.5])  # between the order statistics at each level
    base = quantile_huber_loss(best, target, kappa=0.0)
    for j in range(m):
        for delta in (-3.0, 3.0):
            moved = best.clone()
            moved[j] += delta
            assert quantile_huber_loss(moved, target, kappa=0.0) > base
    # pinball loss value by hand for one prediction: level 0.5, prediction 0, targets {-1, 3}
    assert torch.isclose(quantile_huber_loss(torch.tensor([0.0]), torch.tensor([-1.0, 3.0]), 0.0), torch.tensor(1.0))


def _net(dim: int, out: int, tanh: bool = False) -> PlayerSymmetricNet:
    torch.manual_seed(0)
    return PlayerSymmetricNet(2, dim, out, NetConfig(hidden=16, tanh_head=tanh)).double()


def test_model_own_path_gives_own_gradients_and_same_values():
    net = _net(5, 4)
    x = torch.randn(6, 2, 5, dtype=torch.float64, requires_grad=True)
    c = torch.rand(6, 2, dtype=torch.float64)
    full, own = net(x, c), net(x, c, own_path_only=True)
    assert torch.allclose(full, own)
    ref = own_gradients(full.mean(-1), x)
    (fast,) = torch.autograd.grad(own.mean(-1).sum(), x)
    assert torch.allclose(ref, fast)
    # player symmetry: swapping seats swaps outputs
    assert torch.allclose(net(x.flip(-2), c.flip(-1)), full.flip(-2))


def test_meva_u_with_zero_gamma_is_naive_and_flips_change_the_model():
    game = ExactIPD()
    net = _net(5, 8, tanh=True)
    x = _points("ipd")
    assert torch.allclose(meta_value_direction(net, game, x, 0.0, "U"), Naive()(game, x))
    shaped = meta_value_direction(net, game, x, torch.tensor([0.9, 0.0], dtype=torch.float64), "U")
    assert torch.allclose(shaped[:, 1], Naive()(game, x)[:, 1])  # the naive seat stays naive
    assert not torch.allclose(shaped[:, 0], Naive()(game, x)[:, 0])
    ones = torch.ones(3, 16, dtype=torch.float64)
    assert torch.allclose(net(x, 0.5, ones), net(x, 0.5))
    flips = sign_flips(3, 16, 0.5, torch.Generator().manual_seed(0)).double()
    assert not torch.allclose(net(x, 0.5, flips), net(x, 0.5))


def test_cola_consistency_loss_with_zero_step_is_distance_to_naive():
    game = LogisticGame()
    net = _net(1, 1)
    x = _points("logistic", batch=5)
    g = net(x, torch.zeros(5, 2, dtype=torch.float64))
    expected = ((g - Naive()(game, x)) ** 2).sum((-2, -1)).mean()
    assert torch.allclose(consistency_loss(net, game, x, torch.zeros(5, dtype=torch.float64)), expected)


def test_registry_builds_every_rule():
    game = LogisticGame()
    x = _points("logistic")
    net = _net(1, 4)
    settings = {"naive": {}, "frozen": {}, "lola": {"alpha": 1.0}, "lola-taylor": {"alpha": 1.0}, "hola": {"alpha": 1.0, "order": 2},
                "cola": {"model": _net(1, 1), "alpha": 1.0}, "meva": {"model": net, "gamma": 0.9}}
    assert set(settings) == set(DIFFERENTIABLE_RULES)
    for name, kw in settings.items():
        d = make_rule(name, **kw)(game, x)
        assert d.shape == x.shape and not d.requires_grad and torch.isfinite(d).all()
    with pytest.raises(ValueError, match="unknown update rule"):
        make_rule("sgd")



def test_optimise_mixes_rules_per_seat():
    from league.meva.play import optimise

    game = ExactIPD()
    x0 = _points("ipd")
    lola = LolaLookahead(1.0)
    x1, path = optimise(game, [lola, Naive()], x0, steps=1, lr=0.5, record=torch.tensor([0, 2]))
    expected = x0.clone()
    expected[:, 0] += 0.5 * lola(game, x0)[:, 0]
    expected[:, 1] += 0.5 * Naive()(game, x0)[:, 1]
    assert torch.allclose(x1, expected)
    assert path.shape == (2, 2, 2, 5) and torch.allclose(path[-1], x1[[0, 2]])


def test_meva_u_training_runs_with_every_technique():
    """U formulation with lambda-returns, a target network and sign-flip exploration on the
    exact IPD: two tiny outer iterations run, losses finite, the model moves."""
    from league.meva.train import MeVaConfig, make_meta_value_model, train_meta_value

    torch.set_num_threads(1)
    cfg = MeVaConfig(formulation="U", alpha=2.0, n_quantiles=4, horizon=4, stride=2, lam=0.9, rho=0.99,
                     flip_prob=1 / 16, batch=4, iterations=2, init="normal", init_scale=1.0,
                     net=NetConfig(hidden=8, blocks=2, tanh_head=True))
    game = ExactIPD()
    before = [p.clone() for p in make_meta_value_model(game, cfg).parameters()]
    model, hist = train_meta_value(game, cfg)
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_shipped_meva_configs_load():
    """Every key of configs/meva/logistic.toml is a field of its typed config."""
    from pathlib import Path

    from league.meva.config import load_ipd_config, load_logistic_config

    folder = Path(__file__).parents[1] / "configs" / "meva"
    meva, cola, evaluate = load_logistic_config(folder / "logistic.toml")
    assert meva.formulation == "V" and cola.alpha_max == 10.0 and evaluate["grid"] > 1
    meva, evaluate = load_ipd_config(folder / "ipd.toml")
    assert meva.formulation == "U" and meva.net.tanh_head and evaluate["trials"] > 0
