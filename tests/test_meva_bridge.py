"""The differentiable-game rules in the project-wide update-rule registry (league.meva.bridge)
and the pieces of the differentiable league (league.meva.league), against closed forms:
finite differences of the exact IPD values, a hand-computed MeVa direction and training
loss, the Beta(1/2, 1/2) law of the meta-discounts, and the pairings enumerated."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy import stats

from league.config import ConfigError
from league.games.differentiable import make_differentiable_game
from league.meva.bridge import PARAM_NAME, ExactGameEvaluator, ExactGameRule
from league.meva.league import (DiffAgentSpec, DiffLeagueConfig, MetaValueLearner, pairings, run_embedded,
                                seat_update)
from league.meva.model import NetConfig
from league.meva.rules import DIFFERENTIABLE_RULES, make_rule
from league.meva.train import MeVaConfig, beta_half, make_meta_value_model, quantile_huber_loss
from league.updates import UPDATE_RULES, make_update_rule
from services.league_config import AgentSpec, validate_agent

GAME = make_differentiable_game("ipd")


def _x(seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _fd_own_gradient(x: torch.Tensor, k: int, h: float = 1e-6) -> torch.Tensor:
    """Central differences of f_k along x_k, per row: ``[B, d]``."""
    out = torch.zeros(x.shape[0], x.shape[-1], dtype=x.dtype)
    for j in range(x.shape[-1]):
        e = torch.zeros_like(x)
        e[:, k, j] = h
        out[:, j] = (GAME.values(x + e)[:, k] - GAME.values(x - e)[:, k]) / (2 * h)
    return out


def test_every_differentiable_rule_is_an_update_rule_and_sampled_agents_refuse_them():
    for name in DIFFERENTIABLE_RULES:
        assert name in UPDATE_RULES, name
    assert isinstance(make_update_rule("lola", alpha=0.5), ExactGameRule)
    assert not make_update_rule("naive").needs_rollouts
    with pytest.raises(ConfigError, match=r"can follow \(([^)]*)\), not 'naive'") as err:
        validate_agent(AgentSpec(id="a", role="learner", rule="naive"))
    followable = str(err.value).split("(", 1)[1].split(")", 1)[0].split(", ")
    assert "pg" in followable and not set(followable) & set(DIFFERENTIABLE_RULES) - {"frozen"}


@pytest.mark.parametrize("k", [0, 1])
def test_bridged_naive_step_is_the_seats_finite_difference_gradient_step(k):
    x = _x()
    lrs = [torch.tensor([[0.3, 0.7]] * 3, dtype=torch.float64), torch.tensor([[1.5, 2.5]] * 3, dtype=torch.float64)]
    params = [{PARAM_NAME: x[:, i]} for i in range(2)]
    new = make_update_rule("naive").update(ExactGameEvaluator(GAME), params, None, k, lrs, 1, False)[PARAM_NAME]
    want = x[:, k] + lrs[k][:, 1:2] * _fd_own_gradient(x, k)
    assert torch.allclose(new, want, atol=1e-7), (new - want).abs().max()


@pytest.mark.parametrize("name,settings", [("lola", {"alpha": 1.0}), ("lola-taylor", {"alpha": 0.5}),
                                           ("hola", {"alpha": 1.0, "order": 2})])
def test_bridged_rules_step_each_seat_as_the_differentiable_rule(name, settings):
    x = _x(1)
    direction = make_rule(name, **settings)(GAME, x)
    lrs = [torch.full((3, 1), 0.4, dtype=torch.float64), torch.full((3, 1), 0.9, dtype=torch.float64)]
    for k in range(2):
        new = make_update_rule(name, **settings).update(ExactGameEvaluator(GAME), [{PARAM_NAME: x[:, i]} for i in
                                                                                  range(2)], None, k, lrs, 0, False)
        assert torch.equal(new[PARAM_NAME], x[:, k] + lrs[k] * direction[:, k])


def _meva_spec(gamma: float, peer_gamma: float = 0.0) -> DiffAgentSpec:
    return DiffAgentSpec(id="m", rule="meva", lr=0.5, gamma=gamma, peer_gamma=peer_gamma)


@pytest.mark.parametrize("seat", [0, 1])
def test_meva_seat_update_follows_grad_f_plus_its_own_gamma_times_grad_u(seat):
    """``x_i + lr (grad_i f_i + gamma_i grad_i U_i(x; gamma))`` with the agent's gamma at its
    own seat and ``peer_gamma`` at the other, computed by hand with a plain autograd pass."""
    torch.manual_seed(0)
    model = make_meta_value_model(GAME, MeVaConfig(formulation="U", n_quantiles=4, net=NetConfig(hidden=16)))
    x = _x(2, torch.float32)[:1]
    spec = _meva_spec(gamma=0.9, peer_gamma=0.3)
    c = torch.tensor([0.3, 0.3])
    c[seat] = 0.9
    xl = x.clone().requires_grad_(True)
    (grad_u,) = torch.autograd.grad(model(xl, c).mean(-1)[0, seat], xl)
    want = x[:, seat] + 0.5 * (_fd_own_gradient(x.double(), seat).float() + 0.9 * grad_u[:, seat])
    got = seat_update(spec, GAME, x, seat, model, "U")
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # gamma 0 is the naive learner (the shaping experiment's baseline)
    naive = seat_update(_meva_spec(gamma=0.0), GAME, x, seat, model, "U")
    assert torch.allclose(naive, seat_update(DiffAgentSpec(id="n", lr=0.5), GAME, x, seat), atol=1e-7)


def test_beta_half_draws_follow_beta_one_half_one_half():
    g = beta_half((40000,), torch.Generator().manual_seed(3)).double()
    assert abs(float(g.mean()) - 0.5) < 0.01 and abs(float(g.var()) - 0.125) < 0.005
    ks = stats.kstest(g.numpy(), stats.beta(0.5, 0.5).cdf)
    assert ks.pvalue > 1e-3, ks
    assert torch.equal(beta_half((5,), torch.Generator().manual_seed(3)), beta_half((5,), torch.Generator().manual_seed(3)))


def test_pairings_cut_one_seeded_permutation_into_matches():
    ids = ["a", "b", "c", "d", "e"]
    for r in range(6):
        matches = pairings(ids, 2, seed=4, round_=r)
        seated = [a for m in matches for a in m]
        assert len(matches) == 2 and all(len(m) == 2 for m in matches)
        assert len(set(seated)) == 4 and set(seated) < set(ids)  # one sits out
        assert matches == pairings(ids, 2, seed=4, round_=r)
    assert len({tuple(pairings(ids, 2, 4, r)) for r in range(6)}) > 1  # a new draw each round


def test_the_learners_first_step_is_the_quantile_loss_of_the_one_step_u_targets():
    """Transitions ``x0 -> x1``: targets ``(1 - g) f(x1) + g U(x1; theta_bar)`` (lambda plays no
    part in one step; U formulation: the reward is the value *after* the step), gammas
    drawn by ``beta_half`` from the learner's seeded generator."""
    cfg = DiffLeagueConfig(seed=2, train_steps=1,
                           meva=MeVaConfig(formulation="U", n_quantiles=4, net=NetConfig(hidden=16), lam=0.7))
    learner = MetaValueLearner(GAME, cfg)
    fresh = copy.deepcopy(learner.model)
    x0, x1 = _x(4, torch.float32), _x(5, torch.float32)
    gamma = beta_half((3, 2), torch.Generator().manual_seed(cfg.seed + 7919))
    with torch.no_grad():
        y = (1 - gamma).unsqueeze(-1) * GAME.values(x1).unsqueeze(-1) + gamma.unsqueeze(-1) * fresh(x1, gamma)
        want = float(quantile_huber_loss(fresh(x0, gamma), y))
    learner.observe(x0, x1)
    assert learner.train() == pytest.approx(want, rel=1e-6)
    assert learner.version == 2


def test_a_stale_model_changes_the_embedded_league():
    cfg = DiffLeagueConfig(rounds=3, train_steps=2,
                           meva=MeVaConfig(formulation="U", n_quantiles=4, lr=1e-2, net=NetConfig(hidden=16)),
                           agents=(DiffAgentSpec(id="n", init_seed=1), DiffAgentSpec(id="m", rule="meva", init_seed=2)))
    fresh, stale = run_embedded(cfg), run_embedded(cfg, model_version=lambda r: max(r, 1))
    assert float((fresh.x["m"] - stale.x["m"]).abs().max()) > 1e-5


def test_the_committed_league_config_loads_with_naive_lola_and_meva_agents():
    from pathlib import Path

    from league.meva.league import load_diff_league

    cfg = load_diff_league(Path(__file__).resolve().parents[1] / "configs" / "meva" / "league_ipd.toml")
    assert {a.rule for a in cfg.agents} == {"naive", "lola", "meva"} and cfg.meva.formulation == "U"
    with pytest.raises(ValueError, match="not a differentiable-league config"):
        load_diff_league(Path(__file__).resolve().parents[1] / "configs" / "ipd.toml")
