"""Iterated matrix games (IPD, n-player RPS, any payoff tensor) as batched environments.

Every seat observes the shared state (``Discrete(1 + A**n)``, see docs/conventions.md) and
picks a ``Discrete(A)`` action; episodes are truncated after ``horizon`` rounds. The wrapped
:class:`~league.games.IteratedMatrixGame` stays available as ``env.game`` for exact values.
"""

from __future__ import annotations

import functools
from typing import Sequence

import gymnasium
import torch

from league.envs.base import TimeStep
from league.games import IteratedMatrixGame

__all__ = ["MatrixGameEnv"]


class MatrixGameEnv:
    """An :class:`~league.envs.base.Environment` over an iterated matrix game."""

    random_reset = False
    """Every episode starts at ``s0``: no reset seed is drawn for it (``league.rollout.reset_seed``)."""

    def __init__(self, game: IteratedMatrixGame, horizon: int, dtype: torch.dtype = torch.float32) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.game = game
        self.name = game.name
        self.max_steps = horizon
        self.dtype = dtype
        self.agents = tuple(f"player_{k}" for k in range(game.n_agents))
        self.observation_spaces = tuple(gymnasium.spaces.Discrete(game.n_states) for _ in self.agents)
        self.action_spaces = tuple(gymnasium.spaces.Discrete(game.n_actions) for _ in self.agents)
        self._state: torch.Tensor | None = None
        self._t = 0

    @property
    def n_agents(self) -> int:
        return self.game.n_agents

    @property
    def device(self) -> torch.device:
        """Where the game's tensors (states, rewards) live."""
        return self.game.device

    def __repr__(self) -> str:
        return f"MatrixGameEnv({self.game!r}, horizon={self.max_steps})"

    def _timestep(self, rewards: torch.Tensor) -> TimeStep:
        assert self._state is not None
        return TimeStep(obs=[self._state] * self.n_agents, rewards=rewards,
                        terminated=self._flags(tuple(self._state.shape), False),
                        truncated=self._flags(tuple(self._state.shape), self._t >= self.max_steps))

    def _flags(self, shape: tuple[int, ...], value: bool) -> torch.Tensor:
        """A constant bool tensor on the game's device, made once per shape and value (every step returns two)."""
        return _constant_flags(shape, value, self.device)

    def reset(self, batch_shape: tuple[int, ...] = (), seed: int | None = None) -> TimeStep:
        """Every episode at ``s0``; the game is deterministic, so ``seed`` changes nothing."""
        self._state = self.game.reset(tuple(batch_shape))
        self._t = 0
        return self._timestep(torch.zeros(*batch_shape, self.n_agents, dtype=self.dtype, device=self.device))

    def step(self, actions: Sequence[torch.Tensor]) -> TimeStep:
        if self._state is None:
            raise RuntimeError(f"{self.name}: call reset before step")
        if len(actions) != self.n_agents:
            raise ValueError(f"{self.name} has {self.n_agents} seats, got {len(actions)} actions")
        for k, a in enumerate(actions):
            if tuple(a.shape) != tuple(self._state.shape):
                raise ValueError(f"{self.name}: seat {k}'s actions must have the batch shape "
                                 f"{tuple(self._state.shape)}, got {tuple(a.shape)}")
        if self._t >= self.max_steps:
            return self._timestep(torch.zeros(*self._state.shape, self.n_agents, dtype=self.dtype,
                                              device=self.device))  # absorbing
        # the environment owns its state, so only the actions need checking (in joint_index)
        self._state, rewards = self.game.transition(self.game.joint_index(torch.stack(list(actions), dim=-1)))
        self._t += 1
        return self._timestep(rewards.to(self.dtype))


@functools.lru_cache(maxsize=32)
def _constant_flags(shape: tuple[int, ...], value: bool, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``value``, cached per shape, value and device (read-only by convention)."""
    return torch.full(shape, value, dtype=torch.bool, device=device)
