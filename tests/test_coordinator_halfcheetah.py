"""The meta-training coordinator (mode ``meta-mapg``) on 2-agent HalfCheetah: the referee steps
MaMuJoCo, a Gaussian-LSTM meta-agent process and a Gaussian-LSTM teammate process play each
chain step, the coordinator pushes the teammate a checkpoint persona and scores the chain with
its replica; one coordinated iteration gives the embedded iteration's meta-parameters."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

from league.config import load_config  # noqa: E402
from league.experiment import train_one  # noqa: E402
from league.meta_training import MetaTraining  # noqa: E402
from league.teammates import TeammateConfig, pretrain_teammates  # noqa: E402
from services.league_config import load_league_config  # noqa: E402
from tests.league_procs import ROOT  # noqa: E402
from tests.test_coordinator import _league, assert_coordinated_run_equals_embedded  # noqa: E402

TINY_POPULATION = dict(iterations=6, episodes=2, horizon=4, hidden=8, lr=0.05)


def _overrides(directory: str) -> list[str]:
    return ['methods=["meta-mapg"]', "seeds=[0]", f'population.directory="{directory}"',
            "population.train_val=[0,4]", "population.test=[5,6]", "population.n_val=1",
            "population.peer_kwargs={hidden = 8}", "agent.hidden=8", "chain.trajectories=2",
            "chain.horizon=4", "chain.length=2", "train.meta_batch=2", "train.iterations=1",
            "train.validate_every=1", "agent.peer_lr=0.01"]


def _league_toml() -> str:
    return ('name = "coordinated_halfcheetah"\n[referee]\nenv = "halfcheetah-2x3"\nn_players = 2\n'
            'trajectories = 2\nhorizon = 4\ngamma = 0.95\nchain_length = 2\nrounds = 0\nchains_by = "coordinator"\n'
            'fetch_timeout = 60.0\n[referee.env_kwargs]\nobserve = "state"\n\n'
            '[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm_gaussian"\nhidden = 8\n\n'
            + ''.join(f'[[agents]]\nid = "p{i}"\nrole = "persona"\npolicy = "lstm_gaussian"\nhidden = 8\nlr = [0.01]\n\n'
                    for i in range(2)))


@pytest.mark.slow  # about 1 min idle (4 processes stepping MuJoCo); 3.5 min under load
def test_a_coordinated_halfcheetah_iteration_equals_the_embedded_iteration(tmp_path):
    population = TeammateConfig(directory=str(tmp_path / "teammates"), **TINY_POPULATION)
    pretrain_teammates(population)
    overrides = _overrides(population.directory)
    cfg = load_config(ROOT / "configs" / "halfcheetah.toml", overrides)
    drawn = MetaTraining.build(cfg, "meta-mapg", 0).sample_peers().params[0]
    assert not torch.equal(drawn["lstm_w"][0], drawn["lstm_w"][1])  # each chain gets its own teammate
    embedded = train_one(cfg, "meta-mapg", 0).final
    lg, coord = _league(tmp_path, 0.01, overrides, league=_league_toml(), experiment_config="halfcheetah.toml",
                        personas=("p0", "p1"))
    assert_coordinated_run_equals_embedded(tmp_path, lg, coord, embedded, cfg.agent.inner_lr, timeout=300)


def test_the_committed_coordinated_halfcheetah_league_and_its_experiment_agree():
    """configs/league_halfcheetah_coordinated.toml and configs/halfcheetah.toml describe one
    run: the environment and its kwargs, K, H, L and discount, one teammate process per chain
    of the meta-batch, every teammate learning at the experiment's peer rate with its policy
    class and size (else the coordinator's replica check aborts the first iteration)."""
    league = load_league_config(ROOT / "configs" / "league_halfcheetah_coordinated.toml")
    cfg = load_config(ROOT / "configs" / "halfcheetah.toml")
    r, c = league.referee, cfg.chain
    assert (r.env, r.n_players, r.env_kwargs) == (cfg.game.name, cfg.game.n_players, cfg.game.env_kwargs)
    assert (r.trajectories, r.horizon, r.chain_length, r.gamma) == (c.trajectories, c.horizon, c.length, c.gamma)
    assert r.chains_by == "coordinator"
    meta = [a for a in league.agents if a.role == "meta"]
    teammates = [a for a in league.agents if a.role == "persona"]
    assert len(meta) == 1 and (meta[0].policy, meta[0].hidden) == (cfg.agent.policy, cfg.agent.hidden)
    assert len(teammates) == cfg.train.meta_batch * (cfg.game.n_players - 1)
    for a in teammates:
        assert (a.policy, a.hidden, a.lr) == (cfg.population.peer_policy, cfg.population.peer_kwargs["hidden"],
                                              [cfg.agent.peer_lr])
