"""Persona sources: the tabular personas reach the chains as exactly the logits they were
before pools became parameters, and checkpoint personas load what was saved, split with the
gap, and refuse a policy class or shape that does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from league.config import ConfigError, load_config
from league.personas import (CHECKPOINT_TYPES, checkpoint_personas, ipd_personas, pool_size, rps_personas,
                             save_checkpoint, take)
from league.policies import LSTMGaussian, Tabular
from league.setting import build_setting

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("name, make", [("ipd_quick.toml", lambda: ipd_personas(0)),
                                        ("rps3.toml", lambda: rps_personas(0, n_players=3))])
def test_tabular_source_gives_the_generated_personas_as_their_logits(name, make):
    setting = build_setting(load_config(CONFIGS / name))
    want = make()
    for split in ("train", "val", "test"):
        probs = getattr(want, split)
        assert torch.equal(getattr(setting.personas, split), probs)
        assert set(getattr(setting.population, split)) == {"logits"}
        assert torch.equal(getattr(setting.population, split)["logits"], torch.log(probs))
        assert getattr(setting.population, f"{split}_types") == getattr(want, f"{split}_types")


def test_peers_drawn_from_parameters_are_the_peers_drawn_from_probabilities():
    """The chains' peers: sampled and seated from the parameter pool, bit for bit what the
    probability pool gave through ``Tabular.from_probs`` (the path before this change)."""
    setting = build_setting(load_config(CONFIGS / "rps3.toml"))
    by_params = setting.peer_params(setting.sample_peers(setting.population.train, 5, torch.Generator().manual_seed(3)))
    by_probs = setting.peer_params(setting.sample_peers(setting.personas.train, 5, torch.Generator().manual_seed(3)))
    assert len(by_params) == len(by_probs) == 2
    for a, b in zip(by_params, by_probs):
        assert torch.equal(a["logits"], b["logits"])
    groups_params = setting.peer_params(setting.peer_groups(setting.population.test))
    groups_probs = setting.peer_params(setting.peer_groups(setting.personas.test))
    for a, b in zip(groups_params, groups_probs):
        assert torch.equal(a["logits"], b["logits"])


def _policy(hidden: int = 4) -> LSTMGaussian:
    return LSTMGaussian(obs_dim=17, out_dim=3, hidden=hidden)


def _save_population(directory: Path, n: int, hidden: int = 4, name: str = "lstm_gaussian") -> list[dict]:
    """``n`` checkpoints with distinct parameters (iteration ``i`` drawn from seed ``i``)."""
    saved = []
    for i in range(n):
        params = _policy(hidden).init_params(torch.Generator().manual_seed(i))
        save_checkpoint(directory, i, name, params, expertise=float(i))
        saved.append(params)
    return saved


def _template(hidden: int = 4) -> dict[str, torch.Tensor]:
    return _policy(hidden).init_params(torch.Generator().manual_seed(0))


def _which(pool: dict[str, torch.Tensor], saved: list[dict]) -> list[int]:
    """The saved iteration each persona of ``pool`` is, by exact equality of every parameter."""
    out = []
    for j in range(pool_size(pool)):
        hits = [i for i, p in enumerate(saved) if all(torch.equal(pool[k][j], p[k][0]) for k in p)]
        assert len(hits) == 1, hits
        out.append(hits[0])
    return out


def test_checkpoint_source_loads_what_was_saved_split_with_the_gap(tmp_path):
    saved = _save_population(tmp_path, 12)
    split = checkpoint_personas(tmp_path, "lstm_gaussian", _template(), [0, 6], [9, 12], n_val=2, seed=5)
    train, val, test = (_which(getattr(split, s), saved) for s in ("train", "val", "test"))
    assert sorted(train + val) == list(range(6)) and len(val) == 2  # every early checkpoint once
    assert test == [9, 10, 11]  # the late ones, in order; 6..8 are the gap
    assert split.type_names == CHECKPOINT_TYPES
    assert split.train_types == ["early"] * 4 and split.test_types == ["late"] * 3
    again = checkpoint_personas(tmp_path, "lstm_gaussian", _template(), [0, 6], [9, 12], n_val=2, seed=5)
    assert _which(again.val, saved) == val  # the train/val split is fixed by the population seed
    other = checkpoint_personas(tmp_path, "lstm_gaussian", _template(), [0, 6], [9, 12], n_val=2, seed=6)
    assert sorted(_which(other.train, saved) + _which(other.val, saved)) == list(range(6))


@pytest.mark.parametrize("train_val, test, n_val, message", [
    ([0, 6], [5, 8], 2, "end <= test start"),  # overlapping ranges: no gap
    ([0, 6], [2, 4], 2, "end <= test start"),
    ([0, 6], [8, 12], 6, "n_val must leave"),
])
def test_checkpoint_split_refuses_ranges_without_a_gap(tmp_path, train_val, test, n_val, message):
    _save_population(tmp_path, 12)
    with pytest.raises(ValueError, match=message):
        checkpoint_personas(tmp_path, "lstm_gaussian", _template(), train_val, test, n_val, seed=0)


def test_checkpoint_source_refuses_a_policy_that_does_not_fit(tmp_path):
    _save_population(tmp_path, 4, hidden=4)
    with pytest.raises(ValueError, match=r"holds a 'lstm_gaussian' policy, but the peer policy class is 'tabular'"):
        checkpoint_personas(tmp_path, "tabular", {"logits": torch.zeros(1, 5, 2)}, [0, 2], [3, 4], 1, 0)
    with pytest.raises(ValueError, match=r"parameter 'in_w' has shape \(4, 17\), the 'lstm_gaussian' peer policy "
                                         r"needs \(8, 17\)"):
        checkpoint_personas(tmp_path, "lstm_gaussian", _template(hidden=8), [0, 2], [3, 4], 1, 0)
    with pytest.raises(FileNotFoundError, match="iteration_0006.pt does not exist"):
        checkpoint_personas(tmp_path, "lstm_gaussian", _template(), [0, 2], [6, 8], 1, 0)


def test_take_indexes_tensors_and_parameter_dicts_alike():
    probs = torch.rand(6, 5, 2)
    idx = torch.tensor([[4, 1], [0, 0]])
    assert torch.equal(take(probs, idx), probs[idx])
    params = Tabular.from_probs(probs)
    assert torch.equal(take(params, idx)["logits"], params["logits"][idx])
    assert pool_size(params) == pool_size(probs) == 6


@pytest.mark.parametrize("override, message", [
    (["population.source=pickles"], "unknown population.source 'pickles'"),
    (["agent.policy=transformer"], "unknown agent.policy 'transformer'"),
    (["game.name=halfcheetah-3x3"], "unknown game 'halfcheetah-3x3'"),
    (["game.env_kwargs={observe = \"state\"}"], "the matrix game 'ipd' takes none"),
])
def test_config_names_what_does_not_exist(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_the_halfcheetah_config_loads_and_round_trips():
    from league.config import build, to_toml
    import tomllib

    from league.config import ExperimentConfig

    cfg = load_config(CONFIGS / "halfcheetah.toml")
    assert cfg.game.env_kwargs == {"observe": "state"} and cfg.population.peer_kwargs == {"hidden": 64}
    assert build(ExperimentConfig, tomllib.loads(to_toml(cfg))) == cfg
