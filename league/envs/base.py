"""The environment seam: per-seat gymnasium spaces, batched reset/step over any batch shape
(chains x episodes), and real termination.

An :class:`Environment` steps a whole batch of independent episodes at once. Seat ``k``'s
observations and actions are tensors in seat ``k``'s space, with the batch dimensions
first:

- ``Discrete(n)``: a long tensor ``[*batch]``;
- ``Box(shape)``: a float tensor ``[*batch, *shape]``.

:func:`flat_obs` turns either into the flat float vector a policy network reads, exactly as
``gymnasium.spaces.flatten`` does (a ``Discrete`` becomes its one-hot).

Episodes end on their own (``terminated``) or at a time limit (``truncated``); ``dones``
is either. A finished episode is absorbing: until the next reset it keeps ``dones`` true,
earns zero reward and repeats its last observation, so a batch whose episodes end at
different steps can be stepped as one tensor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol, Sequence

import gymnasium
import numpy as np
import torch

__all__ = ["Environment", "TimeStep", "flat_obs", "flat_dim", "space_dtype", "check_space", "to_numpy",
           "from_numpy", "random_actions"]


@dataclass
class TimeStep:
    """What a batched reset or step returns."""

    obs: list[torch.Tensor]
    """Per seat: the observation in that seat's space, batch dimensions first."""
    rewards: torch.Tensor
    """``[*batch, n]`` rewards of the step just taken (zeros after a reset)."""
    terminated: torch.Tensor
    """``[*batch]`` bool: the episode ended by itself."""
    truncated: torch.Tensor
    """``[*batch]`` bool: the episode hit its time limit."""

    @property
    def dones(self) -> torch.Tensor:
        """``[*batch]`` bool: the episode is over (terminated or truncated)."""
        return self.terminated | self.truncated


class Environment(Protocol):
    """A batched n-seat environment. Typical use::

        ts = env.reset((B, K), seed=0)
        while not ts.dones.all():
            ts = env.step([policy_k(ts.obs[k]) for k in range(env.n_agents)])
    """

    name: str
    agents: tuple[str, ...]
    """Seat names; seat ``k`` is ``agents[k]``."""
    observation_spaces: tuple[gymnasium.Space, ...]
    action_spaces: tuple[gymnasium.Space, ...]
    max_steps: int
    """Every episode is over after at most this many steps."""
    # random_reset: bool (optional, default True): False where every episode starts in the same
    # state, so ``league.rollout.reset_seed`` draws no seed for it.

    @property
    def n_agents(self) -> int: ...

    def reset(self, batch_shape: tuple[int, ...] = (), seed: int | None = None) -> TimeStep: ...

    def step(self, actions: Sequence[torch.Tensor]) -> TimeStep: ...


def check_space(space: gymnasium.Space, where: str) -> gymnasium.Space:
    """Accept the spaces this seam carries (``Discrete`` starting at 0, ``Box``); name the rest."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"{where}: Discrete spaces must start at 0, got {space}")
        return space
    if isinstance(space, gymnasium.spaces.Box):
        return space
    raise ValueError(f"{where}: unsupported space {space}; supported: Discrete, Box")


def flat_dim(space: gymnasium.Space) -> int:
    """Length of :func:`flat_obs` for ``space`` (``gymnasium.spaces.flatdim``)."""
    return int(gymnasium.spaces.flatdim(space))


def space_dtype(space: gymnasium.Space, float_dtype: torch.dtype = torch.float32) -> torch.dtype:
    """The tensor dtype of values in ``space``: long for ``Discrete``, ``float_dtype`` for ``Box``."""
    return torch.long if isinstance(space, gymnasium.spaces.Discrete) else float_dtype


@functools.lru_cache(maxsize=64)
def _identity(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``n x n`` identity on ``device`` (read-only by convention: only ever indexed)."""
    return torch.eye(n, dtype=dtype, device=device)


def flat_obs(space: gymnasium.Space, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[*batch, *space.shape]`` -> ``[*batch, flat_dim(space)]``, as ``gymnasium.spaces.flatten``."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return _identity(int(space.n), dtype, x.device)[x.long()]  # rows of the identity: the one-hot, in one op
    n_batch = x.dim() - len(space.shape)
    return x.reshape(*x.shape[:n_batch], -1).to(dtype)


def to_numpy(space: gymnasium.Space, x: torch.Tensor) -> np.ndarray | np.integer:
    """One unbatched value as ``space`` holds it (``np.int64`` for ``Discrete``)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.int64(int(x))
    return x.detach().cpu().numpy().astype(space.dtype, copy=False)


def from_numpy(space: gymnasium.Space, values: Sequence, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A list of unbatched values of ``space`` -> one tensor ``[len(values), *space.shape]``,
    on the CPU (as numpy's)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return torch.tensor([int(v) for v in values], dtype=torch.long, device="cpu")
    return torch.from_numpy(np.stack([np.asarray(v) for v in values])).to(dtype).reshape((len(values), *space.shape))


def random_actions(env: Environment, batch_shape: tuple[int, ...], generator: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Uniform actions for every seat (``Box`` bounds must be finite): a test and benchmark driver."""
    out = []
    for space in env.action_spaces:
        if isinstance(space, gymnasium.spaces.Discrete):
            out.append(torch.randint(int(space.n), batch_shape, generator=generator))
        else:
            low = torch.as_tensor(space.low, dtype=dtype)
            high = torch.as_tensor(space.high, dtype=dtype)
            u = torch.rand(*batch_shape, *space.shape, generator=generator, dtype=dtype)
            out.append(low + (high - low) * u)
    return out
