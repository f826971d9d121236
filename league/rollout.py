"""Batched episodes of an iterated game under a joint policy: ``B`` chains x ``K`` episodes
x ``H`` steps, one Python step per time step and every agent a tensor op."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from league.games.iterated import IteratedMatrixGame
from league.policies.base import Params, Policy, sample_categorical


@dataclass
class Batch:
    """Trajectories of one chain step.

    ``logp[k]`` and ``entropy[k]`` carry the autograd graph back to seat ``k``'s parameters
    (when the rollout ran with gradients enabled); everything else is data.
    """

    obs: torch.Tensor  # [B, K, H, S] one-hot game state seen before acting
    actions: torch.Tensor  # [B, K, H, n] long
    rewards: torch.Tensor  # [B, K, H, n]
    logp: list[torch.Tensor]  # n x [B, K, H]
    entropy: list[torch.Tensor]  # n x [B, K, H]
    probs: list[torch.Tensor]  # n x [B, K, H, A], detached

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.actions.shape[:3])  # type: ignore[return-value]


def rollout(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params],
            n_chains: int, n_episodes: int, horizon: int, generator: torch.Generator,
            dtype: torch.dtype = torch.float32) -> Batch:
    """Play ``n_episodes`` episodes of ``horizon`` steps in each of ``n_chains`` chains.

    Log-probabilities are computed in the same pass as sampling, so with gradients enabled
    they are differentiable functions of ``params`` (the actions are sampled data).
    """
    n = game.n_agents
    if len(policies) != n or len(params) != n:
        raise ValueError(f"{game.name} has {n} seats; got {len(policies)} policies and {len(params)} params")
    B, K, H = n_chains, n_episodes, horizon
    state = game.reset((B, K))
    rec = [policy.initial_state(p, (B, K)) for policy, p in zip(policies, params)]
    obs_t, act_t, rew_t = [], [], []
    logp_t: list[list[torch.Tensor]] = [[] for _ in range(n)]
    ent_t: list[list[torch.Tensor]] = [[] for _ in range(n)]
    prob_t: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for _ in range(H):
        obs = game.observe(state, dtype=dtype)
        actions = []
        for k, (policy, p) in enumerate(zip(policies, params)):
            logits, rec[k] = policy.step(p, obs, rec[k])
            logits = logits.expand(B, K, -1)
            a = sample_categorical(logits, generator)
            log_probs = torch.log_softmax(logits, dim=-1)
            logp_t[k].append(log_probs.gather(-1, a.unsqueeze(-1)).squeeze(-1))
            probs = log_probs.exp()
            ent_t[k].append(-(probs * log_probs).sum(-1))
            prob_t[k].append(probs.detach())
            actions.append(a)
        joint = torch.stack(actions, dim=-1)
        state, rewards = game.step(state, joint)
        obs_t.append(obs)
        act_t.append(joint)
        rew_t.append(rewards.to(dtype))
    return Batch(
        obs=torch.stack(obs_t, dim=2), actions=torch.stack(act_t, dim=2),
        rewards=torch.stack(rew_t, dim=2),
        logp=[torch.stack(x, dim=2) for x in logp_t],
        entropy=[torch.stack(x, dim=2) for x in ent_t],
        probs=[torch.stack(x, dim=2) for x in prob_t],
    )
