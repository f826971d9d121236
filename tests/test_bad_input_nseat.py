"""Bad input at join and at start, for n seats: an agent whose game, seat count, spaces,
policy class or served parameter sizes do not fit the league is refused at Join with one
line naming what does not fit (the referee stays up, nothing is applied); a league config
naming an unknown ``module:factory`` environment, or one that cannot be built, fails at
``league referee`` start with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from league.config import ConfigError
from league.games import make_game
from services.gen.league.v1 import referee_pb2
from services.league_config import LeagueConfig, RefereeConfig, validate_league
from tests.inprocess_league import InProcessLeague, description
from tests.league_procs import ROOT, env

GAME3 = make_game("rps", n_players=3)
GOOD = {"logits": torch.zeros(1, GAME3.n_states, 3)}


@pytest.fixture(scope="module")
def league():
    lg = InProcessLeague(RefereeConfig(env="rps", n_players=3, rounds=0, lease_seconds=600.0, fetch_timeout=5.0))
    yield lg
    lg.close()


@pytest.mark.parametrize("agent, params, changes, message", [
    ("two", GOOD, {"n_players": 2}, "agent plays rps for 2 players, this league for 3"),
    ("ipd", GOOD, {"env": "ipd"}, "agent plays 'ipd', this league 'rps'"),
    ("obs", GOOD, {"obs_dim": 10}, "agent declares obs_dim 10 and 3 actions; rps has obs_dim 28 and 3 actions"),
    ("acts", GOOD, {"n_actions": 2}, "agent declares obs_dim 28 and 2 actions"),
    ("gauss", GOOD, {"policy_class": "gaussian"}, "bad policy description: unknown policy class 'gaussian'"),
    # a tabular policy sized for 2-player RPS (10 states) declaring the 3-player game's spaces
    ("tab10", {"logits": torch.zeros(1, 10, 3)}, {},
     "tensor 'logits' has shape [1, 10, 3], expected [1, 28, 3]"),
    ("names", {"weights": torch.zeros(1, 28, 3)}, {}, "has the wrong tensors: missing ['logits']"),
])
def test_a_join_that_does_not_fit_the_game_is_refused_in_one_line(league, agent, params, changes, message):
    league.assert_join_refused(agent, league.serve(params, description(agent, GAME3, **changes)), message)


def test_a_fitting_agent_still_joins(league):
    """The refusals above are about the misfit alone: the same agent, fitting, is admitted."""
    league.join("fits", league.serve(GOOD, description("fits", GAME3)))
    status = league.ref.Status(referee_pb2.StatusRequest(), timeout=10)
    assert "fits" in {m.agent_id for m in status.members} and status.n_players == 3


@pytest.mark.parametrize("env_name, message", [
    ("no_such_module_xyz:make", "unknown module 'no_such_module_xyz'"),
    ("league.envs:no_such_factory", "module 'league.envs' has no factory 'no_such_factory'"),
    ("league.envs:rps_env", "not a PettingZoo ParallelEnv"),
    ("chess", "unknown env 'chess'"),
])
def test_a_league_config_with_an_environment_the_referee_cannot_play_is_refused(env_name, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_league(LeagueConfig(referee=RefereeConfig(env=env_name)))
    assert "\n" not in str(err.value)


def test_league_referee_start_fails_in_one_line_on_an_unknown_factory(tmp_path):
    config = tmp_path / "league.toml"
    config.write_text('name = "bad"\n[referee]\nenv = "no_such_module_xyz:make"\n')
    proc = subprocess.run([sys.executable, "-m", "services.cli", "referee", str(config), "--insecure"],
                          cwd=str(ROOT), env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("league: error: ") and "unknown module 'no_such_module_xyz'" in last, proc.stderr
