"""MetaTraining.state_dict/load_state_dict: a run saved after one iteration, reloaded into a
freshly built run (through torch.save, as the coordinator's --state file) and continued,
gives exactly the uninterrupted run's meta-parameters, critic and optimiser moments."""

import io

import pytest
import torch

from league.config import load_config
from league.meta_training import MetaTraining
from tests.league_procs import ROOT

OVERRIDES = ["chain.trajectories=4", "chain.horizon=10", "chain.length=2", "train.meta_batch=2", "agent.hidden=8"]


def _run(mt: MetaTraining, iterations: int) -> list[dict]:
    return [mt.iterate(mt.evaluator, mt.sample_peers()) for _ in range(iterations)]


@pytest.mark.parametrize("method", ["meta-mapg", "meta-pg"])
def test_resumed_run_equals_uninterrupted_run(method):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", OVERRIDES)
    whole = MetaTraining.build(cfg, method, 0)
    stats_whole = _run(whole, 3)

    first = MetaTraining.build(cfg, method, 0)
    _run(first, 1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = MetaTraining.build(cfg, method, 0)  # a new process: built from the seed, then restored
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    stats_resumed = _run(resumed, 2)

    for name, value in whole.learner.policy.items():
        torch.testing.assert_close(resumed.learner.policy[name], value, atol=0, rtol=0)
    torch.testing.assert_close(resumed.learner.lr, whole.learner.lr, atol=0, rtol=0)
    if whole.learner.critic is not None:
        for name, value in whole.learner.critic.params.items():
            torch.testing.assert_close(resumed.learner.critic.params[name], value, atol=0, rtol=0)
    assert [s["objective"] for s in stats_resumed] == [s["objective"] for s in stats_whole[1:]]
    assert torch.equal(resumed.generator.get_state(), whole.generator.get_state())
    fresh = MetaTraining.build(cfg, method, 0)
    assert any(not torch.equal(fresh.learner.policy[k], v) for k, v in whole.learner.policy.items())  # it moved


def test_load_refuses_a_state_of_another_shape():
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml", OVERRIDES)
    state = MetaTraining.build(cfg, "meta-mapg", 0).state_dict()
    other = MetaTraining.build(load_config(ROOT / "configs" / "ipd_quick.toml", [*OVERRIDES[:-1], "agent.hidden=4"]),
                               "meta-mapg", 0)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)
