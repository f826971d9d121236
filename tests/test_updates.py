"""The update-rule registry (``league.updates``) and the coordinator-mode registry: one entry
serves the embedded chain and an agent process, and bad names are refused with the known ones.

The agent-process path (:func:`seat_step`, first-order, from broadcast episodes, knowing only
its own parameters) must give exactly the chain's update for that seat; the league-level
equivalence (a coordinator's replica against real agent processes) is in
``tests/test_league_equivalence.py``."""

from __future__ import annotations

import pytest
import torch

from league.chain import unroll
from league.evaluators import SampledEvaluator
from league.games import ipd
from league.policies import Tabular
from league.rollout import Episodes
from league.updates import UPDATE_RULES, Frozen, LolaDice, PolicyGradient, make_update_rule, seat_step
from services.league_config import AgentSpec, ConfigError, validate_agent

F64 = torch.float64


def _chain_step(rules, B=3, K=16, H=10, seed=0):
    """One non-differentiable chain step of IPD between two tabular seats, with its episodes."""
    game = ipd()
    g = torch.Generator().manual_seed(seed)
    policy = Tabular(game.n_states, game.n_actions, F64)
    params = [{"logits": torch.randn(B, game.n_states, game.n_actions, generator=g, dtype=F64)} for _ in range(2)]
    lrs = [torch.tensor([[0.7, 0.3]], dtype=F64).expand(B, -1), torch.tensor([[0.2, 0.1]], dtype=F64).expand(B, -1)]
    evaluator = SampledEvaluator(game, [policy, policy], K, H, 0.96, g, F64)
    steps = unroll(evaluator, params, rules, lrs, 1, differentiable=False)
    return evaluator, policy, steps, lrs


def test_agent_process_step_equals_chain_step():
    """``seat_step`` (what an agent process runs) reproduces the chain's policy-gradient step
    of each seat from the same episodes, to float64 precision."""
    evaluator, policy, steps, lrs = _chain_step([PolicyGradient(), PolicyGradient()])
    data = steps[0].data
    episodes = Episodes(data.obs, data.actions, data.rewards)
    moved = 0.0
    for seat in range(2):
        start = {k: v.detach() for k, v in steps[0].params[seat].items()}
        agent = seat_step(make_update_rule("pg"), evaluator, policy, start, episodes, seat, lrs[seat][:, 0])
        chain = steps[1].params[seat]
        assert torch.allclose(agent["logits"], chain["logits"].detach(), atol=1e-12, rtol=0)
        moved = max(moved, float((agent["logits"] - start["logits"]).abs().max()))
    assert moved > 1e-3  # the step is not a no-op: the comparison is sharp


def test_frozen_seat_never_moves():
    evaluator, policy, steps, lrs = _chain_step([PolicyGradient(), make_update_rule("frozen")])
    assert torch.equal(steps[1].params[1]["logits"], steps[0].params[1]["logits"])
    assert not torch.equal(steps[1].params[0]["logits"], steps[0].params[0]["logits"])
    data = steps[0].data
    start = {k: v.detach() for k, v in steps[0].params[1].items()}
    assert seat_step(Frozen(), evaluator, policy, start, Episodes(data.obs, data.actions, data.rewards), 1,
                     lrs[1][:, 0]) is start


def test_registry_names_and_refusals():
    assert {"pg", "frozen", "lola-dice"} <= set(UPDATE_RULES)
    assert make_update_rule("lola-dice", lookahead=2) == LolaDice(lookahead=2)
    with pytest.raises(ValueError, match="unknown update rule 'ppo-typo'; known: pg"):
        make_update_rule("ppo-typo")
    # look-ahead rules play episodes of their own: an agent process cannot follow them
    evaluator, policy, steps, lrs = _chain_step([PolicyGradient(), PolicyGradient()])
    data = steps[0].data
    with pytest.raises(ValueError, match="look-ahead"):
        seat_step(LolaDice(), evaluator, policy, steps[0].params[0], Episodes(data.obs, data.actions, data.rewards),
                  0, lrs[0][:, 0])
    spec = AgentSpec(id="a", role="learner", rule="lola-dice")
    with pytest.raises(ConfigError, match=r"rule must be one an agent process can follow \(pg, frozen(, [a-z-]+)*\), not 'lola-dice'"):
        validate_agent(spec)


def test_coordinator_modes_registry_refuses_unknown_mode():
    from league.config import load_config
    from services.coordinator import MODES, CoordinatorConfig, run_coordinator

    assert "meta-mapg" in MODES
    cfg = CoordinatorConfig(referee="127.0.0.1:1", meta_agent="meta", personas=["p0"])
    with pytest.raises(ValueError, match="unknown coordinator mode 'matrl-typo'; known: meta-mapg"):
        run_coordinator(load_config("configs/ipd_quick.toml"), "meta-mapg", 0, cfg, 1, "127.0.0.1", 0, 0,
                        None, None, mode="matrl-typo")
