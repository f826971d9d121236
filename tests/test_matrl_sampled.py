"""Sampled MATRL rounds (``league.matrl.sampled``): each step against a hand computation or, with
many episodes, against the exact normal-form quantities (``league.nash.metagame``)."""

import itertools

import pytest
import torch

from league.games import make_game
from league.matrl.sampled import (SampledMATRLConfig, matrl_round, nash_weights, peer_log_ratios, score_round,
                                  run_sampled_matrl, trust_region_step)
from league.nash.metagame import exact_metagame, normal_form_value
from league.policies.tabular import Tabular
from league.rollout import Episodes, sample_episodes
from league.updates import make_update_rule, seat_step
from league.evaluators import SampledEvaluator

torch.set_num_threads(1)


def _tabular(game):
    return Tabular(game.obs_dim, game.n_actions)


def _random_params(game, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {"logits": scale * torch.randn(1, game.obs_dim, game.n_actions, generator=g)}


def _initial_probs(params, episodes):
    s0 = int(episodes.obs[0, 0, 0].argmax())
    return torch.softmax(params["logits"][0, s0], -1), s0


def test_trust_region_step_is_the_hand_computed_policy_gradient_step():
    """One step on three hand-written one-shot episodes: the logits of the initial state move by
    ``lr * mean_k (onehot(a_k) - pi) (r_k - b_k)`` with the leave-one-out baseline ``b_k``; the
    other states do not move; the ``matrl`` update rule through ``seat_step`` (what an agent
    process runs) gives the same parameters."""
    game = make_game("rps", n_players=2)
    policy = _tabular(game)
    params = _random_params(game, 0)
    obs = torch.zeros(1, 3, 1, game.obs_dim)
    obs[..., 0] = 1.0  # the initial state
    actions = torch.tensor([[[[0, 1]], [[2, 2]], [[0, 0]]]])  # [1, K=3, H=1, n=2]
    rewards = torch.tensor([[[[1.0, -1.0]], [[0.0, 0.0]], [[0.5, 0.2]]]])
    episodes = Episodes(obs, actions, rewards)
    lr = 0.7
    new = trust_region_step(policy, params, episodes, 0, lr, gamma=0.9, kl_coef=3.0, steps=1)
    pi = torch.softmax(params["logits"][0, 0], -1)
    r = rewards[0, :, 0, 0]
    b = (r.sum() - r) / 2
    grad = sum((torch.nn.functional.one_hot(actions[0, k, 0, 0], 3) - pi) * (r[k] - b[k]) for k in range(3)) / 3
    torch.testing.assert_close(new["logits"][0, 0], params["logits"][0, 0] + lr * grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(new["logits"][0, 1:], params["logits"][0, 1:], rtol=0, atol=0)
    rule = make_update_rule("matrl", policy=policy, gamma=0.9, kl_coef=3.0)
    via_rule = seat_step(rule, SampledEvaluator(game, [], 0, 0, 0.9, torch.Generator()), policy, params, episodes, 0,
                         torch.tensor([lr]))
    torch.testing.assert_close(via_rule["logits"], new["logits"], rtol=0, atol=0)


def test_second_trust_step_is_pulled_back_by_the_kl_term():
    """From the second inner step on the KL gradient acts: with a huge coefficient the second step
    is pulled back toward the current policy, with none it continues."""
    game = make_game("rps", n_players=2)
    policy, params = _tabular(game), _random_params(game, 1)
    episodes = sample_episodes(game, [policy, policy], [params, _random_params(game, 2)], 1, 32, 1,
                               torch.Generator().manual_seed(0))
    one = trust_region_step(policy, params, episodes, 0, 0.5, 0.96, kl_coef=0.0, steps=1)
    free = trust_region_step(policy, params, episodes, 0, 0.5, 0.96, kl_coef=0.0, steps=2)
    held = trust_region_step(policy, params, episodes, 0, 0.5, 0.96, kl_coef=1.0, steps=2)
    d = lambda p: float((p["logits"] - params["logits"]).norm())  # noqa: E731
    assert d(free) > d(one) * 1.5
    assert d(held) < d(free)


@pytest.mark.parametrize("n", [2, 3])
def test_peer_log_ratios_are_the_mixture_over_behaviour_products(n):
    """``sum_{j != i} log(((1 - w_j) pi_j + w_j pi_hat_j)(a_j) / pi_j(a_j))`` at every step, by
    explicit products over the peers."""
    game = make_game("rps", n_players=n)
    policy = _tabular(game)
    current = [_random_params(game, 10 + k) for k in range(n)]
    predicted = [_random_params(game, 20 + k) for k in range(n)]
    w = torch.tensor([[0.0, 1.0, 0.3][:n]])
    episodes = sample_episodes(game, [policy] * n, current, 1, 5, 3, torch.Generator().manual_seed(1))
    got = peer_log_ratios(score_round([policy] * n, current, predicted, episodes), w)
    assert got.shape == (n, 1, 5, 3)
    for i, k, t in itertools.product(range(n), range(5), range(3)):
        s = int(episodes.obs[0, k, t].argmax())
        ratio = 1.0
        for j in range(n):
            if j == i:
                continue
            a = int(episodes.actions[0, k, t, j])
            p = torch.softmax(current[j]["logits"][0, s], -1)[a]
            q = torch.softmax(predicted[j]["logits"][0, s], -1)[a]
            ratio *= float(((1 - w[0, j]) * p + w[0, j] * q) / p)
        assert abs(float(got[i, 0, k, t].exp()) - ratio) < 1e-5 * max(1.0, ratio), (i, k, t)


def test_sampled_round_approaches_the_exact_metagame_and_best_response():
    """A one-shot 2-player RPS round from 300 000 episodes: the meta-game is the exact one of the
    current and (sampled) predicted policies within 4.5 standard errors; the best-response step
    (untruncated) moves the initial state's logits along the exact gradient of
    ``V_0(softmax(theta), pi_bar_1)`` within 0.004 per logit (measured 0.0015; the step is 0.19
    long, and the gradient against the peer's *current* policy differs from it by 0.011)."""
    game = make_game("rps", n_players=2)
    policy = _tabular(game)
    params = [_random_params(game, 3, 0.8), _random_params(game, 4, 0.8)]
    cfg = SampledMATRLConfig(trajectories=300_000, horizon=1, lr=[3.0], br_lr=1.0, clip=1e9,
                             solvers=["support-enumeration", "lyapunov"])
    episodes = sample_episodes(game, [policy, policy], params, 1, cfg.trajectories, 1, torch.Generator().manual_seed(5))
    out = matrl_round([policy, policy], params, episodes, cfg)
    cur = [_initial_probs(p, episodes)[0].double() for p in params]
    pred = [_initial_probs(p, episodes)[0].double() for p in out.predicted]
    exact = exact_metagame(game.payoff.double(), cur, pred)
    z = (out.metagame[0].double() - exact) / out.stderr[0].double().clamp_min(1e-12)
    assert float(z.abs().max()) < 4.5, (out.metagame[0], exact)
    assert out.found[0]
    s0 = _initial_probs(params[0], episodes)[1]
    w1 = float(out.weights[0, 1])
    assert w1 > 0.5  # the peer's mixture is (mostly) its predicted policy: the response differs from IL's
    mix1 = (1 - w1) * cur[1] + w1 * pred[1]
    theta = params[0]["logits"][0, s0].double().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(normal_form_value(game.payoff.double(), [torch.softmax(theta, -1), mix1])[0], theta)
    step = (out.params[0]["logits"][0, s0] - params[0]["logits"][0, s0]).double()
    assert float(step.norm()) > 0.1
    assert float((step - cfg.br_lr * grad).abs().max()) < 0.004, (step, grad)


def test_nash_weights_keep_the_current_policies_when_nothing_verifies():
    """A meta-game whose solvers find no verified profile (matching pennies has no pure
    equilibrium; ``pure`` alone is tried): ``w = 0``, not found, no solver named."""
    meta = torch.zeros(1, 2, 2, 2)
    meta[0, 0] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    meta[0, 1] = -meta[0, 0]
    w, found, names = nash_weights(meta, ["pure"], 1e-6)
    assert not found[0] and names == [""] and torch.equal(w, torch.zeros(1, 2))
    w, found, names = nash_weights(meta, ["pure", "support-enumeration"], 1e-6)
    assert found[0] and names == ["support-enumeration"]
    torch.testing.assert_close(w, torch.full((1, 2), 0.5, dtype=w.dtype))


def test_embedded_run_draws_groups_in_order_from_one_stream():
    """``run_sampled_matrl`` plays group after group from one generator: the first group's first
    round is ``matrl_round`` on the first draw, the second group's on the second draw."""
    game = make_game("rps", n_players=2)
    policy = _tabular(game)
    groups = [[_random_params(game, 30), _random_params(game, 31)], [_random_params(game, 32), _random_params(game, 33)]]
    cfg = SampledMATRLConfig(trajectories=16, horizon=2, rounds=1)
    final, history = run_sampled_matrl(game, [policy, policy], groups, cfg, torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    for g in range(2):
        ep = sample_episodes(game, [policy, policy], groups[g], 1, 16, 2, gen)
        out = matrl_round([policy, policy], groups[g], ep, cfg)
        for k in range(2):
            torch.testing.assert_close(final[g][k]["logits"], out.params[k]["logits"], rtol=0, atol=0)
    assert [h["group"] for h in history] == [0, 1]
