"""PPO as MATRL's trust-region step for deep policies (the paper's Algorithm 2, lines 2-8): from
one batch of episodes of the current policies, a seat's *predicted* policy is ``epochs``
gradient steps (Adam) on the clipped surrogate with an entropy bonus and a KL penalty, with
GAE advantages from the seat's own value network, which is then fitted to the GAE returns.

Works for any :class:`~league.envs.Environment` and any registered policy: the episodes are
re-scored through :func:`league.rollout.score` (recurrent policies included; padding after an
episode's end is masked), minibatches are whole episodes.

The loss, per step ``t`` alive, with ``r = pi_theta(a_t|s_t) / pi_old(a_t|s_t)``:

    -min(r A, clip(r, 1 - eps, 1 + eps) A) - entropy_coef H(pi_theta(.|s_t)) + kl_coef ((r - 1) - log r)

The KL term is the ``k3`` estimator of ``KL(pi_old || pi_theta)`` at the sampled actions: it is
unbiased, non-negative, works for any distribution, and its gradient vanishes at
``theta = theta_old``, so the first epoch's gradient is exactly the importance-weighted policy
gradient plus the entropy term (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from league.learn.gae import gae_advantages
from league.policies.base import Params, Policy
from league.policies.mlp import ACTIVATIONS
from league.rollout import Episodes, score

__all__ = ["PPOConfig", "Critic", "PPOStep", "masked_gae", "masked_mean", "ppo_loss", "ppo_step"]


@dataclass(frozen=True)
class PPOConfig:
    """PPO coefficients; defaults are the MATRL paper's grid-world settings (Table 3) where it
    gives them."""

    lr: float = 0.002
    """Adam step size of the policy (Table 3: policy learning rate 0.002)."""
    epochs: int = 10
    """Gradient steps per batch (Table 3: policy update iterations 10)."""
    minibatches: int = 1
    """Minibatches of whole episodes per epoch (1: each step uses the whole batch, as Table 3's
    'gradient steps for each batch')."""
    clip: float = 0.1
    """``eps`` of the ratio clip (Table 3: policy ratio clip 0.1)."""
    entropy_coef: float = 0.05
    """Entropy bonus (Table 3: 0.05)."""
    kl_coef: float = 0.001
    """KL penalty (Table 3: 0.001)."""
    target_kl: float | None = None
    """Stop the epochs early once the mean KL estimate exceeds ``1.5 * target_kl`` (None: never;
    the paper gives none)."""
    value_coef: float = 1.0
    """Weight of the critic's squared error (Table 3: 1.0 for checkers, 0.01 for switch). The
    critic is a separate network with its own Adam, so this scales its effective step only
    where Adam's normalisation does not cancel it (early steps)."""
    critic_lr: float = 0.002
    """Adam step size of the critic."""
    critic_epochs: int = 10
    """Gradient steps of the critic fit per batch."""
    gamma: float = 0.99
    """Discount (Table 3: 0.99)."""
    lam: float = 0.95
    """GAE lambda (not in the paper's tables; 0.95 is PPO's usual value)."""
    normalize_advantages: bool = True
    """Scale the batch's advantages to zero mean, unit variance (over steps alive)."""
    hidden: int = 128
    """Hidden units of the critic (and, in the runs, the policy; Table 3: 128)."""
    layers: int = 2
    """Hidden layers of the critic (Table 3: 2)."""
    activation: str = "leaky_relu"
    """Hidden activation of the critic (the paper: Leaky ReLU)."""


class Critic:
    """A seat's value network ``V(s)`` (an MLP on the seat's flat observation) and its Adam
    optimiser: learner-local state, never sent anywhere."""

    def __init__(self, obs_dim: int, cfg: PPOConfig, generator: torch.Generator, dtype: torch.dtype = torch.float32):
        sizes = [obs_dim] + [cfg.hidden] * cfg.layers
        self.weights: list[torch.Tensor] = []
        for fan_in, fan_out in zip(sizes[:-1] + [sizes[-1]], sizes[1:] + [1]):
            std = (2.0 / (fan_in + fan_out)) ** 0.5
            self.weights += [(torch.randn(fan_in, fan_out, generator=generator, dtype=dtype) * std).requires_grad_(),
                             torch.zeros(fan_out, dtype=dtype, requires_grad=True)]
        self.act = ACTIVATIONS[cfg.activation]
        self.optimizer = torch.optim.Adam(self.weights, lr=cfg.critic_lr)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs[..., D]`` -> values ``[...]``."""
        x = obs
        n = len(self.weights) // 2
        for i in range(n):
            x = x @ self.weights[2 * i] + self.weights[2 * i + 1]
            if i < n - 1:
                x = self.act(x)
        return x.squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def masked_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns ``[..., H]`` of episodes that end at different steps:
    ``mask[..., t]`` is 1 while the episode runs (through its last step). A step's successor
    value is 0 after the episode's last step (termination; a time limit is treated alike, the
    grid worlds' limits being part of the game), and padding steps get 0."""
    v = values * mask
    adv = gae_advantages(rewards * mask, v, gamma, lam) * mask
    return adv, (adv + v) * mask


