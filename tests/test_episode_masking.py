"""Episodes that end on their own: per-seat observations, padding after the end masked out
of every log-probability, and the sampled objectives still unbiased.

The exact check enumerates every way a tiny two-seat game with real termination can go
(:class:`StopGame`: it ends when both seats pick action 1), scores each outcome with the
project's own ``score``/``dice_objective`` exactly as a sampled batch would be scored, and
weights it by its probability: the expected gradient and Hessian of the DiCE surrogate
(with a baseline) then equal those of the exact value. Padding steps hold action 0 and the
last observation, as a done seat's slot does on the wire; without the mask their
log-probabilities would bias every baseline and advantage term.
"""

from __future__ import annotations

import itertools

import gymnasium
import pytest
import torch

from league.envs import make_env
from league.envs.base import TimeStep
from league.evaluators import SampledEvaluator
from league.learn import dice_objective
from league.learn.returns import discount_weights
from league.meta import meta_objective
from league.methods import make_method
from league.policies import Tabular, make_policy
from league.rollout import Episodes, play_episodes, sample_episodes, score

F64 = torch.float64
H = 3
GAMMA = 0.9
PAYOFF = torch.tensor([[[1.0, -1.0], [2.0, 0.5]],  # seat 0's reward for (a0, a1)
                       [[0.5, 2.0], [-1.0, 1.5]]], dtype=F64)  # seat 1's


class StopGame:
    """Two seats, actions {0, 1}, rewards ``PAYOFF[:, a0, a1]``; the episode ends by itself
    when both pick 1, else after ``H`` steps. Seat 0 observes the step index, seat 1 the
    previous joint outcome (0 at the start, 1 if the seats agreed, 2 if not): different
    observations per seat. A finished episode is absorbing (zero reward, same observation)."""

    name = "stop-game"
    agents = ("first", "second")
    observation_spaces = (gymnasium.spaces.Discrete(H + 1), gymnasium.spaces.Discrete(3))
    action_spaces = (gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(2))
    max_steps = H

    @property
    def n_agents(self) -> int:
        return 2

    def reset(self, batch_shape=(), seed=None) -> TimeStep:
        self.t = 0
        self.obs = [torch.zeros(batch_shape, dtype=torch.long), torch.zeros(batch_shape, dtype=torch.long)]
        self.done = torch.zeros(batch_shape, dtype=torch.bool)
        return TimeStep(list(self.obs), torch.zeros(*batch_shape, 2, dtype=F64), self.done.clone(), self.done.clone())

    def step(self, actions) -> TimeStep:
        a0, a1 = actions
        live = ~self.done
        rewards = PAYOFF[:, a0, a1].movedim(0, -1) * live.unsqueeze(-1)
        self.t += 1
        self.obs = [torch.where(live, torch.full_like(a0, self.t), self.obs[0]),
                    torch.where(live, 1 + (a0 != a1).long(), self.obs[1])]
        terminated = self.done | ((a0 == 1) & (a1 == 1))
        self.done = terminated | (self.t >= H)
        truncated = self.done & ~terminated
        return TimeStep(list(self.obs), rewards.to(F64), terminated, truncated)


