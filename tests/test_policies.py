"""Policies as distributions: closed forms against torch.distributions, sampling through a
generator, every registered policy batched and functional (inner steps stay in the graph),
and make_policy's errors when spaces do not fit."""

from __future__ import annotations

import math

import pytest
import torch
from gymnasium.spaces import Box, Discrete

from league.updates import ascend
from league.envs import make_env
from league.policies import POLICIES, Categorical, DiagGaussian, MLPCategorical, make_policy

F64 = torch.float64


def test_categorical_matches_torch_distributions_with_gradients():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 5, 6, generator=g, dtype=F64)).requires_grad_(True)
    actions = torch.randint(6, (4, 5), generator=g)
    ours, ref = Categorical(logits), torch.distributions.Categorical(logits=logits)
    for a, b in ((ours.log_prob(actions), ref.log_prob(actions)), (ours.entropy(), ref.entropy())):
        assert torch.allclose(a, b, atol=1e-12)
        ga, = torch.autograd.grad(a.sum(), logits, retain_graph=True)
        gb, = torch.autograd.grad(b.sum(), logits, retain_graph=True)
        assert torch.allclose(ga, gb, atol=1e-12)


def test_diag_gaussian_matches_torch_distributions_with_gradients():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(3, 7, 4, generator=g, dtype=F64, requires_grad=True)
    log_std = (0.5 * torch.randn(3, 1, 4, generator=g, dtype=F64)).requires_grad_(True)  # state-independent
    actions = torch.randn(3, 7, 4, generator=g, dtype=F64)
    ours = DiagGaussian(mean, log_std)
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp().expand_as(mean)), 1)
    for a, b in ((ours.log_prob(actions), ref.log_prob(actions)), (ours.entropy(), ref.entropy())):
        assert a.shape == b.shape == (3, 7)
        assert torch.allclose(a, b, atol=1e-12)
        ga = torch.autograd.grad(a.sum(), [mean, log_std], retain_graph=True, allow_unused=True)
        gb = torch.autograd.grad(b.sum(), [mean, log_std], retain_graph=True, allow_unused=True)
        for x, y in zip(ga, gb):
            assert (x is None and (y is None or torch.all(y == 0))) or torch.allclose(x, y, atol=1e-12)


def test_sampling_follows_the_distribution_and_the_generator():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64))
    n = 200_000
    draws = Categorical(logits.expand(n, 4)).sample(torch.Generator().manual_seed(2))
    freq = torch.bincount(draws, minlength=4).double() / n
    assert torch.all((freq - logits.exp()).abs() < 4 * (0.25 / n) ** 0.5)
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    log_std = torch.log(torch.tensor([0.5, 2.0], dtype=F64))
    dist = DiagGaussian(mean.expand(n, 2), log_std)
    x = dist.sample(torch.Generator().manual_seed(3))
    assert torch.all((x.mean(0) - mean).abs() < 4 * log_std.exp() / n**0.5)
    assert torch.all((x.std(0) / log_std.exp() - 1).abs() < 0.01)
    assert torch.equal(x, dist.sample(torch.Generator().manual_seed(3)))  # the generator decides
    # the entropy is the expected negative log-density (Monte Carlo, 4 standard errors)
    nll = -dist.log_prob(x)
    assert abs(float(nll.mean() - dist.entropy()[0])) < 4 * float(nll.std()) / n**0.5


SPACES = {
    "tabular": (Discrete(10), Discrete(3)),
    "lstm_categorical": (Discrete(10), Discrete(3)),
    "lstm_gaussian": (Box(-math.inf, math.inf, (12,)), Box(-1, 1, (3,))),
    "mlp_gaussian": (Box(-math.inf, math.inf, (12,)), Box(-1, 1, (3,))),
    "mlp_categorical": (Box(0, 1, (20,)), Discrete(5)),
}


def _obs(space, shape, g):
    if isinstance(space, Discrete):
        return torch.nn.functional.one_hot(torch.randint(space.n, shape, generator=g), space.n).to(F64)
    return torch.randn(*shape, space.shape[0], generator=g, dtype=F64)


def _actions(space, shape, g):
    if isinstance(space, Discrete):
        return torch.randint(space.n, shape, generator=g)
    return torch.rand(*shape, space.shape[0], generator=g, dtype=F64) * 2 - 1


def _episode_logp(policy, params, obs, actions):
    """Sum over time of log pi(a_t | history) for ``obs[B, K, H, D]``: ``[B, K]``."""
    state = policy.initial_state(params, tuple(obs.shape[:2]))
    total = 0
    for t in range(obs.shape[2]):
        out, state = policy.step(params, obs[:, :, t], state)
        total = total + policy.distribution(params, out).log_prob(actions[:, :, t])
    return total


def test_every_registered_policy_has_spaces_here():
    assert set(POLICIES) == set(SPACES)


