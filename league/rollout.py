"""Batched episodes of an iterated game under a joint policy: ``B`` chains x ``K`` episodes
x ``H`` steps, one Python step per time step and every agent a tensor op.

Sampling and scoring are separate so that every consumer of trajectories (the embedded
chain, an agent process learning from a referee's broadcast, the coordinator's replica)
computes log-probabilities with the same function, :func:`score`, from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from league.games.iterated import IteratedMatrixGame
from league.policies.base import Params, Policy, sample_categorical


@dataclass
class Episodes:
    """What was played: the data a referee broadcasts."""

    obs: torch.Tensor  # [B, K, H, S] one-hot game state seen before acting
    actions: torch.Tensor  # [B, K, H, n] long
    rewards: torch.Tensor  # [B, K, H, n]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.actions.shape[:3])  # type: ignore[return-value]


@dataclass
class Batch(Episodes):
    """Episodes scored under the parameters that played them.

    ``logp[k]`` and ``entropy[k]`` carry the autograd graph back to seat ``k``'s parameters
    (when scored with gradients enabled); ``probs[k]`` is detached.
    """

    logp: list[torch.Tensor]  # n x [B, K, H]
    entropy: list[torch.Tensor]  # n x [B, K, H]
    probs: list[torch.Tensor]  # n x [B, K, H, A]


def _check_seats(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params]) -> None:
    n = game.n_agents
    if len(policies) != n or len(params) != n:
        raise ValueError(f"{game.name} has {n} seats; got {len(policies)} policies and {len(params)} params")


@torch.no_grad()
def sample_episodes(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params],
                    n_chains: int, n_episodes: int, horizon: int, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32) -> Episodes:
    """Play ``n_episodes`` episodes of ``horizon`` steps in each of ``n_chains`` chains."""
    _check_seats(game, policies, params)
    B, K, H = n_chains, n_episodes, horizon
    state = game.reset((B, K))
    rec = [policy.initial_state(p, (B, K)) for policy, p in zip(policies, params)]
    obs_t, act_t, rew_t = [], [], []
    for _ in range(H):
        obs = game.observe(state, dtype=dtype)
        actions = []
        for k, (policy, p) in enumerate(zip(policies, params)):
            logits, rec[k] = policy.step(p, obs, rec[k])
            actions.append(sample_categorical(logits.expand(B, K, -1), generator))
        joint = torch.stack(actions, dim=-1)
        state, rewards = game.step(state, joint)
        obs_t.append(obs)
        act_t.append(joint)
        rew_t.append(rewards.to(dtype))
    return Episodes(obs=torch.stack(obs_t, dim=2), actions=torch.stack(act_t, dim=2),
                    rewards=torch.stack(rew_t, dim=2))


def score(policies: Sequence[Policy | None], params: Sequence[Params | None], episodes: Episodes) -> Batch:
    """Log-probabilities, entropies and probabilities of the played actions under
    ``params``: differentiable functions of the parameters (the actions are data). The
    policies are stepped exactly as during sampling, so the numbers are the ones that
    produced the actions. A seat whose policy is ``None`` is not scored (an agent process
    knows only its own parameters); its entries are ``None``."""
    B, K, H = episodes.shape
    logp: list[torch.Tensor] = []
    entropy: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    for k, (policy, p) in enumerate(zip(policies, params)):
        if policy is None or p is None:
            logp.append(None)  # type: ignore[arg-type]
            entropy.append(None)  # type: ignore[arg-type]
            probs.append(None)  # type: ignore[arg-type]
            continue
        state = policy.initial_state(p, (B, K))
        steps = []
        for t in range(H):
            logits, state = policy.step(p, episodes.obs[:, :, t], state)
            steps.append(logits.expand(B, K, -1))
        log_probs = torch.log_softmax(torch.stack(steps, dim=2), dim=-1)  # [B, K, H, A]
        logp.append(log_probs.gather(-1, episodes.actions[..., k].unsqueeze(-1)).squeeze(-1))
        pr = log_probs.exp()
        entropy.append(-(pr * log_probs).sum(-1))
        probs.append(pr.detach())
    return Batch(obs=episodes.obs, actions=episodes.actions, rewards=episodes.rewards,
                 logp=logp, entropy=entropy, probs=probs)


def rollout(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params],
            n_chains: int, n_episodes: int, horizon: int, generator: torch.Generator,
            dtype: torch.dtype = torch.float32) -> Batch:
    """Sample, then score: what a chain step observes."""
    episodes = sample_episodes(game, policies, params, n_chains, n_episodes, horizon, generator, dtype)
    return score(policies, params, episodes)
