"""The outer loop's update: combine per-chain meta-gradients (PCGrad or mean), clip, and
step the meta-agent's optimiser; the critic is fit on its own loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.learn import pcgrad_mean
from league.meta import Critic, MetaObjective, per_chain_gradients
from league.policies.base import Params


@dataclass
class OuterConfig:
    """Outer-loop optimisation of the meta-agent."""

    optimizer: str = "adam"
    """``adam`` (amsgrad, as the authors) or ``sgd`` (plain ``phi += lr * grad``)."""
    actor_lr: float = 1e-4
    """Step size on the initial policy parameters and the inner learning rates."""
    critic_lr: float = 1.5e-4
    """Step size of the value network."""
    adam_eps: float = 1e-3
    """Adam's epsilon (the authors' 1e-3)."""
    pcgrad: bool = True
    """Combine the chains' gradients with PCGrad instead of a plain mean."""
    grad_clip: float | None = 10.0
    """Clip the combined gradient to this norm (None: no clipping)."""


def _optimizer(cfg: OuterConfig, tensors: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(tensors, lr=lr, eps=cfg.adam_eps, amsgrad=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(tensors, lr=lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: adam, sgd")


class MetaLearner:
    """Owns the meta-parameters (initial policy ``B == 1``, inner learning rates ``[1, L]``)
    and applies one meta-update per :class:`MetaObjective`::

        result = meta_objective(method, evaluator, learner.policy, learner.lr, ...)
        stats = learner.step(result)
    """

    def __init__(self, policy: Params, lr: torch.Tensor, learn_lr: bool, critic: Critic | None,
                 cfg: OuterConfig, generator: torch.Generator):
        self.policy = {k: v.detach().clone().requires_grad_(True) for k, v in policy.items()}
        self.lr = lr.detach().clone().requires_grad_(learn_lr)
        self.critic = critic
        self.cfg = cfg
        self.generator = generator
        self._leaves = dict(self.policy)
        if learn_lr:
            self._leaves["lr"] = self.lr
        self.actor_opt = _optimizer(cfg, list(self._leaves.values()), cfg.actor_lr)
        self.critic_opt = None
        if critic is not None:
            critic.params = {k: v.detach().clone().requires_grad_(True) for k, v in critic.params.items()}
            self.critic_opt = _optimizer(cfg, list(critic.params.values()), cfg.critic_lr)

    def step(self, result: MetaObjective) -> dict[str, float]:
        grads = per_chain_gradients(result)
        names = [n for n in grads if n in self._leaves]
        n_chains = result.objective.shape[0]
        flat = torch.cat([grads[n].reshape(n_chains, -1) for n in names], dim=1)
        combined = pcgrad_mean(flat, self.generator) if self.cfg.pcgrad else flat.mean(0)
        norm = float(combined.norm())
        if not torch.isfinite(combined).all():
            raise FloatingPointError("non-finite meta-gradient; lower the inner or outer learning rate")
        if self.cfg.grad_clip is not None and norm > self.cfg.grad_clip:
            combined = combined * (self.cfg.grad_clip / norm)
        offset = 0
        for n in names:
            leaf = self._leaves[n]
            size = leaf.numel()
            leaf.grad = -combined[offset:offset + size].reshape(leaf.shape)  # ascend the objective
            offset += size
        self.actor_opt.step()
        self.actor_opt.zero_grad(set_to_none=True)
        stats = {"objective": float(result.objective.detach().mean()), "grad_norm": norm,
                 "clipped": self.cfg.grad_clip is not None and norm > self.cfg.grad_clip}
        if result.value_loss is not None and self.critic_opt is not None:
            self.critic_opt.zero_grad(set_to_none=True)
            result.value_loss.backward()
            self.critic_opt.step()
            stats["value_loss"] = float(result.value_loss.detach())
        return stats
