"""The cheaper rollout and scoring paths give today's numbers: whole-episode scoring
(``policy_sequence``) against stepping, the in-place Gumbel sampler and one-hot by indexing
against their closed forms, and a whole LOLA-DiCE update against the step-by-step path."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from league.updates import LolaDice, ascend
from league.envs.base import flat_obs
from league.evaluators import SampledEvaluator
from league.games import ipd
from league.policies import LSTMCategorical, Tabular
from league.policies.base import policy_sequence, sample_categorical
from league.rollout import sample_episodes, score

import gymnasium

pytestmark = pytest.mark.timeout(120)


@dataclasses.dataclass
class SteppedTabular:
    """Tabular without ``sequence``: scored step by step, as every policy was before. It keeps
    ``state_logits``, so it samples through the same table sampler and both paths score
    identical episodes."""

    table: Tabular

    def state_logits(self, params):
        return self.table.state_logits(params)

    def init_params(self, generator, batch=1):
        return self.table.init_params(generator, batch)

    def initial_state(self, params, batch_shape):
        return None

    def step(self, params, obs, state):
        return torch.matmul(obs, params["logits"]), None

    def distribution(self, params, out):
        return self.table.distribution(params, out)


def _random_table(batch: int, seed: int) -> dict[str, torch.Tensor]:
    return {"logits": torch.randn(batch, 5, 2, generator=torch.Generator().manual_seed(seed))}


@pytest.mark.parametrize("batch_params", [1, 3])
def test_tabular_sequence_equals_stepping_bit_for_bit(batch_params: int) -> None:
    game, table = ipd(), Tabular(5, 2)
    g = torch.Generator().manual_seed(0)
    params = [_random_table(batch_params, 1), _random_table(batch_params, 2)]
    episodes = sample_episodes(game, [table, table], params, 3, 16, 20, g)
    for p in params:
        fast = policy_sequence(table, p, episodes.obs)
        slow = policy_sequence(SteppedTabular(table), p, episodes.obs)
        assert fast.shape == slow.shape == (3, 16, 20, 2) and torch.equal(fast, slow)
        # and the bmm step equals the plain matmul
        assert torch.equal(table.step(p, episodes.obs[:, :, 0], None)[0],
                           torch.matmul(episodes.obs[:, :, 0], p["logits"]))


def test_lstm_sequence_equals_stepping() -> None:
    lstm = LSTMCategorical(obs_dim=5, out_dim=2, hidden=8)
    p = lstm.init_params(torch.Generator().manual_seed(0), batch=2)
    obs = F.one_hot(torch.randint(5, (2, 4, 7), generator=torch.Generator().manual_seed(1)), 5).float()

    class Stepped:
        initial_state, step = lstm.initial_state, lstm.step

    assert torch.equal(policy_sequence(lstm, p, obs), policy_sequence(Stepped(), p, obs))


def test_sampler_and_one_hot_match_their_closed_forms() -> None:
    logits = torch.randn(4, 64, 3, generator=torch.Generator().manual_seed(0))
    got = sample_categorical(logits, torch.Generator().manual_seed(7))
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(7))
    want = torch.argmax(logits - torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny))), dim=-1)
    assert torch.equal(got, want)
    x = torch.randint(5, (3, 7))
    for dtype in (torch.float32, torch.float64):
        one_hot = flat_obs(gymnasium.spaces.Discrete(5), x, dtype)
        assert one_hot.dtype == dtype and torch.equal(one_hot, F.one_hot(x, 5).to(dtype))
        one_hot += 1  # a fresh tensor: the cached identity is untouched
        assert torch.equal(flat_obs(gymnasium.spaces.Discrete(5), x, dtype), F.one_hot(x, 5).to(dtype))


def _lola_update(policy, seed: int) -> list[torch.Tensor]:
    """Gradients of both agents' LOLA-DiCE objectives (look-ahead 1) on IPD from a fixed seed."""
    game = ipd()
    g = torch.Generator().manual_seed(seed)
    evaluator = SampledEvaluator(game, [policy, policy], 32, 30, 0.96, g)
    params = [{n: v.requires_grad_(True) for n, v in _random_table(1, s).items()} for s in (3, 4)]
    lrs = [torch.full((1, 1), 0.3), torch.full((1, 1), 0.3)]
    grads = []
    for k in range(2):
        objective = LolaDice(1).objective(evaluator, params, None, k, lrs, 0)
        step = ascend(params[k], objective, torch.tensor([1.0]), create_graph=False)
        grads.append(step["logits"] - params[k]["logits"].detach())
    return grads


def test_lola_dice_update_equals_the_step_by_step_path() -> None:
    table = Tabular(5, 2)
    fast, slow = _lola_update(table, 11), _lola_update(SteppedTabular(table), 11)
    for a, b in zip(fast, slow):
        assert a.abs().max() > 1e-3  # a real gradient, not zero
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_scores_agree_with_stepping_including_gradients() -> None:
    game, table = ipd(), Tabular(5, 2)
    g = torch.Generator().manual_seed(5)
    params = [{n: v.requires_grad_(True) for n, v in _random_table(2, s).items()} for s in (8, 9)]
    episodes = sample_episodes(game, [table, table], params, 2, 8, 12, g)
    fast = score([table, table], params, episodes)
    slow = score([SteppedTabular(table)] * 2, params, episodes)
    for k in range(2):
        assert torch.equal(fast.logp[k], slow.logp[k]) and torch.equal(fast.entropy[k], slow.entropy[k])
    gf = torch.autograd.grad(fast.logp[0].sum() + fast.entropy[1].sum(), [p["logits"] for p in params])
    gs = torch.autograd.grad(slow.logp[0].sum() + slow.entropy[1].sum(), [p["logits"] for p in params])
    for a, b in zip(gf, gs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
