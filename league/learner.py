"""The outer loop's update: combine per-chain meta-gradients (PCGrad or mean), clip, and
step the meta-agent's optimiser; the critic is fit on its own loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
        """One meta-update from every chain's objective in one graph."""
        grads = per_chain_gradients(result)
        value_loss = None
        if result.value_loss is not None and self.critic_opt is not None:
            self.critic_opt.zero_grad(set_to_none=True)
            result.value_loss.backward()
            value_loss = float(result.value_loss.detach())
        return self._apply(grads, result.objective.detach(), value_loss)

    def step_micro_batched(self, objective: Callable[[int, int], MetaObjective], n_chains: int,
                           micro_batch: int) -> dict[str, float]:
        """One meta-update over ``n_chains`` chains built ``micro_batch`` at a time:
        ``objective(start, stop)`` returns the :class:`MetaObjective` of chains
        ``start:stop``, whose graph is differentiated and freed before the next one is built,
        so peak memory is that of one micro-batch. Each chain's meta-gradient depends only
        on its own chain, so the update equals :meth:`step` on the same chains' data, up to
        float rounding (the critic's loss, a mean over chains, is accumulated with weights
        ``size / n_chains``). Not for an estimator that couples chains (the ``score`` form's
        leave-one-out chain baseline sees only its micro-batch). Note that a sampled
        evaluator draws each micro-batch's episodes in turn, which are other episodes than
        one batch of ``n_chains`` would draw."""
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
        parts: dict[str, list[torch.Tensor]] = {}
        objectives, value_loss = [], None
        if self.critic_opt is not None:
            self.critic_opt.zero_grad(set_to_none=True)
        for start in range(0, n_chains, micro_batch):
            stop = min(start + micro_batch, n_chains)
            result = objective(start, stop)
            if result.objective.shape[0] != stop - start:
                raise ValueError(f"objective({start}, {stop}) returned {result.objective.shape[0]} chains")
            for name, g in per_chain_gradients(result).items():
                parts.setdefault(name, []).append(g.detach())
            objectives.append(result.objective.detach())
            if result.value_loss is not None and self.critic_opt is not None:
                weight = (stop - start) / n_chains
                (result.value_loss * weight).backward()
                value_loss = (value_loss or 0.0) + float(result.value_loss.detach()) * weight
            del result
        grads = {name: torch.cat(chunks) for name, chunks in parts.items()}
        return self._apply(grads, torch.cat(objectives), value_loss)

    def _apply(self, grads: dict[str, torch.Tensor], objective: torch.Tensor,
               value_loss: float | None) -> dict[str, float]:
        """Combine per-chain gradients ``name -> [B, ...]`` (PCGrad or mean), clip, step the
        actor; step the critic on the gradient already accumulated in its parameters."""
        names = [n for n in grads if n in self._leaves]
        n_chains = objective.shape[0]
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
        stats = {"objective": float(objective.mean()), "grad_norm": norm,
                 "clipped": self.cfg.grad_clip is not None and norm > self.cfg.grad_clip}
        if value_loss is not None and self.critic_opt is not None:
            self.critic_opt.step()
            stats["value_loss"] = value_loss
        return stats
