"""Bad input for a league on any environment (issue 8): an agent describes its env (with its
factory arguments), its seat's observation and action spaces (``services.spaces``) and its
policy class; the referee refuses, with FAILED_PRECONDITION and one line naming what does
not fit, a join whose spaces do not fit the seats its role may take, whose env_kwargs differ,
whose policy class it does not know or cannot size for those spaces. A league config naming
an unknown ``module:factory`` (or a factory that is no PettingZoo ParallelEnv) fails at load,
and ``league up`` exits non-zero with one line. Real gRPC on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import gymnasium
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv

from league.config import ConfigError
from league.policies import make_policy
from services.gen.league.v1 import referee_pb2
from services.league_config import LeagueConfig, RefereeConfig, league_env, validate_league
from services.spaces import same_space, space_from_json, space_to_json
from tests.inprocess_league import InProcessLeague
from tests.league_procs import ROOT, env

pytest.importorskip("gymnasium_robotics")

CHEETAH = RefereeConfig(env="halfcheetah-2x3", env_kwargs={"observe": "state"}, rounds=0, lease_seconds=600.0,
                        fetch_timeout=5.0, horizon=10)
STATE = gymnasium.spaces.Box(-np.inf, np.inf, (17,), np.float64)
LEG = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)


def gaussian_params(obs: gymnasium.Space, act: gymnasium.Space, hidden: int = 8) -> dict[str, torch.Tensor]:
    return make_policy("lstm_gaussian", obs, act, hidden=hidden).init_params(torch.Generator().manual_seed(0))


def description(agent_id: str, obs=STATE, act=LEG, **changes):
    """A frozen Gaussian-LSTM agent's description for HalfCheetah 2x3 with full-state observations."""
    return {"agent_id": agent_id, "env": "halfcheetah-2x3", "n_players": 2, "env_kwargs": {"observe": "state"},
            "observation_space_json": space_to_json(obs), "action_space_json": space_to_json(act),
            "obs_dim": int(np.prod(obs.shape)), "n_actions": 0, "policy_class": "lstm_gaussian",
            "policy_config": {"hidden": 8}, "learning_rule": "frozen", "rule_config": {}, "capabilities": [],
            **changes}


@pytest.fixture(scope="module")
def league():
    lg = InProcessLeague(CHEETAH)
    yield lg
    lg.close()


@pytest.mark.parametrize("space", [
    gymnasium.spaces.Discrete(7),
    gymnasium.spaces.Box(-np.inf, np.inf, (17,), np.float64),
    gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32),
    gymnasium.spaces.Box(np.array([0.0, -np.inf]), np.array([1.0, 2.5]), (2,), np.float64),
    gymnasium.spaces.Box(0, 255, (2, 3), np.uint8),
])
def test_spaces_survive_their_json_encoding_exactly(space):
    text = space_to_json(space)
    json.loads(text)  # strict JSON: no Infinity tokens
    assert "Infinity" not in text
    back = space_from_json(text)
    assert same_space(back, space) and back == space


