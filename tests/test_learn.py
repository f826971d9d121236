"""Tests for league.learn against closed forms and exact enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from league.learn import (
    dice_objective,
    discount_weights,
    discounted_returns,
    gae_advantages,
    linear_feature_baseline,
    magic_box,
    pcgrad,
    pcgrad_mean,
)

DT = torch.float64


# --------------------------------------------------------------------------- returns / GAE


def test_discount_weights():
    w = discount_weights(4, 0.5, DT)
    assert w.dtype == DT
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=DT))
    assert discount_weights(3, 0.9).dtype == torch.float32


def test_discounted_returns_hand_example():
    r = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    # G2 = 3, G1 = 2 + 0.5*3 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    torch.testing.assert_close(discounted_returns(r, 0.5), torch.tensor([2.75, 3.5, 3.0], dtype=DT))
    # batched over leading dims
    rb = torch.stack([r, 2 * r]).reshape(2, 1, 3).expand(2, 4, 3)
    g = discounted_returns(rb, 0.5)
    assert g.shape == (2, 4, 3)
    torch.testing.assert_close(g[1, 3], torch.tensor([5.5, 7.0, 6.0], dtype=DT))


def test_discounted_returns_long_horizon_matches_weights():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 2000, generator=g, dtype=DT)
    G = discounted_returns(r, 0.99)
    assert torch.isfinite(G).all()
    torch.testing.assert_close(G[:, 0], (r * discount_weights(2000, 0.99, DT)).sum(-1))


def test_gae_hand_example():
    r = torch.tensor([1.0, 0.0, 2.0], dtype=DT)
    v = torch.tensor([0.5, 1.0, 1.5], dtype=DT)
    gamma, lam = 0.9, 0.5
    # deltas: d2 = 2 - 1.5 = 0.5; d1 = 0 + 0.9*1.5 - 1 = 0.35; d0 = 1 + 0.9*1 - 0.5 = 1.4
    # A2 = 0.5; A1 = 0.35 + 0.45*0.5 = 0.575; A0 = 1.4 + 0.45*0.575 = 1.65875
    expected = torch.tensor([1.65875, 0.575, 0.5], dtype=DT)
    torch.testing.assert_close(gae_advantages(r, v, gamma, lam), expected)
    # with a bootstrap value after the last step: d2 += 0.9 * 2 = 1.8
    lv = torch.tensor(2.0, dtype=DT)
    exp2 = expected + torch.tensor([0.45**2, 0.45, 1.0], dtype=DT) * 1.8
    torch.testing.assert_close(gae_advantages(r, v, gamma, lam, last_value=lv), exp2)


def test_gae_lambda_limits():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(2, 3, 7, generator=g, dtype=DT)
    v = torch.randn(2, 3, 7, generator=g, dtype=DT)
    gamma = 0.95
    torch.testing.assert_close(gae_advantages(r, v, gamma, 1.0), discounted_returns(r, gamma) - v)
    v_next = torch.cat([v[..., 1:], torch.zeros_like(v[..., :1])], -1)
    torch.testing.assert_close(gae_advantages(r, v, gamma, 0.0), r + gamma * v_next - v)
    lv = torch.randn(2, 3, generator=g, dtype=DT)
    v_next = torch.cat([v[..., 1:], lv[..., None]], -1)
    torch.testing.assert_close(gae_advantages(r, v, gamma, 0.0, lv), r + gamma * v_next - v)


# --------------------------------------------------------------------------- linear baseline


def _features(obs):
    H = obs.shape[-2]
    t = (torch.arange(H, dtype=obs.dtype) / 100.0).reshape(H, 1).expand(*obs.shape[:-1], 1)
    return torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], -1)


def test_linear_baseline_exact_fit_float64():
    g = torch.Generator().manual_seed(2)
    B, K, H, D = 3, 6, 20, 2
    obs = torch.randn(B, K, H, D, generator=g, dtype=DT)
    w = torch.randn(B, 2 * D + 4, generator=g, dtype=DT)
    y = torch.einsum("bkhf,bf->bkh", _features(obs), w)
    fit = linear_feature_baseline(obs, y, reg=1e-12)
    assert fit.dtype == DT and fit.shape == (B, K, H)
    torch.testing.assert_close(fit, y, atol=1e-6, rtol=0)


def test_linear_baseline_default_reg_close_fit():
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(2, 8, 50, 3, generator=g, dtype=DT)
    w = torch.randn(2, 10, generator=g, dtype=DT)
    y = torch.einsum("bkhf,bf->bkh", _features(obs), w)
    torch.testing.assert_close(linear_feature_baseline(obs, y), y, atol=1e-3, rtol=0)


def test_linear_baseline_chains_independent_and_no_grad():
    g = torch.Generator().manual_seed(4)
    obs = torch.randn(2, 4, 10, 3, generator=g).requires_grad_()
    ret = torch.randn(2, 4, 10, generator=g).requires_grad_()
    fit = linear_feature_baseline(obs, ret)
    assert not fit.requires_grad and fit.grad_fn is None
    assert fit.dtype == torch.float32
    obs2 = obs.detach().clone()
    ret2 = ret.detach().clone()
    obs2[1] = torch.randn(4, 10, 3, generator=g) * 5
    ret2[1] = torch.randn(4, 10, generator=g) * 3
    fit2 = linear_feature_baseline(obs2, ret2)
    torch.testing.assert_close(fit2[0], fit[0], atol=0, rtol=0)
    assert not torch.allclose(fit2[1], fit[1])


def test_linear_baseline_one_hot_obs_and_failure():
    # one-hot obs make obs and obs**2 collinear: still solvable thanks to the ridge term
    g = torch.Generator().manual_seed(5)
    s = torch.randint(0, 5, (2, 8, 6), generator=g)
    obs = torch.nn.functional.one_hot(s, 5).float()
    ret = torch.randn(2, 8, 6, generator=g)
    fit = linear_feature_baseline(obs, ret)
    assert torch.isfinite(fit).all()
    # non-finite data cannot be fitted at any reg: clear error
    ret[1, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="chains \\[1\\]"):
        linear_feature_baseline(obs, ret)


# --------------------------------------------------------------------------- DiCE
#
# Exact test problem: two agents with memory-1 tabular Bernoulli (softmax over 2 actions)
# policies on the IPD state space (s0 + 4 joint-action states), horizon H. All 4^H joint
# action sequences are enumerated with their exact probabilities; each trajectory is one
# "chain" with K = 1, and expectations of the DiCE objective and of its derivatives are
# probability-weighted sums with detached weights.

GAMMA = 0.9
R1 = torch.tensor([[0.5, -1.5], [1.5, -0.5]], dtype=DT)  # agent 0's IPD payoff r(a0, a1)


def _enumerate(H):
    seqs = torch.tensor(list(itertools.product(range(4), repeat=H)), dtype=torch.long)  # [N, H]
    a0, a1 = seqs // 2, seqs % 2
    states = torch.cat([torch.zeros(len(seqs), 1, dtype=torch.long), 1 + seqs[:, :-1]], 1)
    return states, a0, a1


def _logps(theta0, theta1, states, a0, a1):
    lp0 = torch.log_softmax(theta0, -1)[states, a0]  # [N, H]
    lp1 = torch.log_softmax(theta1, -1)[states, a1]
    return lp0, lp1


def _params(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 2, generator=g, dtype=DT), torch.randn(5, 2, generator=g, dtype=DT)


def _exact_return(flat, states, a0, a1, rewards):
    th0, th1 = flat[:10].reshape(5, 2), flat[10:].reshape(5, 2)
    lp0, lp1 = _logps(th0, th1, states, a0, a1)
    prob = (lp0 + lp1).sum(-1).exp()
    disc = (rewards * discount_weights(rewards.shape[-1], GAMMA, DT)).sum(-1)
    return (prob * disc).sum()


def _expected_dice(flat, states, a0, a1, rewards, baseline=None, deps="both"):
    th0, th1 = flat[:10].reshape(5, 2), flat[10:].reshape(5, 2)
    lp0, lp1 = _logps(th0, th1, states, a0, a1)
    prob = (lp0 + lp1).sum(-1).exp().detach()
    dep = {"both": lp0 + lp1, "own": lp0}[deps]
    b = None if baseline is None else baseline[:, None, :]
    per_traj = dice_objective(dep[:, None, :], rewards[:, None, :], GAMMA, baseline=b)  # [N]
    return (prob * per_traj).sum()


def _grad_and_hessian(fn, flat):
    """Value, gradient and Hessian of fn at flat via autograd.grad with create_graph."""
    x = flat.clone().requires_grad_()
    val = fn(x)
    (grad,) = torch.autograd.grad(val, x, create_graph=True)
    rows = [torch.autograd.grad(grad[i], x, retain_graph=True)[0] for i in range(x.numel())]
    return val.detach(), grad.detach(), torch.stack(rows)


def test_magic_box():
    x = torch.tensor([0.3, -2.0], dtype=DT, requires_grad=True)
    y = magic_box(x)
    torch.testing.assert_close(y, torch.ones(2, dtype=DT))
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    torch.testing.assert_close(g, torch.ones(2, dtype=DT))
    (h,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(h, torch.ones(2, dtype=DT))


def test_dice_one_step_bernoulli_closed_form():
    # pi(a=1) = sigmoid(theta); J = p r1 + (1-p) r0; J' = p(1-p)(r1-r0); J'' = J' (1-2p)
    theta = torch.tensor(0.4, dtype=DT, requires_grad=True)
    r0, r1 = -1.0, 2.5
    logp = torch.stack([torch.nn.functional.logsigmoid(-theta), torch.nn.functional.logsigmoid(theta)])
    p = torch.sigmoid(theta).detach()
    probs = torch.stack([1 - p, p])
    rew = torch.tensor([r0, r1], dtype=DT)
    obj = (probs * dice_objective(logp.reshape(2, 1, 1), rew.reshape(2, 1, 1), GAMMA)).sum()
    (g,) = torch.autograd.grad(obj, theta, create_graph=True)
    (h,) = torch.autograd.grad(g, theta)
    pv = float(p)
    assert obj.item() == pytest.approx(pv * r1 + (1 - pv) * r0, abs=1e-12)
    assert g.item() == pytest.approx(pv * (1 - pv) * (r1 - r0), abs=1e-12)
    assert h.item() == pytest.approx(pv * (1 - pv) * (1 - 2 * pv) * (r1 - r0), abs=1e-12)


def test_dice_forward_value_is_mean_discounted_return():
    g = torch.Generator().manual_seed(6)
    lp = torch.randn(3, 5, 4, generator=g, dtype=DT)
    r = torch.randn(3, 5, 4, generator=g, dtype=DT)
    b = torch.randn(3, 5, 4, generator=g, dtype=DT)
    expected = (r * discount_weights(4, GAMMA, DT)).sum(-1).mean(-1)
    torch.testing.assert_close(dice_objective(lp, r, GAMMA), expected)
    torch.testing.assert_close(dice_objective(lp, r, GAMMA, baseline=b), expected)


COORD = torch.tensor([[1.0, -0.5], [0.0, 2.0]], dtype=DT)  # non-additive payoff


@pytest.mark.parametrize("H,table", [(1, COORD), (2, COORD), (3, R1)])
def test_dice_exact_value_gradient_hessian(H, table):
    # IPD's payoff is additive in the two actions, so for IPD the cross term comes only
    # through the state dependence (H > 1); the coordination payoff couples them at H = 1.
    states, a0, a1 = _enumerate(H)
    rewards = table[a0, a1]  # [N, H]
    th0, th1 = _params(7)
    flat = torch.cat([th0.reshape(-1), th1.reshape(-1)])
    v_ex, g_ex, h_ex = _grad_and_hessian(lambda x: _exact_return(x, states, a0, a1, rewards), flat)
    v_d, g_d, h_d = _grad_and_hessian(lambda x: _expected_dice(x, states, a0, a1, rewards), flat)
    torch.testing.assert_close(v_d, v_ex, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_d, g_ex, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_d, h_ex, atol=1e-12, rtol=0)
    # the cross-derivative between the agents' parameters is non-trivial and matched
    cross = h_ex[:10, 10:]
    assert cross.abs().max() > 1e-3
    torch.testing.assert_close(h_d[:10, 10:], cross, atol=1e-12, rtol=0)
    if H > 1:
        # sanity: with only agent 0's log-probs as dependencies the cross term is lost
        _, _, h_own = _grad_and_hessian(
            lambda x: _expected_dice(x, states, a0, a1, rewards, deps="own"), flat
        )
        assert (h_own[:10, 10:] - cross).abs().max() > 1e-3


def _exact_state_values(th0, th1, H):
    """V[t, s] = E[sum_{t'>=t} gamma^(t'-t) r_t' | s_t = s] by backward induction."""
    p0, p1 = torch.softmax(th0, -1), torch.softmax(th1, -1)  # [5, 2]
    joint = p0[:, :, None] * p1[:, None, :]  # [5, 2, 2]
    V = torch.zeros(H + 1, 5, dtype=DT)
    nxt = 1 + torch.arange(4).reshape(2, 2)
    for t in range(H - 1, -1, -1):
        V[t] = (joint * (R1 + GAMMA * V[t + 1][nxt])).sum((-2, -1))
    return V[:H]


def test_dice_baseline_keeps_expected_derivatives():
    H = 3
    states, a0, a1 = _enumerate(H)
    rewards = R1[a0, a1]
    th0, th1 = _params(8)
    flat = torch.cat([th0.reshape(-1), th1.reshape(-1)])
    _, g_ref, h_ref = _grad_and_hessian(lambda x: _expected_dice(x, states, a0, a1, rewards), flat)
    # any baseline that depends only on the state (history), not on the current action
    g = torch.Generator().manual_seed(9)
    table = torch.randn(H, 5, generator=g, dtype=DT) * 3
    b_arbitrary = table[torch.arange(H), states]
    b_value = _exact_state_values(th0, th1, H)[torch.arange(H), states]
    for b in (b_arbitrary, b_value):
        v_b, g_b, h_b = _grad_and_hessian(
            lambda x: _expected_dice(x, states, a0, a1, rewards, baseline=b), flat
        )
        torch.testing.assert_close(g_b, g_ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(h_b, h_ref, atol=1e-12, rtol=0)


def test_dice_baseline_reduces_monte_carlo_variance():
    H, N = 3, 4000
    th0, th1 = _params(10)
    gen = torch.Generator().manual_seed(11)
    offset = 3.0  # a reward offset makes the plain score-function estimator noisy
    # sample N trajectories
    states = torch.zeros(N, H, dtype=torch.long)
    a0 = torch.zeros(N, H, dtype=torch.long)
    a1 = torch.zeros(N, H, dtype=torch.long)
    s = torch.zeros(N, dtype=torch.long)
    for t in range(H):
        states[:, t] = s
        a0[:, t] = torch.multinomial(torch.softmax(th0, -1)[s], 1, generator=gen).squeeze(-1)
        a1[:, t] = torch.multinomial(torch.softmax(th1, -1)[s], 1, generator=gen).squeeze(-1)
        s = 1 + 2 * a0[:, t] + a1[:, t]
    rewards = R1[a0, a1] + offset
    V = _exact_state_values(th0, th1, H) + offset * (1 - GAMMA ** torch.arange(H, 0, -1, dtype=DT))[:, None] / (1 - GAMMA)
    baseline = V[torch.arange(H), states]

    def per_sample_grads(b):
        # one leaf per trajectory (chain) so autograd returns per-sample gradients
        p0 = th0.expand(N, 5, 2).clone().requires_grad_()
        p1 = th1.expand(N, 5, 2).clone().requires_grad_()
        rows = torch.arange(N)[:, None]
        lp0 = torch.log_softmax(p0, -1)[rows, states, a0]
        lp1 = torch.log_softmax(p1, -1)[rows, states, a1]
        obj = dice_objective(
            (lp0 + lp1)[:, None], rewards[:, None], GAMMA, None if b is None else b[:, None]
        )
        g0, g1 = torch.autograd.grad(obj.sum(), (p0, p1))
        return torch.cat([g0.reshape(N, -1), g1.reshape(N, -1)], -1)

    g_plain = per_sample_grads(None)
    g_base = per_sample_grads(baseline)
    var_plain = g_plain.var(0).sum()
    var_base = g_base.var(0).sum()
    assert var_base < 0.5 * var_plain, (var_base, var_plain)
    # both are unbiased: means agree with the exact gradient within Monte-Carlo error
    st, e0, e1 = _enumerate(H)
    flat = torch.cat([th0.reshape(-1), th1.reshape(-1)]).requires_grad_()
    (g_ex,) = torch.autograd.grad(_exact_return(flat, st, e0, e1, R1[e0, e1] + offset), flat)
    se = (g_base.var(0) / N).sqrt()
    assert ((g_base.mean(0) - g_ex).abs() <= 5 * se + 1e-9).all()


def test_dice_shape_checks():
    with pytest.raises(ValueError):
        dice_objective(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), 0.9)
    with pytest.raises(ValueError):
        dice_objective(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), 0.9, baseline=torch.zeros(2, 3))


