"""The functional policy interface shared by every policy class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from league.policies.distributions import Distribution

Params = dict[str, torch.Tensor]
"""A policy's parameters by name; every tensor has the chain dimension ``B`` first
(``B == 1`` for parameters shared by every chain)."""


class Policy(Protocol):
    """A stateless policy family: ``step`` maps (parameters, observation, recurrent state) to
    the distribution's inputs (logits, or a Gaussian's mean), and ``distribution`` turns them
    into the action distribution. The rollout loop looks like::

        state = policy.initial_state(params, (B, K))
        for t in range(H):
            out, state = policy.step(params, obs[:, :, t], state)
            action = policy.distribution(params, out).sample(generator)

    Two optional methods make it cheaper: ``sequence(params, obs[B, K, H, D])``, the outputs of
    a whole episode at once (scoring, :func:`policy_sequence`), and ``state_logits(params)``,
    the logits ``[B, S, A]`` of a memoryless policy of a one-hot state (``Tabular``), with
    which ``league.rollout.play`` samples an iterated matrix game from per-state tables.
    """

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        """Initial parameters drawn from ``generator``, on the generator's device."""

    def initial_state(self, params: Params, batch_shape: tuple[int, int]) -> Any: ...

    def step(self, params: Params, obs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def distribution(self, params: Params, out: torch.Tensor) -> "Distribution": ...


def policy_sequence(policy: Policy, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """The policy's outputs over whole episodes, ``obs[B, K, H, D]`` -> ``[B, K, H, out]``:
    ``policy.sequence`` where the class has one (all steps in few ops), else ``step`` after
    ``step`` from the initial state. Both give the outputs that sampling step by step gave."""
    B, K, H = obs.shape[:3]
    sequence = getattr(policy, "sequence", None)
    if sequence is not None:
        return sequence(params, obs).expand(B, K, H, -1)
    state = policy.initial_state(params, (B, K))
    steps = []
    for t in range(H):
        out, state = policy.step(params, obs[:, :, t], state)
        steps.append(out.expand(B, K, -1))
    return torch.stack(steps, dim=2)


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample an index per row of ``logits[..., A]`` with the Gumbel-max trick (vectorised
    over any batch shape, reproducible through ``generator``)."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    # logits + gumbel with gumbel = -log(-log(u)), in place (the same numbers, fewer allocations)
    neg_gumbel = u.clamp_min_(torch.finfo(logits.dtype).tiny).log_().neg_().log_()
    return torch.argmax(logits.detach() - neg_gumbel, dim=-1)


def categorical_cdf(logits: torch.Tensor) -> torch.Tensor:
    """Cumulative probabilities ``[..., A]`` of ``softmax(logits)`` in float64 (no graph), scaled
    so that the last entry is exactly 1.0: :func:`sample_inverse_cdf` on them never returns an
    action of probability zero, and never ``A``, whatever the rounding of the sum."""
    cdf = torch.softmax(logits.detach().to(torch.float64), dim=-1).cumsum(-1)
    return cdf / cdf[..., -1:]


def sample_inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF samples: per row of ``cdf[..., A]`` (from :func:`categorical_cdf`) and
    uniform ``u[...]`` in ``[0, 1)``, the smallest ``i`` with ``u < cdf[i]``, i.e. the number of
    entries ``<= u``. Action ``i`` is drawn exactly when ``u`` falls in ``[cdf[i-1], cdf[i])``, an
    interval of length ``p_i``."""
    return (cdf <= u.unsqueeze(-1)).sum(-1)


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x[B, N, I] @ weight[B, O, I]^T + bias[B, O]`` with ``B`` broadcast (1 or B)."""
    return torch.matmul(x, weight.transpose(-1, -2)) + bias.unsqueeze(-2)


def xavier_normal(generator: torch.Generator, batch: int, fan_out: int, fan_in: int,
                  dtype: torch.dtype) -> torch.Tensor:
    """Xavier-normal weights ``[batch, fan_out, fan_in]`` drawn from ``generator``, on its device."""
    std = (2.0 / (fan_in + fan_out)) ** 0.5
    return torch.randn(batch, fan_out, fan_in, generator=generator, dtype=dtype, device=generator.device) * std