def _outcomes() -> Episodes:
    """Every distinct way the game can go, one episode each (``[P, 1, H]``), with padding
    steps holding action 0 and the last observation."""
    seqs = []
    for joint in itertools.product(range(4), repeat=H):
        steps = []
        for j in joint:
            steps.append((j // 2, j % 2))
            if steps[-1] == (1, 1):
                break
        if steps not in seqs:
            seqs.append(steps)
    env = StopGame()
    obs0, obs1, acts, rews, dones = [], [], [], [], []
    for steps in seqs:
        ts = env.reset((1,))
        o0, o1, a, r, d = [], [], [], [], []
        for t in range(H):
            a0, a1 = steps[t] if t < len(steps) else (0, 0)
            o0.append(ts.obs[0]), o1.append(ts.obs[1])
            ts = env.step([torch.tensor([a0]), torch.tensor([a1])])
            a.append(torch.tensor([[a0, a1]])), r.append(ts.rewards), d.append(ts.dones)
        obs0.append(torch.stack(o0, -1)), obs1.append(torch.stack(o1, -1))
        acts.append(torch.stack(a, 1)), rews.append(torch.stack(r, 1)), dones.append(torch.stack(d, -1))
    one_hot = lambda x, n: torch.eye(n, dtype=F64)[torch.cat(x)].unsqueeze(1)  # noqa: E731  [P, 1, H, n]
    return Episodes(obs=one_hot(obs0, H + 1), actions=torch.cat(acts).unsqueeze(1), rewards=torch.cat(rews).unsqueeze(1),
                    dones=torch.cat(dones).unsqueeze(1), seat_obs=[one_hot(obs0, H + 1), one_hot(obs1, 3)])


def _policies():
    return [Tabular(H + 1, 2, dtype=F64), Tabular(3, 2, dtype=F64)]


def _params(gen: torch.Generator):
    return [{"logits": torch.randn(1, H + 1, 2, generator=gen, dtype=F64)},
            {"logits": torch.randn(1, 3, 2, generator=gen, dtype=F64)}]


def _expected_surrogate(flat: torch.Tensor, outcomes: Episodes, seat: int, baseline: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact value, expected DiCE surrogate) of ``seat`` as functions of both seats' flat
    logits: every outcome scored as a batch would be, weighted by its (detached) probability."""
    P = outcomes.rewards.shape[0]
    params = [{"logits": flat[:(H + 1) * 2].reshape(1, H + 1, 2).expand(P, -1, -1)},
              {"logits": flat[(H + 1) * 2:].reshape(1, 3, 2).expand(P, -1, -1)}]
    batch = score(_policies(), params, outcomes)
    log_prob = (batch.logp[0] + batch.logp[1]).sum(dim=(1, 2))  # [P]: padding contributes nothing
    prob = log_prob.exp()
    rewards = outcomes.rewards[..., seat]
    discounted = (rewards * discount_weights(H, GAMMA, dtype=F64)).sum(dim=(1, 2))
    value = (prob * discounted).sum()
    surrogate = dice_objective(batch.logp[0] + batch.logp[1], rewards, GAMMA,
                               baseline=torch.full_like(rewards, baseline))  # [P]
    return value, (prob.detach() * surrogate).sum()


def test_every_outcome_is_enumerated_once_and_probabilities_sum_to_one():
    outcomes = _outcomes()
    assert outcomes.rewards.shape[0] == 1 + 3 + 9 + 27 - 0  # stop at 1, 2 or 3, or never
    params = _params(torch.Generator().manual_seed(0))
    P = outcomes.rewards.shape[0]
    batch = score(_policies(), [{"logits": p["logits"].expand(P, -1, -1)} for p in params], outcomes)
    total = (batch.logp[0] + batch.logp[1]).sum(dim=(1, 2)).exp().sum()
    assert torch.allclose(total, torch.tensor(1.0, dtype=F64), atol=1e-12)


@pytest.mark.parametrize("seat", [0, 1])
def test_dice_with_baseline_is_unbiased_to_second_order_when_episodes_end_early(seat):
    """E[grad DiCE] = grad V and E[hess DiCE] = hess V, summed exactly over every outcome,
    with a baseline whose padding terms would bias both if padding were not masked."""
    outcomes = _outcomes()
    flat = torch.cat([p["logits"].reshape(-1) for p in _params(torch.Generator().manual_seed(seat))])
    value = lambda x: _expected_surrogate(x, outcomes, seat, 3.0)[0]  # noqa: E731
    surrogate = lambda x: _expected_surrogate(x, outcomes, seat, 3.0)[1]  # noqa: E731
    g_exact = torch.func.grad(value)(flat)
    g_dice = torch.func.grad(surrogate)(flat)
    assert torch.allclose(g_dice, g_exact, atol=1e-10), (g_dice - g_exact).abs().max()
    h_exact = torch.autograd.functional.hessian(value, flat)
    h_dice = torch.autograd.functional.hessian(surrogate, flat)
    assert torch.allclose(h_dice, h_exact, atol=1e-10), (h_dice - h_exact).abs().max()
    assert g_exact.abs().max() > 0.05 and h_exact.abs().max() > 0.05


def test_score_reads_each_seats_own_observations_and_zeroes_padding():
    outcomes = _outcomes()
    P = outcomes.rewards.shape[0]
    params = [{"logits": p["logits"].expand(P, -1, -1)} for p in _params(torch.Generator().manual_seed(3))]
    batch = score(_policies(), params, outcomes)
    alive = outcomes.alive()
    assert alive is not None and (alive == 0).any()
    for k in range(2):
        table = params[k]["logits"].log_softmax(-1)  # [P, S, 2]
        state = outcomes.seat_obs[k].argmax(-1)  # [P, 1, H]
        want = table[torch.arange(P)[:, None, None], state, outcomes.actions[..., k]] * alive
        assert torch.equal(batch.logp[k], want)
        assert torch.equal(batch.entropy[k] == 0, alive == 0)


def test_a_matrix_game_is_scored_exactly_as_before():
    """Episodes.of a matrix game's play is sample_episodes' data (shared state, joint actions)
    and nothing is masked: the last step's done changes no number."""
    game_env = make_env("ipd", horizon=6, dtype=F64)
    table = Tabular(5, 2, dtype=F64)
    params = [{"logits": torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(k), dtype=F64)} for k in range(2)]
    a = play_episodes(game_env, [table, table], params, 2, 4, torch.Generator().manual_seed(9), F64)
    b = sample_episodes(game_env.game, [table, table], params, 2, 4, 6, torch.Generator().manual_seed(9), F64)
    assert a.seat_obs is None and a.seat_actions is None and a.alive() is None
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards)
    sa, sb = score([table, table], params, a), score([table, table], params, b)
    assert all(torch.equal(x, y) for x, y in zip(sa.logp, sb.logp))


