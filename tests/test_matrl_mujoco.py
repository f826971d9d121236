"""Multi-agent MuJoCo for deep MATRL: Hopper 3x1 and Ant 4x2 seats, spaces and shared team
reward; one deep MATRL round on Hopper with Gaussian policies (tiny shapes) gives a meta-game
whose Nash weights verify and finite next parameters; the run config builds."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from league.envs import make_env
from league.envs.base import flat_dim
from league.envs.checks import play_random
from league.matrl.deep import DeepMATRLConfig, deep_round, run_deep_matrl
from league.matrl.ppo import Critic, PPOConfig
from league.nash.solvers import is_epsilon_nash
from league.policies import make_policy
from league.rollout import play_episodes

torch.set_num_threads(1)


def _env(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium-robotics' deprecation notices
        return make_env(name, **kwargs)


@pytest.mark.parametrize("name, seats, action_dim, own_obs, state_dim", [
    ("hopper-3x1", 3, 1, [8, 9, 8], 11),
    ("ant-4x2", 4, 2, [42, 42, 42, 42], 105),
])
def test_mamujoco_seats_share_the_team_reward(name, seats, action_dim, own_obs, state_dim):
    env = _env(name, max_steps=6)
    assert env.n_agents == seats and [s.shape for s in env.action_spaces] == [(action_dim,)] * seats
    assert [s.shape[0] for s in env.observation_spaces] == own_obs
    state = _env(name, max_steps=6, observe="state")
    assert [s.shape for s in state.observation_spaces] == [(state_dim,)] * seats
    steps = play_random(env, (2,), seed=0, action_seed=0)
    rewards = torch.stack([s.rewards for s in steps[1:]])
    assert rewards.abs().sum() > 0 and all(torch.equal(rewards[..., 0], rewards[..., k]) for k in range(seats))
    with pytest.raises(ValueError, match=f"{name} has {seats} seats"):
        _env(name, n_players=2)


def test_a_deep_matrl_round_on_hopper_gives_verified_nash_weights_and_finite_parameters():
    """Hopper 3x1, every seat reading the full state, ``mlp_gaussian`` policies: the 3-seat
    meta-game (``[3, 2, 2, 2]``, zero at the all-current corner) from the PPO step's own
    episodes; the Nash weights are a verified equilibrium of it (or 0 where none verified); the
    best responses start at the predictions and move; everything finite."""
    env = _env("hopper-3x1", max_steps=12, observe="state")
    g = torch.Generator().manual_seed(0)
    cfg = DeepMATRLConfig(env="hopper-3x1", n_players=3, variant="matrl", policy="mlp_gaussian", episodes=8,
                          ppo=PPOConfig(epochs=3, hidden=16, critic_epochs=2, value_coef=0.001, kl_coef=0.01))
    policies = [make_policy("mlp_gaussian", env.observation_spaces[k], env.action_spaces[k], hidden=16,
                            activation="leaky_relu") for k in range(3)]
    params = [p.init_params(g) for p in policies]
    critics = [Critic(flat_dim(env.observation_spaces[k]), cfg.ppo, g) for k in range(3)]
    episodes = play_episodes(env, policies, params, 1, cfg.episodes, g)
    out = deep_round(policies, params, critics, episodes, cfg, [g] * env.n_agents)
    assert out.metagame.shape == (3, 2, 2, 2) and torch.isfinite(out.metagame).all()
    assert torch.equal(out.metagame[:, 0, 0, 0], torch.zeros(3))  # no gain over the current profile
    assert out.weights.shape == (3,) and bool(((out.weights >= 0) & (out.weights <= 1)).all())
    if out.solver:
        profile = [torch.stack([1 - w, w]).double() for w in out.weights]
        assert bool(is_epsilon_nash(out.metagame.double(), profile, cfg.nash_eps))
    else:
        assert torch.equal(out.weights, torch.zeros(3))
    for new, pred, cur in zip(out.params, out.predicted, params):
        assert all(torch.isfinite(v).all() for v in new.values())
        assert not torch.equal(new["out_w"], pred["out_w"]) and not torch.equal(pred["out_w"], cur["out_w"])
        assert set(new) == set(cur) and "log_std" in new


def test_run_deep_matrl_builds_the_env_and_policy_from_the_config():
    """``env_kwargs`` and ``policy_kwargs`` reach the factories: two iterations on Ant 4x2 with
    8-step episodes; checkpoints come after every iteration."""
    cfg = DeepMATRLConfig(env="ant-4x2", n_players=4, variant="matrl", policy="mlp_gaussian", episodes=3,
                          iterations=2, env_kwargs={"max_steps": 8}, policy_kwargs={"mean_scale": 0.01},
                          ppo=PPOConfig(epochs=1, hidden=8, critic_epochs=1))
    kept = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recs = run_deep_matrl(cfg, 0, checkpoint=lambda it, params: kept.append((it, params)))
    assert [r["iteration"] for r in recs] == [0, 1] and all(r["steps"] <= 3 * 8 for r in recs)
    assert [it for it, _ in kept] == [0, 1] and len(kept[0][1]) == 4
    assert all(math.isfinite(r["team_return"]) and len(r["weights"]) == 4 for r in recs)


def test_the_shipped_mujoco_config_builds():
    """configs/matrl/mujoco.toml (scripts/matrl_mujoco.py): every task's DeepMATRLConfig builds
    and names a registered environment."""
    from league.config import read_table
    from league.envs import ENVIRONMENTS
    from league.matrl.deep import task_config

    root = Path(__file__).resolve().parents[1]
    table = read_table(root / "configs" / "matrl" / "mujoco.toml", [])
    for task in table["task"]:
        cfg = task_config(table.get("base", {}), task)
        assert cfg.env in ENVIRONMENTS and cfg.policy == "mlp_gaussian" and cfg.env_kwargs["max_steps"] >= 1
