"""A feed-forward categorical policy: the MATRL paper's grid-world network (Table 3: an MLP of
two hidden layers of 128 units, Leaky ReLU). Functional, with the chain dimension ``B`` first
in every parameter, like the other policies; stateless, so a whole episode is scored in one
pass (:meth:`MLPCategorical.sequence`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.policies.base import Params, batched_linear, xavier_normal
from league.policies.distributions import Categorical

__all__ = ["MLPCategorical", "ACTIVATIONS", "init_mlp_body", "mlp_body"]

#: Hidden-layer activations by name.
ACTIVATIONS = {"relu": torch.relu, "leaky_relu": torch.nn.functional.leaky_relu, "tanh": torch.tanh}


def init_mlp_body(generator: torch.Generator, batch: int, obs_dim: int, hidden: int, layers: int,
                  dtype: torch.dtype) -> tuple[Params, int]:
    """Xavier-normal weights and zero biases of ``layers`` hidden layers (``h{i}_w``, ``h{i}_b``)
    and the width that the head reads."""
    params: Params = {}
    fan_in = obs_dim
    for i in range(layers):
        params[f"h{i}_w"] = xavier_normal(generator, batch, hidden, fan_in, dtype)
        params[f"h{i}_b"] = torch.zeros(batch, hidden, dtype=dtype, device=generator.device)
        fan_in = hidden
    return params, fan_in


def mlp_body(params: Params, x: torch.Tensor, layers: int, activation=torch.relu) -> torch.Tensor:
    """The hidden layers of :func:`init_mlp_body` on ``x[B, N, D]``."""
    for i in range(layers):
        x = activation(batched_linear(x, params[f"h{i}_w"], params[f"h{i}_b"]))
    return x


@dataclass
class MLPCategorical:
    """``layers`` hidden layers of ``hidden`` units (``activation``), then action logits."""

    obs_dim: int
    n_actions: int
    hidden: int = 128
    layers: int = 2
    activation: str = "leaky_relu"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(sorted(ACTIVATIONS))}")

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        params, fan_in = init_mlp_body(generator, batch, self.obs_dim, self.hidden, self.layers, self.dtype)
        # a small output layer: the initial policy is close to uniform (PPO's usual start)
        params["out_w"] = 0.01 * xavier_normal(generator, batch, self.n_actions, fan_in, self.dtype)
        params["out_b"] = torch.zeros(batch, self.n_actions, dtype=self.dtype, device=generator.device)
        return params

    def initial_state(self, params: Params, batch_shape: tuple[int, int]) -> None:
        return None

    def step(self, params: Params, obs: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        """``obs[B, K, D]`` -> ``(logits[B, K, n_actions], None)``."""
        x = mlp_body(params, obs, self.layers, ACTIVATIONS[self.activation])
        return batched_linear(x, params["out_w"], params["out_b"]), None

    def sequence(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """A whole episode ``obs[B, K, H, D]`` -> logits ``[B, K, H, n_actions]`` in one pass
        (the network has no state: every step is the same map)."""
        B, K, H, D = obs.shape
        out, _ = self.step(params, obs.reshape(B, K * H, D), None)
        return out.reshape(out.shape[0], K, H, -1)

    def distribution(self, params: Params, out: torch.Tensor) -> Categorical:
        return Categorical(out)
