"""Gaussian policies for continuous (``Box``) actions, with a state-independent log-std
(the Meta-MAPG paper's HalfCheetah policy): an LSTM body (Linear -> ReLU -> LSTM cell ->
Linear, as the categorical one) or an MLP body. Functional: parameters come in explicitly
with the chain dimension ``B`` first, so an inner update stays in the autograd graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.policies.base import Params, batched_linear, xavier_normal
from league.policies.distributions import DiagGaussian
from league.policies.lstm import _LSTMNet
from league.policies.mlp import ACTIVATIONS, init_mlp_body, mlp_body

__all__ = ["LSTMGaussian", "MLPGaussian"]


def _gaussian(params: Params, mean: torch.Tensor) -> DiagGaussian:
    log_std = params["log_std"]  # [B, D]: one per chain, shared by every state
    return DiagGaussian(mean, log_std.reshape(log_std.shape[0], *[1] * (mean.dim() - 2), log_std.shape[-1]))


@dataclass
class LSTMGaussian(_LSTMNet):
    """LSTM body, mean head of size ``out_dim`` (the action dimension), learned ``log_std``."""

    init_log_std: float = 0.0

    @property
    def action_dim(self) -> int:
        return self.out_dim

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        params = super().init_params(generator, batch)
        params["log_std"] = torch.full((batch, self.out_dim), self.init_log_std, dtype=self.dtype,
                                       device=generator.device)
        return params

    def distribution(self, params: Params, out: torch.Tensor) -> DiagGaussian:
        return _gaussian(params, out)


@dataclass
class MLPGaussian:
    """``layers`` hidden layers of ``hidden`` units (``activation``), mean head, learned
    ``log_std``. Stateless, so whole episodes are scored in one pass (:meth:`sequence`)."""

    obs_dim: int
    action_dim: int
    hidden: int = 64
    layers: int = 2
    init_log_std: float = 0.0
    dtype: torch.dtype = torch.float32
    activation: str = "relu"
    """Hidden activation (``league.policies.mlp.ACTIVATIONS``; MATRL's networks: ``leaky_relu``)."""
    mean_scale: float = 1.0
    """Scale of the mean head's initial weights (0.01: the initial mean is near 0 in every state,
    PPO's usual start for continuous control)."""

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(sorted(ACTIVATIONS))}")

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        params, fan_in = init_mlp_body(generator, batch, self.obs_dim, self.hidden, self.layers, self.dtype)
        params["out_w"] = self.mean_scale * xavier_normal(generator, batch, self.action_dim, fan_in, self.dtype)
        params["out_b"] = torch.zeros(batch, self.action_dim, dtype=self.dtype, device=generator.device)
        params["log_std"] = torch.full((batch, self.action_dim), self.init_log_std, dtype=self.dtype,
                                       device=generator.device)
        return params

    def initial_state(self, params: Params, batch_shape: tuple[int, int]) -> None:
        return None

    def step(self, params: Params, obs: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        """``obs[B, K, D]`` -> ``(mean[B, K, action_dim], None)``."""
        x = mlp_body(params, obs, self.layers, ACTIVATIONS[self.activation])
        return batched_linear(x, params["out_w"], params["out_b"]), None

    def sequence(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """A whole episode ``obs[B, K, H, D]`` -> means ``[B, K, H, action_dim]`` in one pass
        (the network has no state: every step is the same map)."""
        B, K, H, D = obs.shape
        out, _ = self.step(params, obs.reshape(B, K * H, D), None)
        return out.reshape(out.shape[0], K, H, -1)

    def distribution(self, params: Params, out: torch.Tensor) -> DiagGaussian:
        return _gaussian(params, out)
