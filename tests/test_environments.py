"""One contract for every registered environment (league.envs.checks), PettingZoo's own API
and seed tests included, plus the adapter's errors on bad input."""

from __future__ import annotations

import time
import warnings

import gymnasium
import pytest
import numpy as np
import torch
from pettingzoo import ParallelEnv

from league.envs import ENVIRONMENTS, make_env, parallel_env
from league.envs.checks import check_environment, play_random
from league.envs.pettingzoo import PettingZooEnv, resolve_factory
from league.games.exact import exact_value

CASES = {
    "ipd": dict(horizon=6),
    "rps": dict(n_players=2, horizon=5),
    "rps3": dict(n_players=3, horizon=5),
    "rps4": dict(n_players=4, horizon=4),
    "halfcheetah-2x3": dict(max_steps=12),
    "halfcheetah-2x3-state": dict(max_steps=12, observe="state"),
    "hopper-3x1": dict(max_steps=8),
    "hopper-3x1-state": dict(max_steps=8, observe="state"),
    "ant-4x2": dict(max_steps=8),
    "pong-2p": dict(max_steps=6),  # skipped where the atari extra is not installed
    "checkers": dict(),
    "switch": dict(n_players=2),
    "switch4": dict(n_players=4),
    # any PettingZoo ParallelEnv by "module:factory": here one with Discrete observations
    "league.envs:parallel_env": dict(env="rps", n_players=3, horizon=4, max_steps=4),
}
REGISTRY_NAME = {"rps3": "rps", "rps4": "rps", "switch4": "switch", "halfcheetah-2x3-state": "halfcheetah-2x3",
                 "hopper-3x1-state": "hopper-3x1"}
# one MuJoCo model (or Atari emulator) per element; the adapter's 2-d batches are tested above
BATCH = {"halfcheetah-2x3": (3,), "halfcheetah-2x3-state": (3,), "hopper-3x1": (3,), "hopper-3x1-state": (3,),
         "ant-4x2": (2,), "pong-2p": (2,)}
NEEDS = {"pong-2p": "multi_agent_ale_py"}  # the optional extra's module: the case is skipped without it


def test_every_registered_environment_has_a_case():
    assert set(ENVIRONMENTS) <= {REGISTRY_NAME.get(c, c) for c in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_environment_contract(case):
    if case in NEEDS:
        pytest.importorskip(NEEDS[case])
    name, kwargs = REGISTRY_NAME.get(case, case), CASES[case]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium-robotics' deprecation notices
        check_environment(lambda: make_env(name, **kwargs), batch_shape=BATCH.get(case, (2, 3)))
    assert time.perf_counter() - t0 < 60


def test_halfcheetah_2x3_spaces_and_team_reward():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env("halfcheetah-2x3", max_steps=5)
    assert env.agents == ("agent_0", "agent_1")
    assert [s.shape for s in env.observation_spaces] == [(12,), (12,)]
    assert [s.shape for s in env.action_spaces] == [(3,), (3,)]
    steps = play_random(env, (3,), seed=0, action_seed=0)
    assert len(steps) == 6 and bool(steps[-1].truncated.all()) and not bool(steps[-1].terminated.any())
    rewards = torch.stack([s.rewards for s in steps[1:]])
    assert torch.equal(rewards[..., 0], rewards[..., 1]) and rewards.abs().sum() > 0  # shared, real physics


def test_halfcheetah_seats_can_both_read_the_full_state_and_the_team_can_be_paid_to_run_left():
    """``observe="state"``: both seats read the 17-d MuJoCo state of their batch element (the
    ParallelEnv's ``state()``); ``forward_reward_weight=-1`` (no control cost) pays exactly the
    negated forward reward for the same actions: the teammate population's "run left" task."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env("halfcheetah-2x3", max_steps=4, observe="state")
        right = make_env("halfcheetah-2x3", max_steps=4, ctrl_cost_weight=0.0)
        left = make_env("halfcheetah-2x3", max_steps=4, ctrl_cost_weight=0.0, forward_reward_weight=-1.0)
    assert [s.shape for s in env.observation_spaces] == [(17,), (17,)]
    steps = play_random(env, (2,), seed=0, action_seed=0)
    for j, model in enumerate(env._envs[:2]):
        state = torch.from_numpy(np.asarray(model.state())).to(steps[-1].obs[0].dtype)
        assert torch.equal(steps[-1].obs[0][j], state) and torch.equal(steps[-1].obs[1][j], state)
    r_right = torch.stack([s.rewards for s in play_random(right, (2,), seed=0, action_seed=1)[1:]])
    r_left = torch.stack([s.rewards for s in play_random(left, (2,), seed=0, action_seed=1)[1:]])
    assert r_right.abs().sum() > 0 and torch.allclose(r_left, -r_right, atol=1e-6)


def test_matrix_env_matches_the_exact_value_in_expectation():
    """Mean discounted return of uniform-random play over many batched episodes against the
    exact value of the uniform tabular policies (rps, 3 players)."""
    env = make_env("rps", n_players=3, horizon=4, dtype=torch.float64)
    gamma, batch = 0.9, (20_000,)
    steps = play_random(env, batch, seed=0, action_seed=3)
    returns = sum(gamma**t * s.rewards for t, s in enumerate(steps[1:]))
    uniform = torch.full((env.game.n_states, 3), 1 / 3, dtype=torch.float64)
    exact = exact_value(env.game, [uniform] * 3, gamma, horizon=4)
    se = returns.std(0) / batch[0] ** 0.5
    assert torch.all((returns.mean(0) - exact).abs() <= 4 * se)


class _DictSpaces(ParallelEnv):
    """A ParallelEnv whose observations are a Dict space: the adapter must refuse it."""

    metadata = {"name": "dict_spaces"}
    possible_agents = ["a", "b"]

    def observation_space(self, agent):
        return gymnasium.spaces.Dict({"x": gymnasium.spaces.Discrete(2)})

    def action_space(self, agent):
        return gymnasium.spaces.Discrete(2)


def dict_spaces_env():
    return _DictSpaces()


def not_parallel_env():
    return object()


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:parallel_env", r"unknown module 'no_such_module_xyz'"),
    ("league.envs:no_such_factory", r"module 'league.envs' has no factory 'no_such_factory'"),
    ("league.envs:", r"is not 'module:factory'"),
    ("tests.test_environments:dict_spaces_env", r"observation of a: unsupported space Dict"),
    ("tests.test_environments:not_parallel_env", r"returned object, not a PettingZoo ParallelEnv"),
])
def test_bad_pettingzoo_specs_get_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        make_env(spec, max_steps=3)


def test_unknown_env_and_missing_max_steps():
    with pytest.raises(ValueError, match=r"unknown env 'chess'.*halfcheetah-2x3.*module:factory"):
        make_env("chess")
    with pytest.raises(ValueError, match="needs max_steps"):
        make_env("league.envs:parallel_env", env="ipd")
    assert callable(resolve_factory("league.envs:parallel_env"))
    assert isinstance(parallel_env("ipd", horizon=3), ParallelEnv)
    assert isinstance(make_env("league.envs:parallel_env", env="ipd", horizon=3, max_steps=3), PettingZooEnv)
