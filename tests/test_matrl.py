"""league.matrl: the trust-region (IGA) step against hand-computed closed forms, the MATRL
iteration's pieces, measured convergence on matching pennies, the random game classes, the
importance-weighted meta-game against the exact one, and the Table 1 runner."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from league.matrl.estimators import importance_weighted_metagame, returns_to_go
from league.matrl.experiments import (
    MATCHING_PENNIES,
    MatrixGamesConfig,
    initial_policies,
    matching_pennies,
    run_matrix_games,
    wilson_interval,
)
from league.matrl.matrix import (
    MATRIX_RULES,
    MatrixMATRLConfig,
    ascent_step,
    matrl_step,
    metagame_weights,
    project_simplex,
    run_dynamics,
    trust_region_step,
)
from league.matrl.random_games import GAME_CLASSES, game_equilibria, random_games
from league.nash import action_values, exact_metagame, is_epsilon_nash, normal_form_value

F64 = torch.float64


def two(p: float) -> torch.Tensor:
    return torch.tensor([[p, 1 - p]], dtype=F64)


def test_project_simplex_matches_known_projections():
    v = torch.tensor([[0.5, 0.5], [1.2, 0.1]], dtype=F64)
    assert project_simplex(v).tolist() == [[0.5, 0.5], [1.0, 0.0]]
    three = torch.tensor([[0.3, 0.3, 0.3], [2.0, 0.0, -1.0], [0.6, 0.5, -0.2]], dtype=F64)
    # (0.3,0.3,0.3) -> +1/30 each; (2,0,-1) -> (1,0,0); (0.6,0.5,-0.2) -> subtract 0.05 from the top two
    want = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.55, 0.45, 0.0]], dtype=F64)
    assert torch.allclose(project_simplex(three), want)


def test_ascent_step_with_two_actions_is_iga():
    """p' = clip(p + lr * (Q_0 - Q_1), 0, 1), IGA's update on p = P(action 0)."""
    for p, g0, g1 in [(0.6, 1.0, -0.5), (0.95, 3.0, 0.0), (0.1, -2.0, 4.0)]:
        got = ascent_step(two(p), torch.tensor([[g0, g1]], dtype=F64), 0.02)
        want = min(1.0, max(0.0, p + 0.02 * (g0 - g1)))
        assert got[0, 0].item() == pytest.approx(want, abs=1e-15)
        assert got.sum().item() == pytest.approx(1.0)


def test_trust_region_step_matches_hand_computed_two_step_closed_form():
    """Seat 0 of a 2x2 game, A0 = [[2, 0], [1, 3]], pi_0 = (0.6, 0.4) against pi_1 = (0.3, 0.7):
    Q_0 = (0.6, 2.4), dV/dp = -1.8. Step 1 (KL gradient zero at q = pi): q1 = 0.6 - lr 1.8.
    Step 2: d/dq [-beta KL(pi || q)] = beta (p0 / q1 - (1 - p0) / (1 - q1)) on p."""
    payoff = torch.tensor([[[[2.0, 0.0], [1.0, 3.0]], [[0.0, 1.0], [1.0, 0.0]]]], dtype=F64)
    pols = [two(0.6), two(0.3)]
    lr, beta = 0.05, 0.5
    q1 = 0.6 + lr * (0.6 - 2.4)
    q2 = q1 + lr * ((0.6 - 2.4) + beta * (0.6 / q1 - 0.4 / (1 - q1)))
    one = trust_region_step(payoff, pols, MatrixMATRLConfig(lr=lr, kl_coef=beta, trust_steps=1))
    assert one[0][0, 0].item() == pytest.approx(q1, abs=1e-14)
    got = trust_region_step(payoff, pols, MatrixMATRLConfig(lr=lr, kl_coef=beta, trust_steps=2))
    assert got[0][0, 0].item() == pytest.approx(q2, abs=1e-14)
    assert q2 == pytest.approx(0.429003601, abs=1e-9)  # the KL term pulled it back from 0.42
    # seat 1: Q_1 = B^T pi_0 with B = [[0, 1], [1, 0]] -> (0.4, 0.6); one IGA step
    assert one[1][0, 0].item() == pytest.approx(0.3 + lr * (0.4 - 0.6), abs=1e-14)


def test_predicted_policy_improves_against_fixed_peers():
    g = torch.Generator().manual_seed(0)
    payoff = torch.randn(50, 2, 2, 2, generator=g, dtype=F64)
    pols = [torch.softmax(torch.randn(50, 2, generator=g, dtype=F64), -1) for _ in range(2)]
    pred = trust_region_step(payoff, pols, MatrixMATRLConfig())
    base = normal_form_value(payoff, pols)
    assert bool((normal_form_value(payoff, [pred[0], pols[1]])[:, 0] >= base[:, 0] - 1e-15).all())
    assert bool((normal_form_value(payoff, [pols[0], pred[1]])[:, 1] >= base[:, 1] - 1e-15).all())


def test_matrl_step_uses_verified_metagame_nash_and_best_responds_to_the_mixture():
    cfg = MatrixMATRLConfig()
    payoff = MATCHING_PENNIES.unsqueeze(0)
    pols = initial_policies(cfg.start, 1)
    new, info = matrl_step(payoff, pols, cfg)
    pred = trust_region_step(payoff, pols, cfg)
    meta = exact_metagame(payoff, pols, pred)
    w = info.weights[0]
    assert bool(info.found[0])
    assert bool(is_epsilon_nash(meta[0], [torch.stack([1 - w[k], w[k]]) for k in range(2)], 1e-9))
    mix = [(1 - w[k]) * pols[k] + w[k] * pred[k] for k in range(2)]
    # best response of seat 0 against seat 1's mixture: dV_0/dp = 4 q_bar - 2 in matching pennies
    q_bar = mix[1][0, 0].item()
    assert new[0][0, 0].item() == pytest.approx(pols[0][0, 0].item() + cfg.br_lr * (4 * q_bar - 2), abs=1e-14)


def test_matrl_best_response_is_against_the_mixture_not_the_predicted_policies():
    """Over 2000 random 2x2 games and policies, a few meta-games have an equilibrium where a seat
    keeps its current policy (w = 0). For every game the update equals an IGA step of size br_lr
    against the peer's mixture (1 - w) pi + w pi_hat, built here by hand, and in the games with
    w < 1 that differs from a step against the predicted policy."""
    g = torch.Generator().manual_seed(0)
    cfg = MatrixMATRLConfig()
    payoff = torch.randn(2000, 2, 2, 2, generator=g, dtype=F64)
    p = torch.rand(2000, 2, generator=g, dtype=F64)
    pols = [torch.stack([p[:, k], 1 - p[:, k]], -1) for k in range(2)]
    new, info = matrl_step(payoff, pols, cfg)
    pred = trust_region_step(payoff, pols, cfg)
    w = info.weights
    assert bool(info.found.all())
    keeps = (w < 1).any(-1) & ((pred[0] - pols[0]).abs().sum(-1) > 1e-6) & ((pred[1] - pols[1]).abs().sum(-1) > 1e-6)
    assert int(keeps.sum()) >= 10, "too few meta-games where a seat keeps its current policy"
    for k in range(2):
        j = 1 - k
        mix_j = (1 - w[:, j : j + 1]) * pols[j] + w[:, j : j + 1] * pred[j]
        peers = [pols[0], mix_j] if k == 0 else [mix_j, pols[1]]
        want = ascent_step(pols[k], action_values(payoff, peers)[k], cfg.br_lr)
        assert torch.allclose(new[k], want, atol=1e-14)
    # against the predicted policies instead, the games where a peer keeps its policy move differently
    vs_pred = ascent_step(pols[0], action_values(payoff, [pols[0], pred[1]])[0], cfg.br_lr)
    differs = (vs_pred - new[0]).abs().amax(-1) > 1e-9
    assert bool(differs[w[:, 1] < 1].any())


def test_no_verified_metagame_equilibrium_keeps_the_current_policy():
    """With a solver that finds nothing, w = 0: the mixture is the current policy, so MATRL's best
    response is an IGA step of size br_lr against the current peers."""
    payoff = MATCHING_PENNIES.unsqueeze(0)
    for solvers in [("closed-form-2x2",), ("support-enumeration", "pure")]:
        # an impossible tolerance: no profile verifies, on the batched and the per-game path
        cfg = MatrixMATRLConfig(solvers=solvers, nash_eps=-1.0)
        pols = initial_policies(cfg.start, 1)
        meta = exact_metagame(payoff, pols, trust_region_step(payoff, pols, cfg))
        w, found = metagame_weights(meta, cfg)
        assert w.tolist() == [[0.0, 0.0]] and not bool(found[0])
    new, _ = matrl_step(payoff, pols, cfg)
    iga = trust_region_step(payoff, pols, dataclasses.replace(cfg, lr=cfg.br_lr))
    assert all(torch.allclose(a, b) for a, b in zip(new, iga))


def test_matrl_converges_on_matching_pennies_where_iga_cycles():
    """Measured on the exact dynamics from (0.9, 0.2) with the paper's settings, 1500 iterations:
    MATRL ends inside the tolerance and keeps shrinking; IGA never comes near the equilibrium in
    the last 500 (it circles on the border of the square)."""
    cfg = dataclasses.replace(MatrixMATRLConfig(), iterations=1500)
    runs = matching_pennies(cfg, ("iga", "matrl"))
    matrl, iga = runs["matrl"]["sq_distance"], runs["iga"]["sq_distance"]
    print(f"matrl: first below tol at {int((matrl < cfg.tolerance).nonzero()[0, 0])}, final {matrl[-1].item():.2e}; "
          f"iga: min over the last 500 {iga[1000:].min().item():.3f}")
    assert matrl[-1] < 1e-3 and matrl[-1] < matrl[1000] / 2
    assert iga[1000:].min() > 0.1


def test_rules_run_batched_and_freeze_at_convergence():
    games, _ = random_games("coordination", 8, seed=1)
    cfg = dataclasses.replace(MatrixMATRLConfig(), iterations=150)
    eq = game_equilibria(games)
    for rule in MATRIX_RULES:
        out = run_dynamics(rule, games, initial_policies(cfg.start, 8), cfg, eq, record=True)
        steps, traj = out["steps"], out["trajectory"]
        assert traj.shape == (151, 8, 2, 2)
        for b in torch.nonzero(steps > 0).flatten().tolist():
            s = int(steps[b])
            assert torch.equal(traj[s, b], traj[-1, b]), f"{rule}: game {b} moved after converging"


def test_matrl_is_generic_in_players_three_player_game():
    """A 3-player 2-action game runs through the per-game solver path; every meta-game weight
    used is a verified equilibrium of that meta-game."""
    g = torch.Generator().manual_seed(2)
    payoff = torch.randn(2, 3, 2, 2, 2, generator=g, dtype=F64)
    cfg = MatrixMATRLConfig(solvers=("pure", "lyapunov"), nash_eps=1e-6)
    pols = [two(0.7).expand(2, 2).clone(), two(0.4).expand(2, 2).clone(), two(0.5).expand(2, 2).clone()]
    for _ in range(3):
        pred = trust_region_step(payoff, pols, cfg)
        meta = exact_metagame(payoff, pols, pred)
        new, info = matrl_step(payoff, pols, cfg)
        for b in range(2):
            if bool(info.found[b]):
                prof = [torch.stack([1 - info.weights[b, k], info.weights[b, k]]) for k in range(3)]
                assert bool(is_epsilon_nash(meta[b], prof, 1e-6))
        pols = new
    assert all(bool(torch.allclose(p.sum(-1), torch.ones(2, dtype=F64))) for p in pols)


@pytest.mark.parametrize("name", list(GAME_CLASSES))
def test_random_game_classes_have_their_best_response_pattern(name):
    games, info = random_games(name, 300, seed=3)
    assert games.shape == (300, 2, 2, 2) and info["skipped"] == 0
    a, b = games[:, 0], games[:, 1]
    row = (a[:, 0, 0] > a[:, 1, 0]) & (a[:, 1, 1] > a[:, 0, 1])
    row_opp = (a[:, 0, 0] < a[:, 1, 0]) & (a[:, 1, 1] < a[:, 0, 1])
    col = (b[:, 0, 0] > b[:, 0, 1]) & (b[:, 1, 1] > b[:, 1, 0])
    col_opp = (b[:, 0, 0] < b[:, 0, 1]) & (b[:, 1, 1] < b[:, 1, 0])
    n_eq = game_equilibria(games)[1].sum(-1)
    if name == "coordination":
        assert bool((row & col).all()) and bool((n_eq == 3).all())
    elif name == "anti-coordination":
        assert bool((row_opp & col_opp).all()) and bool((n_eq == 3).all())
    else:
        assert bool(((row & col_opp) | (row_opp & col)).all()) and bool((n_eq == 1).all())
        assert 100 < int((row & col_opp).sum()) < 200  # both cyclic orientations, about half each
    # every payoff stays a draw from [0, 1)
    assert bool(((games >= 0) & (games < 1)).all())


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)  # textbook: 0.4902, 0.9433
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def _sample_episodes(payoff, current, predicted, K, H, g):
    """K episodes of H rounds of a stateless matrix game under the current policies; log-probs of
    the taken actions under current and predicted policies."""
    n = len(current)
    acts = torch.stack([torch.multinomial(p, K * H, replacement=True, generator=g).reshape(K, H) for p in current], -1)
    rewards = payoff[(slice(None), *acts.unbind(-1))].permute(1, 2, 0)  # [K, H, n]
    lp_cur = torch.stack([current[k].log()[acts[..., k]] for k in range(n)], -1)
    lp_pred = torch.stack([predicted[k].log()[acts[..., k]] for k in range(n)], -1)
    return rewards, lp_cur, lp_pred


@pytest.mark.parametrize("n,H,gamma", [(2, 1, 1.0), (3, 1, 1.0), (2, 4, 0.9)])
def test_importance_weighted_metagame_within_standard_errors_of_exact(n, H, gamma):
    """Sampled estimate vs exact entries. For a stateless repeated game the exact entry is
    sum_{t<H} gamma^t (V_i(corner) - V_i(current)), since actions do not change later states."""
    g = torch.Generator().manual_seed(100 + n + H)
    payoff = torch.randn(n, *([3] * n), generator=g, dtype=F64)
    current = [torch.softmax(torch.randn(3, generator=g, dtype=F64), -1) for _ in range(n)]
    predicted = [torch.softmax(c.log() + 0.4 * torch.randn(3, generator=g, dtype=F64), -1) for c in current]
    exact = exact_metagame(payoff, current, predicted) * sum(gamma**t for t in range(H))
    rewards, lp_cur, lp_pred = _sample_episodes(payoff, current, predicted, 20000, H, g)
    est, se = importance_weighted_metagame(rewards, lp_cur, lp_pred, gamma)
    z = ((est - exact) / se.clamp_min(1e-12)).abs()
    z[(slice(None), *([0] * n))] = 0.0  # the all-current corner is exactly 0 in both
    print(f"n={n} H={H}: max |z| = {z.max().item():.2f} over {z.numel()} entries; max se {se.max().item():.4f}")
    assert z.max() < 4.5
    assert torch.all(est[(slice(None), *([0] * n))] == 0)


def test_returns_to_go():
    r = torch.tensor([[[1.0], [2.0], [3.0]]], dtype=F64)
    assert returns_to_go(r, 0.5)[0, :, 0].tolist() == [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]


def test_run_matrix_games_writes_summary_and_table(tmp_path):
    cfg = MatrixGamesConfig(games=20, learner=MatrixMATRLConfig(iterations=60))
    summary = run_matrix_games(cfg, tmp_path)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["results"]) == set(cfg.rules)
    for rule, per in saved["results"].items():
        for name, e in per.items():
            assert e["games"] == 20 and 0 <= e["converged"] <= 20
            assert e["rate"] == e["converged"] / 20
            lo, hi = e["rate_ci95_wilson"]
            assert lo <= e["rate"] <= hi
    table = (tmp_path / "table.md").read_text()
    assert "| matrl |" in table and "Wilson" in table
    assert math.isclose(summary["results"]["iga"]["coordination"]["rate"],
                        saved["results"]["iga"]["coordination"]["rate"])


@pytest.mark.parametrize("clip", [1e9, 0.1])
def test_truncated_best_response_gradient_matches_exact_expectation(clip):
    """One-shot 3-player game, seat 0 best-responds to the peers' mixtures from samples of the
    current policies. The exact expectation of the estimator, by enumeration of joint actions, is
    sum_a pi(a) (onehot(a_0) - pi_0) c(a_-0) r_0(a) (the baseline term vanishes); without
    truncation that is grad_theta V_0(softmax(theta), pi_bar_1, pi_bar_2), by autograd."""
    import itertools

    from league.matrl.estimators import truncated_best_response_objective

    g = torch.Generator().manual_seed(11)
    n, A, K = 3, 3, 200000
    payoff = torch.randn(n, A, A, A, generator=g, dtype=F64)
    theta = torch.randn(A, generator=g, dtype=F64)
    pi = [torch.softmax(theta, -1)] + [torch.softmax(torch.randn(A, generator=g, dtype=F64), -1) for _ in range(2)]
    mix = [None] + [torch.softmax(p.log() + 1.0 * torch.randn(A, generator=g, dtype=F64), -1) for p in pi[1:]]
    exact = torch.zeros(A, dtype=F64)
    for a in itertools.product(range(A), repeat=n):
        prob = pi[0][a[0]] * pi[1][a[1]] * pi[2][a[2]]
        w = (mix[1][a[1]] / pi[1][a[1]]) * (mix[2][a[2]] / pi[2][a[2]])
        exact += prob * (torch.nn.functional.one_hot(torch.tensor(a[0]), A) - pi[0]) * w.clamp(1 - clip, 1 + clip) * payoff[(0, *a)]
    if clip > 1e6:
        th = theta.clone().requires_grad_(True)
        v = normal_form_value(payoff, [torch.softmax(th, -1), mix[1], mix[2]])[0]
        (grad_v,) = torch.autograd.grad(v, th)
        assert torch.allclose(exact, grad_v, atol=1e-12)
    acts = torch.stack([torch.multinomial(p, K, replacement=True, generator=g) for p in pi], -1)  # [K, n]
    th = theta.clone().requires_grad_(True)
    logp_own = torch.log_softmax(th, -1)[acts[:, 0]].unsqueeze(1)
    peers_mix = (mix[1].log()[acts[:, 1]] + mix[2].log()[acts[:, 2]]).unsqueeze(1)
    peers_cur = (pi[1].log()[acts[:, 1]] + pi[2].log()[acts[:, 2]]).unsqueeze(1)
    rewards = payoff[(0, *acts.unbind(-1))].unsqueeze(1)
    surrogate = truncated_best_response_objective(logp_own, logp_own.detach(), peers_mix, peers_cur, rewards, 1.0, clip)
    (grad,) = torch.autograd.grad(surrogate, th)
    # per-sample gradients for the standard error
    c = torch.exp(peers_mix - peers_cur).clamp(1 - clip, 1 + clip)[:, 0]
    adv = rewards[:, 0] - (rewards[:, 0].sum() - rewards[:, 0]) / (K - 1)
    per = (torch.nn.functional.one_hot(acts[:, 0], A) - pi[0]) * (c * adv).unsqueeze(-1)
    z = ((grad - exact) / (per.std(0) / K**0.5)).abs()
    print(f"clip={clip}: max |z| = {z.max().item():.2f}")
    assert z.max() < 4.5
    assert torch.allclose(grad, per.mean(0), atol=1e-12)
