"""The LSTM policy and value networks of the Meta-MAPG paper, written functionally:
Linear(obs, 64) -> ReLU -> LSTM cell(64) -> Linear(64, out). Xavier-normal weights,
zero biases, LSTM state zeroed at the start of every episode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.policies.base import Params, batched_linear, xavier_normal
from league.policies.distributions import Categorical

LSTMState = tuple[torch.Tensor, torch.Tensor]


@dataclass
class _LSTMNet:
    obs_dim: int
    out_dim: int
    hidden: int = 64
    dtype: torch.dtype = torch.float32

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        h, d, o = self.hidden, self.obs_dim, self.out_dim
        z = lambda *shape: torch.zeros(batch, *shape, dtype=self.dtype, device=generator.device)  # noqa: E731
        return {
            "in_w": xavier_normal(generator, batch, h, d, self.dtype), "in_b": z(h),
            # input and recurrent weights side by side: one matmul on [x, h] per step
            "lstm_w": torch.cat([xavier_normal(generator, batch, 4 * h, h, self.dtype),
                                 xavier_normal(generator, batch, 4 * h, h, self.dtype)], dim=-1),
            "lstm_b": z(4 * h),
            "out_w": xavier_normal(generator, batch, o, h, self.dtype), "out_b": z(o),
        }

    def initial_state(self, params: Params, batch_shape: tuple[int, int]) -> LSTMState:
        zeros = torch.zeros(*batch_shape, self.hidden, dtype=params["in_w"].dtype, device=params["in_w"].device)
        return zeros, zeros

    def step(self, params: Params, obs: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """``obs[B, K, D]`` -> ``(out[B, K, out_dim], state)``."""
        h_prev, c_prev = state
        x = torch.relu(batched_linear(obs, params["in_w"], params["in_b"]))
        gates = batched_linear(torch.cat([x, h_prev], dim=-1), params["lstm_w"], params["lstm_b"])
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return batched_linear(h, params["out_w"], params["out_b"]), (h, c)

    def sequence(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """Run over a whole episode ``obs[B, K, H, D]`` -> ``[B, K, H, out_dim]``."""
        state = self.initial_state(params, tuple(obs.shape[:2]))
        outs = []
        for t in range(obs.shape[2]):
            out, state = self.step(params, obs[:, :, t], state)
            outs.append(out)
        return torch.stack(outs, dim=2)


@dataclass
class LSTMCategorical(_LSTMNet):
    """Categorical policy; ``out_dim`` is the number of actions."""

    @property
    def n_actions(self) -> int:
        return self.out_dim

    def distribution(self, params: Params, out: torch.Tensor) -> Categorical:
        return Categorical(out)


@dataclass
class LSTMValue(_LSTMNet):
    """State-value network (``out_dim == 1``), kept separate from the policy."""

    out_dim: int = 1

    def values(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """``obs[B, K, H, D]`` -> values ``[B, K, H]``."""
        return self.sequence(params, obs).squeeze(-1)