# --------------------------------------------------------------------------- PCGrad


def test_pcgrad_conflicting_hand_example():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=DT)
    # g0' = g0 - (-1/2) g1 = (0.5, 0.5); g1' = g1 - (-1/1) g0 = (0, 1)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(pcgrad(grads, gen), torch.tensor([0.5, 1.5], dtype=DT))
    torch.testing.assert_close(pcgrad_mean(grads, gen), torch.tensor([0.25, 0.75], dtype=DT))


def test_pcgrad_non_conflicting_is_plain_sum():
    gen = torch.Generator().manual_seed(1)
    grads = torch.rand(5, 7, generator=gen, dtype=DT)  # all dots positive
    torch.testing.assert_close(pcgrad(grads, gen), grads.sum(0))
    torch.testing.assert_close(pcgrad_mean(grads, gen), grads.mean(0))


def test_pcgrad_zero_norm_task_skipped():
    gen = torch.Generator().manual_seed(2)
    grads = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype=DT)
    out = pcgrad(grads, gen)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, grads.sum(0))


def test_pcgrad_two_tasks_non_negative_dots():
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        grads = torch.randn(2, 6, generator=gen, dtype=DT)
        out = pcgrad(grads, gen)
        assert (grads @ out >= -1e-12).all()


def test_pcgrad_order_from_generator_and_batched():
    g = torch.Generator().manual_seed(4)
    grads = torch.randn(6, 9, generator=g, dtype=DT)
    a = pcgrad(grads, torch.Generator().manual_seed(5))
    b = pcgrad(grads, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # reference: explicit per-task loop with the same orders
    gen = torch.Generator().manual_seed(6)
    keys = torch.rand(6, 6, generator=gen).masked_fill(torch.eye(6, dtype=torch.bool), 2.0)
    order = keys.argsort(-1)[:, :5]
    ref = torch.zeros(9, dtype=DT)
    for i in range(6):
        gi = grads[i].clone()
        for j in order[i].tolist():
            d = gi @ grads[j]
            if d < 0:
                gi = gi - d / (grads[j] @ grads[j]) * grads[j]
        ref += gi
    torch.testing.assert_close(pcgrad(grads, torch.Generator().manual_seed(6)), ref)
    # leading batch dims: each slice is an independent PCGrad
    batched = pcgrad(torch.stack([grads, grads[[1, 0, 2, 3, 4, 5]]]), torch.Generator().manual_seed(7))
    assert batched.shape == (2, 9)
