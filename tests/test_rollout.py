"""The rollout runs on the environment seam: ``sample_episodes`` of a matrix game draws
exactly what the pre-seam loop drew (kept here as the reference), ``score`` gives the
categorical closed forms, and ``play`` drives any Environment, MaMuJoCo with Gaussian LSTMs
included."""

from __future__ import annotations

import warnings

import pytest
import torch

from league.envs import make_env
from league.games import ipd, rps
from league.policies import LSTMCategorical, Tabular, make_policy
from league.policies.base import sample_categorical
from league.rollout import play, sample_episodes, score


@torch.no_grad()
def _reference_sample(game, policies, params, B, K, H, generator, dtype):
    """The rollout loop before the environment seam, verbatim in substance."""
    state = game.reset((B, K))
    rec = [policy.initial_state(p, (B, K)) for policy, p in zip(policies, params)]
    obs_t, act_t, rew_t = [], [], []
    for _ in range(H):
        obs = game.observe(state, dtype=dtype)
        actions = []
        for k, (policy, p) in enumerate(zip(policies, params)):
            logits, rec[k] = policy.step(p, obs, rec[k])
            actions.append(sample_categorical(logits.expand(B, K, -1), generator))
        joint = torch.stack(actions, dim=-1)
        state, rewards = game.step(state, joint)
        obs_t.append(obs)
        act_t.append(joint)
        rew_t.append(rewards.to(dtype))
    return torch.stack(obs_t, dim=2), torch.stack(act_t, dim=2), torch.stack(rew_t, dim=2)


@pytest.mark.parametrize("game", [ipd(), rps(n_players=3)], ids=["ipd", "rps3"])
def test_sample_episodes_draws_what_the_pre_seam_loop_drew(game):
    g = torch.Generator().manual_seed(0)
    meta = LSTMCategorical(game.obs_dim, game.n_actions, hidden=8)
    peer = Tabular(game.n_states, game.n_actions)
    policies = [meta] + [peer] * (game.n_agents - 1)
    params = [meta.init_params(g)] + [{"logits": torch.randn(3, game.n_states, game.n_actions, generator=g)}
                                      for _ in range(game.n_agents - 1)]
    ref = _reference_sample(game, policies, params, 3, 4, 7, torch.Generator().manual_seed(1), torch.float32)
    new = sample_episodes(game, policies, params, 3, 4, 7, torch.Generator().manual_seed(1))
    assert torch.equal(new.obs, ref[0]) and torch.equal(new.actions, ref[1]) and torch.equal(new.rewards, ref[2])
    batch = score(policies, params, new)
    for k in range(1, game.n_agents):  # tabular peers: logits = one-hot state @ table
        logits = new.obs @ params[k]["logits"].unsqueeze(1)  # [B, K, H, A]
        ref_logp = torch.log_softmax(logits, -1).gather(-1, new.actions[..., k:k + 1]).squeeze(-1)
        assert torch.allclose(batch.logp[k], ref_logp, atol=1e-6)
        assert torch.allclose(batch.probs[k], torch.softmax(logits, -1), atol=1e-6)
        assert torch.allclose(batch.entropy[k], torch.distributions.Categorical(logits=logits).entropy(), atol=1e-6)
    assert all(lp.shape == (3, 4, 7) for lp in batch.logp)


def test_play_halfcheetah_with_gaussian_lstms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env("halfcheetah-2x3", max_steps=6)
    policies = [make_policy("lstm_gaussian", env.observation_spaces[k], env.action_spaces[k], hidden=8)
                for k in range(2)]
    g = torch.Generator().manual_seed(0)
    params = [{k: v.requires_grad_(True) for k, v in p.init_params(g).items()} for p in policies]
    traj = play(env, policies, params, n_chains=1, n_episodes=2, generator=g, seed=0)
    assert [o.shape for o in traj.obs] == [(1, 2, 6, 12)] * 2
    assert [a.shape for a in traj.actions] == [(1, 2, 6, 3)] * 2
    assert traj.rewards.shape == (1, 2, 6, 2) and torch.equal(traj.rewards[..., 0], traj.rewards[..., 1])
    assert bool(traj.dones[..., -1].all()) and not bool(traj.dones[..., :-1].any())
    # score the continuous actions: a differentiable log-probability per step
    state = policies[0].initial_state(params[0], (1, 2))
    total = 0
    for t in range(6):
        out, state = policies[0].step(params[0], traj.obs[0][:, :, t], state)
        total = total + policies[0].distribution(params[0], out).log_prob(traj.actions[0][:, :, t])
    grads = torch.autograd.grad(total.sum(), [params[0]["log_std"], params[0]["out_w"]])
    assert all(torch.isfinite(x).all() and x.abs().sum() > 0 for x in grads)