def ppo_loss(logp: torch.Tensor, logp_old: torch.Tensor, entropy: torch.Tensor, advantages: torch.Tensor,
             mask: torch.Tensor, clip: float, entropy_coef: float, kl_coef: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped-surrogate loss (to minimise) over the steps alive, and its parts. All
    inputs ``[B, K, H]``; ``logp`` and ``entropy`` carry the graph."""
    log_ratio = logp - logp_old.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    kl = (ratio - 1) - log_ratio
    ent = masked_mean(entropy, mask)
    kl_mean = masked_mean(kl, mask)
    loss = -masked_mean(surrogate, mask) - entropy_coef * ent + kl_coef * kl_mean
    clipped = masked_mean(((ratio - 1).abs() > clip).to(ratio.dtype), mask)
    return loss, {"entropy": ent.detach(), "kl": kl_mean.detach(), "clip_fraction": clipped.detach()}


@dataclass
class PPOStep:
    """What one seat's PPO step computed."""

    params: Params
    """The predicted parameters."""
    advantages: torch.Tensor
    """``[B, K, H]`` GAE advantages under the critic before its fit (unnormalised)."""
    values: torch.Tensor
    """``[B, K, H]`` the critic's values before its fit."""
    logp_old: torch.Tensor
    """``[B, K, H]`` log-probabilities of the seat's actions under the current parameters."""
    stats: dict[str, float] = field(default_factory=dict)
    """Last epoch's entropy, KL estimate, clip fraction; epochs run; critic loss."""


def _seat_score(policy: Policy, params: Params, episodes: Episodes, seat: int) -> tuple[torch.Tensor, torch.Tensor]:
    policies: list[Policy | None] = [None] * episodes.n_agents
    seats: list[Params | None] = [None] * episodes.n_agents
    policies[seat], seats[seat] = policy, params
    batch = score(policies, seats, episodes)
    return batch.logp[seat], batch.entropy[seat]


def _episode_subset(episodes: Episodes, idx: torch.Tensor) -> Episodes:
    """The episodes ``idx`` (dimension K) of every chain."""
    pick = lambda x: None if x is None else x[:, idx]  # noqa: E731
    return Episodes(obs=episodes.obs[:, idx], actions=pick(episodes.actions), rewards=episodes.rewards[:, idx],
                    dones=pick(episodes.dones),
                    seat_obs=None if episodes.seat_obs is None else [o[:, idx] for o in episodes.seat_obs],
                    seat_actions=None if episodes.seat_actions is None else [a[:, idx] for a in episodes.seat_actions])


def alive_mask(episodes: Episodes) -> torch.Tensor:
    """``[B, K, H]`` 1 at the steps the episodes took, 0 at padding."""
    alive = episodes.alive()
    return torch.ones(episodes.shape, dtype=episodes.rewards.dtype) if alive is None else alive


def ppo_step(policy: Policy, params: Params, critic: Critic, episodes: Episodes, seat: int, cfg: PPOConfig,
             generator: torch.Generator | None = None) -> PPOStep:
    """Seat ``seat``'s PPO step on the episodes its current ``params`` played (every seat's
    episodes of one round): the predicted parameters, then the critic's fit (in place)."""
    mask = alive_mask(episodes)
    obs = episodes.obs_of(seat)
    with torch.no_grad():
        values = critic(obs)
        adv, returns = masked_gae(episodes.rewards[..., seat], values, mask, cfg.gamma, cfg.lam)
        logp_old, _ = _seat_score(policy, {k: v.detach() for k, v in params.items()}, episodes, seat)
    norm = adv
    if cfg.normalize_advantages:
        mean = masked_mean(adv, mask)
        std = masked_mean((adv - mean) ** 2, mask).sqrt()
        norm = (adv - mean) / (std + 1e-8) * mask
    live = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.Adam(list(live.values()), lr=cfg.lr)
    K = episodes.shape[1]
    stats: dict[str, float] = {}
    epochs = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(K, generator=generator) if cfg.minibatches > 1 else torch.arange(K)
        for idx in order.chunk(cfg.minibatches):
            part = episodes if cfg.minibatches == 1 else _episode_subset(episodes, idx)
            sel = (lambda x: x) if cfg.minibatches == 1 else (lambda x: x[:, idx])  # noqa: E731
            logp, entropy = _seat_score(policy, live, part, seat)
            loss, parts = ppo_loss(logp, sel(logp_old), entropy, sel(norm), sel(mask), cfg.clip, cfg.entropy_coef,
                                   cfg.kl_coef)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs += 1
        stats = {k: float(v) for k, v in parts.items()}
        if cfg.target_kl is not None and stats["kl"] > 1.5 * cfg.target_kl:
            break
    stats["epochs"] = float(epochs)
    stats["critic_loss"] = fit_critic(critic, obs, returns, mask, cfg)
    return PPOStep({k: v.detach() for k, v in live.items()}, adv, values, logp_old, stats)


def fit_critic(critic: Critic, obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cfg: PPOConfig) -> float:
    """``critic_epochs`` Adam steps on ``value_coef`` times the mean squared error to the
    returns over the steps alive (Algorithm 2, line 8); the last step's loss."""
    loss = torch.zeros(())
    for _ in range(cfg.critic_epochs):
        loss = cfg.value_coef * masked_mean((critic(obs) - returns) ** 2, mask)
        critic.optimizer.zero_grad()
        loss.backward()
        critic.optimizer.step()
    return float(loss.detach())


def critics_for(obs_dims: Sequence[int], cfg: PPOConfig, generator: torch.Generator) -> list[Critic]:
    """One critic per seat."""
    return [Critic(d, cfg, generator) for d in obs_dims]