@pytest.mark.parametrize("text, message", [
    ("", "no space given"),
    ("[1]", "not a JSON object"),
    ('{"type": "Dict"}', "is not Discrete or Box"),
    ('{"type": "Discrete", "n": 0}', "positive integer"),
    ('{"type": "Box", "shape": [2], "dtype": "float32", "low": 0, "high": [1]}', "high has shape [1]"),
    ('{"type": "Box", "shape": [2], "dtype": "object", "low": 0, "high": 1}', "dtype 'object'"),
    ('{"type": "Box", "shape": [100000000], "dtype": "float32", "low": 0, "high": 1}', "more than"),
    ('{"type": "Box", "shape": [1], "dtype": "float32", "low": "nan", "high": 1}', "expected a finite number"),
    ("[" * 20000 + "]" * 20000, "nests too deeply"),
])
def test_malformed_spaces_are_one_line_errors(text, message):
    with pytest.raises(ValueError) as err:
        space_from_json(text)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("agent, params, changes, message", [
    ("own12", gaussian_params(gymnasium.spaces.Box(-np.inf, np.inf, (12,), np.float64), LEG),
     {"observation_space_json": space_to_json(gymnasium.spaces.Box(-np.inf, np.inf, (12,), np.float64)),
      "obs_dim": 12},
     "its observation space Box(float64, (12,), [-inf, inf]) does not fit seat 0 (agent_0) of halfcheetah-2x3, "
     "whose observation space is Box(float64, (17,), [-inf, inf])"),
    ("wide", gaussian_params(STATE, gymnasium.spaces.Box(-2.0, 2.0, (3,), np.float32)),
     {"action_space_json": space_to_json(gymnasium.spaces.Box(-2.0, 2.0, (3,), np.float32))},
     "its action space Box(float32, (3,), [-2, 2]) does not fit seat 0 (agent_0)"),
    ("kw", gaussian_params(STATE, LEG), {"env_kwargs": {"observe": "own"}},
     'agent builds halfcheetah-2x3 with env_kwargs \'{"observe": "own"}\', this league with {"observe": "state"}'),
    ("cls", gaussian_params(STATE, LEG), {"policy_class": "transformer"},
     "bad policy description: unknown policy class 'transformer'"),
    ("tab", gaussian_params(STATE, LEG), {"policy_class": "tabular", "policy_config": {}},
     "bad policy description: policy 'tabular' needs a Discrete observation space"),
    ("arg", gaussian_params(STATE, LEG), {"policy_config": {"hidden": 8, "heads": 4}},
     "bad policy description: policy class 'lstm_gaussian' takes no argument 'heads'"),
    ("huge", gaussian_params(STATE, LEG), {"policy_config": {"hidden": 100000}},
     "bad policy description: policy argument hidden = 100000 is not an integer in 1..512"),
    ("bad", gaussian_params(STATE, LEG), {"observation_space_json": '{"type": "Box"'},
     "bad observation space: space encoding is not JSON"),
    ("deep", gaussian_params(STATE, LEG), {"env_kwargs_json": "[" * 1500 + "]" * 1500},
     "agent builds halfcheetah-2x3 with env_kwargs"),
    ("deepcfg", gaussian_params(STATE, LEG), {"policy_config_json": "[" * 1500 + "]" * 1500},
     "bad policy description: maximum recursion depth exceeded"),
    ("dims", gaussian_params(STATE, LEG), {"obs_dim": 12},
     "agent declares obs_dim 12 and 0 actions, its spaces have obs_dim 17 and 0 actions"),
    ("size", gaussian_params(STATE, LEG, hidden=4), {},
     "tensor 'in_w' has shape [1, 4, 17], expected [1, 8, 17]"),
])
def test_a_join_whose_spaces_or_policy_do_not_fit_is_refused_in_one_line(league, agent, params, changes, message):
    league.assert_join_refused(agent, league.serve(params, description(agent, **changes)), message, role="meta")


def test_a_fitting_gaussian_agent_joins_at_every_role(league):
    for role in ("meta", "persona", "learner"):
        league.join(f"fits-{role}", league.serve(gaussian_params(STATE, LEG), description(f"fits-{role}")), role=role)
    status = league.ref.Status(referee_pb2.StatusRequest(), timeout=10)
    assert {"fits-meta", "fits-persona", "fits-learner"} <= {m.agent_id for m in status.members}
    assert json.loads(status.env_kwargs_json) == {"observe": "state"} and status.env == "halfcheetah-2x3"


class _Asymmetric(ParallelEnv):
    """Three seats whose observation spaces differ: a lead (seat 0) reads 3 numbers, two
    wings (seats 1, 2) read 5. Only its spaces are needed here (nothing is played)."""

    metadata = {"name": "asymmetric"}
    possible_agents = ["lead", "wing1", "wing2"]

    def observation_space(self, agent):
        return gymnasium.spaces.Box(-1.0, 1.0, (3 if agent == "lead" else 5,), np.float32)

    def action_space(self, agent):
        return gymnasium.spaces.Discrete(2)


def asymmetric_env():
    return _Asymmetric()


ASYMMETRIC = "tests.test_bad_input_spaces:asymmetric_env"
LEAD, WING = (gymnasium.spaces.Box(-1.0, 1.0, (d,), np.float32) for d in (3, 5))
FLIP = gymnasium.spaces.Discrete(2)