@pytest.mark.parametrize("name", list(SPACES))
def test_policies_are_batched_over_chains(name):
    obs_space, act_space = SPACES[name]
    policy = make_policy(name, obs_space, act_space, dtype=F64, **({} if name == "tabular" else {"hidden": 8}))
    g = torch.Generator().manual_seed(4)
    # every chain its own values (zero biases and log-stds at init would hide mixed-up chains)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in policy.init_params(g, 3).items()}
    obs, actions = _obs(obs_space, (3, 5, 4), g), _actions(act_space, (3, 5, 4), g)
    logp = _episode_logp(policy, params, obs, actions)
    assert logp.shape == (3, 5) and torch.isfinite(logp).all()
    for b in range(3):  # chain b alone gives chain b's numbers: the chains do not mix
        alone = {k: v[b:b + 1] for k, v in params.items()}
        assert torch.allclose(_episode_logp(policy, alone, obs[b:b + 1], actions[b:b + 1])[0], logp[b], atol=1e-12)
    out, _ = policy.step(params, obs[:, :, 0], policy.initial_state(params, (3, 5)))
    dist = policy.distribution(params, out)
    sample = dist.sample(torch.Generator().manual_seed(5))
    assert sample.shape == actions[:, :, 0].shape and dist.entropy().shape == (3, 5)


@pytest.mark.parametrize("name", ["mlp_gaussian", "lstm_gaussian"])
def test_inner_step_stays_in_the_graph(name):
    """phi' = phi + lr * grad J(phi) with create_graph: d J(phi') / d phi by autograd equals
    central finite differences of the whole two-stage computation (so second-order terms are
    kept), in float64."""
    obs_space, act_space = SPACES[name]
    policy = make_policy(name, obs_space, act_space, dtype=F64, hidden=4)
    g = torch.Generator().manual_seed(6)
    params = {k: v.requires_grad_(True) for k, v in policy.init_params(g, batch=1).items()}
    obs, actions = _obs(obs_space, (1, 3, 2), g), _actions(act_space, (1, 3, 2), g)
    obs2, actions2 = _obs(obs_space, (1, 3, 2), g), _actions(act_space, (1, 3, 2), g)
    lr = torch.tensor([0.3], dtype=F64)

    def outer(p):
        inner = _episode_logp(policy, p, obs, actions).mean(-1)
        adapted = ascend(p, inner, lr, create_graph=True)
        return _episode_logp(policy, adapted, obs2, actions2).mean()

    grad = torch.autograd.grad(outer(params), params["log_std"])[0]
    eps = 1e-6
    for i in range(grad.shape[-1]):
        bump = torch.zeros_like(params["log_std"])
        bump[0, i] = eps
        up = outer({**params, "log_std": params["log_std"] + bump})
        down = outer({**params, "log_std": params["log_std"] - bump})
        fd = (up - down) / (2 * eps)
        assert abs(float(fd.detach()) - float(grad[0, i])) < 1e-6, (i, float(fd.detach()), float(grad[0, i]))
    # and the second-order part is not negligible: a first-order inner step gives another gradient
    first = torch.autograd.grad(_episode_logp(policy, ascend(params, _episode_logp(policy, params, obs, actions)
                                                             .mean(-1), lr, create_graph=False), obs2, actions2)
                                .mean(), params["log_std"])[0]
    assert (first - grad).abs().max() > 1e-4


@pytest.mark.parametrize("name, obs_space, act_space, message", [
    ("mlp_gaussian", Box(-1, 1, (4,)), Discrete(3), r"policy 'mlp_gaussian' needs a 1-d Box action space, got Discrete\(3\)"),
    ("lstm_categorical", Box(-1, 1, (4,)), Box(-1, 1, (2,)), "needs a Discrete action space"),
    ("tabular", Box(-1, 1, (4,)), Discrete(2), "policy 'tabular' needs a Discrete observation space"),
    ("transformer", Discrete(2), Discrete(2), r"unknown policy class 'transformer'; known: lstm_categorical"),
])
def test_make_policy_rejects_spaces_that_do_not_fit(name, obs_space, act_space, message):
    with pytest.raises(ValueError, match=message):
        make_policy(name, obs_space, act_space)


def test_policies_fit_the_registered_environments():
    rps3 = make_env("rps", n_players=3, horizon=2)
    tab = make_policy("tabular", rps3.observation_spaces[1], rps3.action_spaces[1])
    assert (tab.n_states, tab.n_actions) == (28, 3)
    lstm = make_policy("lstm_categorical", rps3.observation_spaces[0], rps3.action_spaces[0])
    assert (lstm.obs_dim, lstm.n_actions) == (28, 3)