def test_sampled_evaluator_plays_an_environment_that_ends_early():
    env = StopGame()
    evaluator = SampledEvaluator(None, _policies(), 64, 0, GAMMA, torch.Generator().manual_seed(5), F64, env=env)
    params = [{k: v.expand(3, -1, -1).clone().requires_grad_(True) for k, v in p.items()}
              for p in _params(torch.Generator().manual_seed(5))]
    data = evaluator.observe(params)
    assert data.shape == (3, 64, H) and data.seat_obs is not None and data.dones is not None
    assert data.alive() is not None and (data.alive() == 0).any()
    objective = evaluator.inner_objective(data, 0, (0, 1))
    g = torch.autograd.grad(objective.sum(), params[0]["logits"])[0]
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_meta_mapg_meta_gradient_runs_on_two_agent_halfcheetah():
    """The Meta-MAPG meta-objective on MaMuJoCo HalfCheetah 2x3 with Gaussian LSTM policies
    (Box actions, per-seat observations): a finite, nonzero meta-gradient for the meta-agent."""
    torch.manual_seed(0)
    env = make_env("halfcheetah-2x3", max_steps=5, dtype=F64)
    policies = [make_policy("lstm_gaussian", env.observation_spaces[k], env.action_spaces[k], F64, hidden=8)
                for k in range(2)]
    gen = torch.Generator().manual_seed(0)
    meta = {k: v.requires_grad_(True) for k, v in policies[0].init_params(gen, 1).items()}
    peer = policies[1].init_params(gen, 2)
    evaluator = SampledEvaluator(None, policies, 3, 0, 0.99, gen, F64, env=env)
    lr = torch.full((1, 1), 0.1, dtype=F64, requires_grad=True)
    result = meta_objective(make_method("meta-mapg"), evaluator, meta, lr, [peer], [torch.full((2, 1), 0.1, dtype=F64)], 1)
    assert result.steps[0].data.seat_actions is not None
    assert result.steps[0].data.seat_actions[0].shape == (2, 3, 5, 3)
    grads = torch.autograd.grad(result.objective.sum(), [*meta.values(), lr])
    assert all(torch.isfinite(g).all() for g in grads)
    assert max(g.abs().max() for g in grads) > 0