@pytest.mark.parametrize("role, obs, message", [
    ("meta", LEAD, None),
    ("persona", WING, None),
    ("meta", WING, "its observation space Box(float32, (5,), [-1, 1]) does not fit seat 0 (lead)"),
    ("persona", LEAD, "its observation space Box(float32, (3,), [-1, 1]) does not fit seat 1 (wing1)"),
    ("learner", LEAD, "does not fit seat 1 (wing1)"),
    ("learner", WING, "does not fit seat 0 (lead)"),
])
def test_spaces_are_checked_against_every_seat_the_role_may_take(role, obs, message):
    """A meta-agent sits at seat 0, a persona at any of seats 1..n-1, a learner anywhere: its
    declared spaces must fit each of them."""
    lg = InProcessLeague(RefereeConfig(env=ASYMMETRIC, n_players=3, rounds=0, lease_seconds=600.0, fetch_timeout=5.0))
    try:
        params = make_policy("mlp_categorical", obs, FLIP, hidden=4).init_params(torch.Generator().manual_seed(0))
        desc = description("a", obs, FLIP, env=ASYMMETRIC, n_players=3, env_kwargs={}, policy_class="mlp_categorical",
                           policy_config={"hidden": 4}, obs_dim=obs.shape[0], n_actions=2)
        address = lg.serve(params, desc)
        if message is None:
            lg.join("a", address, role=role)
            return
        with pytest.raises(grpc.RpcError) as err:
            lg.join("a", address, role=role)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and message in err.value.details(), \
            err.value.details()
    finally:
        lg.close()


def test_a_learner_in_an_environment_whose_seats_differ_is_refused_at_load():
    from services.league_config import AgentSpec

    cfg = LeagueConfig(referee=RefereeConfig(env=ASYMMETRIC, n_players=3),
                       agents=[AgentSpec(id="l0", role="learner", policy="mlp_categorical")])
    with pytest.raises(ConfigError) as err:
        validate_league(cfg)
    assert "agent l0: a learner may sit at seats [0, 1, 2] of " in str(err.value), str(err.value)
    assert "seat 1 (wing1) has other spaces than seat 0 (lead)" in str(err.value)


@pytest.mark.parametrize("env_name, kwargs, message", [
    ("no_such_module_xyz:make", {}, "unknown module 'no_such_module_xyz'"),
    ("league.envs:no_such_factory", {}, "module 'league.envs' has no factory 'no_such_factory'"),
    ("league.envs:rps_env", {}, "not a PettingZoo ParallelEnv"),
    ("halfcheetah-2x3", {"max_steps": 5}, "env_kwargs must not set ['max_steps']"),
    ("halfcheetah-2x3", {"no_such_kwarg": 1}, "no_such_kwarg"),
])
def test_a_league_config_with_an_environment_that_cannot_be_built_is_refused(env_name, kwargs, message):
    with pytest.raises(ConfigError) as err:
        validate_league(LeagueConfig(referee=RefereeConfig(env=env_name, env_kwargs=kwargs)))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_pettingzoo_factory_is_a_league_environment():
    """A ``module:factory`` league builds (PettingZoo's own parallel API in between) and its
    seats have the wrapped environment's spaces."""
    cfg = RefereeConfig(env="league.envs:parallel_env", env_kwargs={"env": "rps", "n_players": 3}, n_players=3)
    validate_league(LeagueConfig(referee=cfg))
    built = league_env(cfg.env, cfg.env_kwargs, cfg.n_players, cfg.horizon)
    assert built.n_agents == 3 and built.max_steps == cfg.horizon
    assert all(s == gymnasium.spaces.Discrete(28) for s in built.observation_spaces)


def test_league_up_fails_in_one_line_on_an_unknown_factory(tmp_path):
    config = tmp_path / "league.toml"
    config.write_text('name = "bad"\n[referee]\nenv = "no_such_module_xyz:make"\n[referee.env_kwargs]\nsize = 3\n')
    proc = subprocess.run([sys.executable, "-m", "services.cli", "up", str(config), "--out", str(tmp_path / "run")],
                          cwd=str(ROOT), env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("league: error: ") and "unknown module 'no_such_module_xyz'" in lines[0], \
        proc.stderr
