"""DiCE: the infinitely differentiable Monte-Carlo estimator (Foerster et al. 2018).

Objectives here are MAXIMISED (docs/conventions.md: ``phi' = phi + alpha * grad``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .returns import discount_weights

__all__ = ["magic_box", "dice_objective"]


def magic_box(x: Tensor) -> Tensor:
    """The DiCE operator ``exp(x - stop_grad(x))``: value 1, derivative ``box(x) * dx``."""
    return torch.exp(x - x.detach())


def dice_objective(
    dependencies_logp: Tensor,
    rewards: Tensor,
    gamma: float,
    baseline: Tensor | None = None,
    stochastic_logp: Tensor | None = None,
) -> Tensor:
    """DiCE surrogate of the discounted return ``sum_t gamma^t r_t``, per chain.

    Shapes ``[B, K, H]`` (any leading dims before ``K`` work) -> ``[B]``.
    ``dependencies_logp[..., t]`` is the summed log-probability of every stochastic
    node at step t that rewards depend on (e.g. all agents' ``log pi(a_t | s_t)``);
    its cumulative sum over time gives the causal dependencies of ``r_t``. The value
    equals the mean discounted return over K, the gradient is the score-function
    estimator and the second derivative the DiCE second-order estimator.

    With a ``baseline`` ``b_t`` (detached here; an estimate of the return-to-go from
    step t, undiscounted relative to t) the zero-valued term
    ``sum_t (1 - box(stochastic_logp_t)) gamma^t b_t`` is added, which reduces
    variance without biasing the expected first (or second) derivative as long as
    ``b_t`` does not depend on the actions at steps ``>= t``. ``stochastic_logp``
    defaults to ``dependencies_logp``.
    """
    if dependencies_logp.dim() < 2:
        raise ValueError("dependencies_logp must have at least [K, H] dims")
    if rewards.shape != dependencies_logp.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and dependencies_logp "
            f"{tuple(dependencies_logp.shape)} differ"
        )
    H = rewards.shape[-1]
    w = discount_weights(H, gamma, dtype=rewards.dtype, device=rewards.device)
    disc_r = rewards * w
    deps = torch.cumsum(dependencies_logp, dim=-1)
    obj = (magic_box(deps) * disc_r).sum(-1)
    if baseline is not None:
        if baseline.shape != rewards.shape:
            raise ValueError(
                f"baseline {tuple(baseline.shape)} and rewards {tuple(rewards.shape)} differ"
            )
        stoch = dependencies_logp if stochastic_logp is None else stochastic_logp
        if stoch.shape != rewards.shape:
            raise ValueError(
                f"stochastic_logp {tuple(stoch.shape)} and rewards {tuple(rewards.shape)} differ"
            )
        obj = obj + ((1.0 - magic_box(stoch)) * (w * baseline.detach())).sum(-1)
    return obj.mean(-1)
