"""2-agent HalfCheetah end to end at tiny shapes: the teammate population pretrains and
regenerates from its seed, a Setting builds from a config over its checkpoints, and one
meta-iteration of every method gives a finite, nonzero meta-gradient that moves the
meta-agent."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

from league.config import load_config  # noqa: E402
from league.experiment import adapt  # noqa: E402
from league.meta_training import MetaTraining  # noqa: E402
from league.personas import load_checkpoints  # noqa: E402
from league.teammates import TeammateConfig, population_exists, pretrain_teammates  # noqa: E402

CONFIG = Path(__file__).parents[1] / "configs" / "halfcheetah.toml"
TINY = dict(iterations=6, episodes=2, horizon=4, hidden=8, lr=0.05)


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> tuple[TeammateConfig, list[float]]:
    cfg = TeammateConfig(directory=str(tmp_path_factory.mktemp("teammates")), **TINY)
    return cfg, pretrain_teammates(cfg)


def test_pretraining_saves_the_front_leg_at_every_iteration(population):
    cfg, expertise = population
    assert population_exists(cfg) and len(expertise) == cfg.iterations
    saved = load_checkpoints(cfg.directory, range(cfg.iterations))
    assert [c["iteration"] for c in saved] == list(range(cfg.iterations))
    assert [c["expertise"] for c in saved] == expertise and all(math.isfinite(e) for e in expertise)
    assert all(c["policy"] == "lstm_gaussian" and c["params"]["in_w"].shape == (1, 8, 17) for c in saved)
    for a, b in zip(saved, saved[1:]):  # every iteration's update moved the teammate
        assert not torch.equal(a["params"]["lstm_w"], b["params"]["lstm_w"])


def test_the_population_regenerates_from_its_seed(population, tmp_path):
    cfg, expertise = population
    again = TeammateConfig(directory=str(tmp_path), **{**TINY, "iterations": 3})
    assert pretrain_teammates(again) == expertise[:3]
    for a, b in zip(load_checkpoints(cfg.directory, range(3)), load_checkpoints(tmp_path, range(3))):
        assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])


def _config(directory: str, extra: tuple[str, ...] = ()):
    return load_config(CONFIG, [f"population.directory={directory!r}".replace("'", '"'),
                                "population.train_val=[0,3]", "population.test=[4,6]", "population.n_val=1",
                                "population.peer_kwargs={hidden = 8}", "agent.hidden=8", "chain.trajectories=2",
                                "chain.horizon=4", "chain.length=1", "train.meta_batch=2", *extra])


@pytest.mark.parametrize("method", ["meta-mapg", "meta-pg", "lola-dice", "reinforce"])
def test_one_meta_iteration_of_every_method_runs_on_halfcheetah(population, method):
    cfg = _config(population[0].directory)
    mt = MetaTraining.build(cfg, method, seed=0)
    setting = mt.setting
    assert setting.game is None and setting.env.observation_spaces[0].shape == (17,)
    assert setting.env.max_steps == 4
    before = {k: v.detach().clone() for k, v in mt.learner.policy.items()}
    stats = mt.iterate(mt.evaluator, mt.sample_peers())
    assert math.isfinite(stats["grad_norm"]) and stats["grad_norm"] > 0, stats
    assert math.isfinite(stats["meta_reward"])
    assert all(torch.isfinite(v).all() for v in mt.learner.policy.values())
    assert any(not torch.equal(before[k], mt.learner.policy[k]) for k in before)


def test_meta_test_plays_every_test_teammate_along_the_chain(population):
    cfg = _config(population[0].directory)
    mt = MetaTraining.build(cfg, "meta-mapg", seed=0)
    result = adapt(mt.setting, mt.method, mt.learner.policy, mt.learner.lr, mt.setting.population.test,
                   torch.Generator().manual_seed(0))
    assert result.rewards.shape == (2, 2, 2) and result.action_probs is None  # [L+1, N test, seats]
    assert (result.rewards[..., 0] == result.rewards[..., 1]).all()  # shared team reward