def test_mlp_categorical_scores_a_whole_episode_as_step_by_step():
    """The one-pass ``sequence`` gives the logits that stepping gives (which is what sampled the
    actions), and the policy sizes itself from a grid world's spaces."""
    checkers = make_env("checkers")
    policy = make_policy("mlp_categorical", checkers.observation_spaces[0], checkers.action_spaces[0], dtype=F64,
                         hidden=16)
    assert (policy.obs_dim, policy.n_actions, policy.layers) == (20, 5, 2)
    g = torch.Generator().manual_seed(7)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in policy.init_params(g, 2).items()}
    obs = torch.rand(2, 3, 4, 20, generator=g, dtype=F64)
    steps = torch.stack([policy.step(params, obs[:, :, t], None)[0] for t in range(4)], dim=2)
    assert torch.allclose(policy.sequence(params, obs), steps, atol=1e-12)
    # the hidden layers are Leaky ReLU (the paper's): a negative pre-activation leaks 0.01 of itself
    one = MLPCategorical(obs_dim=1, n_actions=1, hidden=1, layers=1)
    p = {"h0_w": torch.full((1, 1, 1), 1.0), "h0_b": torch.zeros(1, 1), "out_w": torch.ones(1, 1, 1),
         "out_b": torch.zeros(1, 1)}
    assert float(one.step(p, torch.full((1, 1, 1), -2.0), None)[0]) == pytest.approx(-0.02)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_mlp_gaussian_log_prob_and_entropy_are_the_normal_closed_forms(activation):
    """``mlp_gaussian`` (deep MATRL's policy for Box actions): the log-density of actions scored
    over whole episodes (``league.rollout.score``, through :meth:`MLPGaussian.sequence`) and the
    entropy equal ``torch.distributions.Normal`` around the mean of an independent forward pass
    (``torch.nn.functional.linear`` per chain and layer), with the per-dimension ``exp(log_std)``;
    step-by-step outputs equal the one-pass sequence; gradients agree."""
    from league.rollout import Episodes, score

    obs_space, act_space = Box(-math.inf, math.inf, (7,)), Box(-1, 1, (3,))
    policy = make_policy("mlp_gaussian", obs_space, act_space, dtype=F64, hidden=6, layers=2, activation=activation)
    g = torch.Generator().manual_seed(11)
    params = {k: (v + 0.4 * torch.randn(v.shape, generator=g, dtype=F64)).requires_grad_(True)
              for k, v in policy.init_params(g, 2).items()}
    obs, actions = _obs(obs_space, (2, 4, 5), g), _actions(act_space, (2, 4, 5), g)
    act = {"relu": torch.relu, "leaky_relu": torch.nn.functional.leaky_relu, "tanh": torch.tanh}[activation]
    ref_logp, ref_ent = [], []
    for b in range(2):
        x = obs[b]
        for i in range(2):
            x = act(torch.nn.functional.linear(x, params[f"h{i}_w"][b], params[f"h{i}_b"][b]))
        mean = torch.nn.functional.linear(x, params["out_w"][b], params["out_b"][b])
        normal = torch.distributions.Normal(mean, params["log_std"][b].exp().expand_as(mean))
        ref_logp.append(normal.log_prob(actions[b]).sum(-1))
        ref_ent.append(normal.entropy().sum(-1))
    ref_logp, ref_ent = torch.stack(ref_logp), torch.stack(ref_ent)
    ep = Episodes(obs=obs, actions=None, rewards=torch.zeros(2, 4, 5, 1, dtype=F64), seat_obs=[obs], seat_actions=[actions])
    batch = score([policy], [params], ep)
    assert torch.allclose(batch.logp[0], ref_logp, atol=1e-12) and torch.allclose(batch.entropy[0], ref_ent, atol=1e-12)
    stepwise = torch.stack([policy.step(params, obs[:, :, t], None)[0] for t in range(5)], dim=2)
    assert torch.allclose(policy.sequence(params, obs), stepwise, atol=1e-12)
    for name in ("h0_w", "log_std"):
        ga = torch.autograd.grad(batch.logp[0].sum() + batch.entropy[0].sum(), params[name], retain_graph=True)[0]
        gb = torch.autograd.grad(ref_logp.sum() + ref_ent.sum(), params[name], retain_graph=True)[0]
        assert torch.allclose(ga, gb, atol=1e-10)


def test_mlp_gaussian_mean_scale_and_unknown_activation():
    obs_space, act_space = Box(-math.inf, math.inf, (7,)), Box(-1, 1, (3,))
    small = make_policy("mlp_gaussian", obs_space, act_space, hidden=6, mean_scale=0.01).init_params(
        torch.Generator().manual_seed(0))
    full = make_policy("mlp_gaussian", obs_space, act_space, hidden=6).init_params(torch.Generator().manual_seed(0))
    assert torch.allclose(small["out_w"], 0.01 * full["out_w"]) and torch.equal(small["h0_w"], full["h0_w"])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_policy("mlp_gaussian", obs_space, act_space, activation="gelu")
