"""Tabular policies: one row of action logits per game state (the IPD/RPS personas)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.policies.base import Params
from league.policies.distributions import Categorical


@dataclass
class Tabular:
    """Logits ``[B, S, A]``; the observation is the one-hot of the state, so the logits of
    a step are ``obs @ table``."""

    n_states: int
    n_actions: int
    dtype: torch.dtype = torch.float32

    def init_params(self, generator: torch.Generator, batch: int = 1) -> Params:
        return {"logits": torch.zeros(batch, self.n_states, self.n_actions, dtype=self.dtype, device=generator.device)}

    @staticmethod
    def from_probs(probs: torch.Tensor) -> Params:
        """Parameters whose softmax is ``probs[B, S, A]``."""
        return {"logits": torch.log(probs)}

    @staticmethod
    def probs(params: Params) -> torch.Tensor:
        return torch.softmax(params["logits"], dim=-1)

    def initial_state(self, params: Params, batch_shape: tuple[int, int]) -> None:
        return None

    def step(self, params: Params, obs: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        table = params["logits"]
        # [B, K, S] @ [B or 1, S, A] as bmm: the same numbers at half the dispatch cost of matmul
        if obs.dim() == 3 and table.dim() == 3 and table.shape[0] in (1, obs.shape[0]):
            return torch.bmm(obs, table.expand(obs.shape[0], -1, -1)), None
        return torch.matmul(obs, table), None

    def sequence(self, params: Params, obs: torch.Tensor) -> torch.Tensor:
        """A whole episode ``obs[B, K, H, S]`` -> logits ``[B, K, H, A]`` in one matmul: the
        table has no recurrent state, so every step is the same ``obs @ table`` (one graph node
        instead of ``H``, which is what makes scoring and its double backward cheap)."""
        return torch.matmul(obs, params["logits"].unsqueeze(1))

    def state_logits(self, params: Params) -> torch.Tensor:
        """The policy as a table: the logits ``[B, S, A]`` of every state. A memoryless policy
        of a one-hot state is this table, so ``league.rollout.play`` samples a matrix game from
        per-state probabilities, a lookup per step, instead of stepping the policy."""
        return params["logits"]

    def distribution(self, params: Params, out: torch.Tensor) -> Categorical:
        return Categorical(out)
