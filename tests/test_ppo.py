"""The PPO trust-region step (league/matrl/ppo.py) against closed forms: the first epoch's
gradient is the importance-weighted policy gradient plus the entropy term, the clip zeroes a
step's gradient exactly where the ratio left [1 - eps, 1 + eps] in the advantage's direction,
and GAE over episodes that end at different steps is the per-episode recursion."""

from __future__ import annotations

import pytest
import torch

from league.learn.gae import gae_advantages
from league.matrl.ppo import Critic, PPOConfig, masked_gae, ppo_loss, ppo_step
from league.policies import Tabular
from league.rollout import Episodes, score

F64 = torch.float64


def _bandit(actions: list[int], rewards: list[float], n_states: int = 1) -> Episodes:
    """One-step episodes of one seat in state 0: ``[1, K, 1, ...]``."""
    K = len(actions)
    obs = torch.zeros(1, K, 1, n_states, dtype=F64)
    obs[..., 0] = 1.0
    return Episodes(obs=obs, actions=torch.tensor(actions).reshape(1, K, 1, 1),
                    rewards=torch.tensor(rewards, dtype=F64).reshape(1, K, 1, 1))


def _policy_gradient(logits: torch.Tensor, actions: list[int], adv: torch.Tensor, entropy_coef: float) -> torch.Tensor:
    """Closed form of the gradient of ``-mean_k A_k log pi(a_k) - c H(pi)`` in the logits."""
    p = torch.softmax(logits, -1)
    g = torch.zeros_like(logits)
    for a, A in zip(actions, adv):
        g -= A * (torch.nn.functional.one_hot(torch.tensor(a), len(logits)).to(F64) - p) / len(actions)
    H = -(p * p.log()).sum()
    grad_H = -p * (p.log() + H)
    return g - entropy_coef * grad_H


def test_first_epoch_gradient_is_the_importance_weighted_policy_gradient():
    policy = Tabular(1, 3, dtype=F64)
    logits = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    params = {"logits": logits.reshape(1, 1, 3).clone().requires_grad_(True)}
    actions, adv = [0, 2, 1, 2, 0], torch.tensor([1.5, -0.7, 0.2, 2.0, -1.1], dtype=F64)
    ep = _bandit(actions, [0.0] * 5)
    batch = score([policy], [params], ep)
    mask = torch.ones(1, 5, 1, dtype=F64)
    loss, parts = ppo_loss(batch.logp[0], batch.logp[0].detach(), batch.entropy[0], adv.reshape(1, 5, 1), mask,
                           clip=0.1, entropy_coef=0.05, kl_coef=3.0)
    grad = torch.autograd.grad(loss, params["logits"])[0].flatten()
    expected = _policy_gradient(logits, actions, adv, 0.05)
    print("autograd", grad.tolist(), "closed form", expected.tolist())
    assert torch.allclose(grad, expected, atol=1e-12)
    assert float(parts["kl"]) == pytest.approx(0.0, abs=1e-15)  # the KL term and its gradient vanish at the start


def test_ppo_step_moves_against_the_first_gradient_through_its_critic_advantages():
    """One epoch of Adam moves every logit by ``lr`` against the sign of the loss gradient,
    whose advantages are ``r - V(s)`` (one-step episodes, GAE) from the seat's critic."""
    policy = Tabular(1, 3, dtype=F64)
    params = {"logits": torch.tensor([[[0.3, -0.2, 0.5]]], dtype=F64)}
    actions, rewards = [0, 2, 1, 2, 0, 1], [1.0, 0.0, 3.0, -1.0, 2.0, 0.5]
    ep = _bandit(actions, rewards)
    cfg = PPOConfig(epochs=1, lr=0.01, normalize_advantages=False, entropy_coef=0.05, critic_epochs=1)
    critic = Critic(1, cfg, torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        v = float(critic(torch.ones(1, dtype=F64)))
    out = ppo_step(policy, params, critic, ep, 0, cfg)
    adv = torch.tensor(rewards, dtype=F64) - v
    assert torch.allclose(out.advantages.flatten(), adv, atol=1e-12)
    g = _policy_gradient(params["logits"].flatten(), actions, adv, 0.05)
    step = (out.params["logits"] - params["logits"]).flatten()
    print("step", step.tolist(), "gradient", g.tolist())
    assert torch.allclose(step, -0.01 * torch.sign(g), atol=1e-6)
    # the critic's fit moved V(s) toward the mean reward
    with torch.no_grad():
        assert abs(float(critic(torch.ones(1, dtype=F64))) - sum(rewards) / 6) < abs(v - sum(rewards) / 6)


@pytest.mark.parametrize("ratio, adv, zero", [
    (1.3, 1.0, True),    # improving action already pushed beyond 1 + eps: no further push
    (0.7, 1.0, False),   # improving action pushed below 1 - eps: the unclipped term still pulls it back
    (0.7, -1.0, True),   # worsening action already below 1 - eps: no further push
    (1.3, -1.0, False),  # worsening action above 1 + eps: still pushed down
    (1.05, 1.0, False),  # inside the region: the plain surrogate's gradient
])
def test_the_clip_zeroes_the_gradient_outside_the_region_in_the_advantages_direction(ratio, adv, zero):
    policy = Tabular(1, 2, dtype=F64)
    logits = torch.tensor([0.4, -0.1], dtype=F64)
    params = {"logits": logits.reshape(1, 1, 2).clone().requires_grad_(True)}
    ep = _bandit([0], [0.0])
    batch = score([policy], [params], ep)
    logp_old = batch.logp[0].detach() - torch.log(torch.tensor(ratio, dtype=F64))  # pi / pi_old = ratio
    loss, _ = ppo_loss(batch.logp[0], logp_old, batch.entropy[0], torch.full((1, 1, 1), adv, dtype=F64),
                       torch.ones(1, 1, 1, dtype=F64), clip=0.1, entropy_coef=0.0, kl_coef=0.0)
    grad = torch.autograd.grad(loss, params["logits"])[0].flatten()
    p = torch.softmax(logits, -1)
    unclipped = -adv * ratio * (torch.tensor([1.0, 0.0], dtype=F64) - p)  # -A r grad log pi(a=0)
    print(f"ratio {ratio} A {adv}: gradient {grad.tolist()}")
    assert torch.allclose(grad, torch.zeros(2, dtype=F64) if zero else unclipped, atol=1e-12)


def test_gae_over_episodes_that_end_at_different_steps_is_the_per_episode_recursion():
    rewards = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.5, -1.0, 3.0, 2.0]], dtype=F64)  # episode 0 ends at t = 1
    values = torch.tensor([[0.2, 0.4, 9.0, 9.0], [0.1, 0.3, -0.2, 0.6]], dtype=F64)  # padding values are junk
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=F64)
    gamma, lam = 0.9, 0.8
    adv, ret = masked_gae(rewards, values, mask, gamma, lam)
    # episode 0 by hand: delta_1 = 2 - 0.4 (terminal), delta_0 = 1 + 0.9 * 0.4 - 0.2
    d1, d0 = 2.0 - 0.4, 1.0 + gamma * 0.4 - 0.2
    assert adv[0].tolist() == pytest.approx([d0 + gamma * lam * d1, d1, 0.0, 0.0])
    assert ret[0].tolist() == pytest.approx([d0 + gamma * lam * d1 + 0.2, d1 + 0.4, 0.0, 0.0])
    assert torch.allclose(adv[1], gae_advantages(rewards[1], values[1], gamma, lam))
