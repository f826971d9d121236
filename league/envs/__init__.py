"""Environments: the batched per-seat interface (:mod:`league.envs.base`), a registry of
plain factories, and PettingZoo in both directions (:mod:`league.envs.pettingzoo`).

``make_env(name, **kwargs)`` builds a registered environment; a name with a colon,
``"module:factory"``, is any PettingZoo ``ParallelEnv`` factory run through the adapter.
See docs/environments.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from league.envs.base import Environment, TimeStep, flat_dim, flat_obs, random_actions
from league.envs.gridworld import checkers_env, switch_env
from league.envs.mamujoco import ant_4x2, hopper_3x1
from league.envs.matrix import MatrixGameEnv
from league.games import make_game

if TYPE_CHECKING:
    from league.envs.pettingzoo import ParallelView

_PETTINGZOO = ("ParallelView", "PettingZooEnv", "from_spec", "resolve_factory")


def __getattr__(name: str) -> Any:
    """The PettingZoo side loads on first use: the rollout imports this package, and agent
    processes should not pay for pettingzoo."""
    if name in _PETTINGZOO:
        from league.envs import pettingzoo

        return getattr(pettingzoo, name)
    raise AttributeError(f"module 'league.envs' has no attribute {name!r}")

__all__ = ["ENVIRONMENTS", "make_env", "parallel_env", "Environment", "TimeStep", "MatrixGameEnv",
           "ParallelView", "PettingZooEnv", "flat_obs", "flat_dim", "random_actions", "resolve_factory"]


def ipd_env(n_players: int = 2, horizon: int = 150, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu") -> MatrixGameEnv:
    """Iterated prisoner's dilemma, ``horizon`` rounds (two players; any other count is
    refused), its tensors on ``device``."""
    return MatrixGameEnv(make_game("ipd", n_players=n_players, dtype=dtype, device=device), horizon, dtype)


def rps_env(n_players: int = 2, horizon: int = 150, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu") -> MatrixGameEnv:
    """Iterated rock-paper-scissors for 2..4 players (mean pairwise payoff), ``horizon``
    rounds, its tensors on ``device``."""
    return MatrixGameEnv(make_game("rps", n_players=n_players, dtype=dtype, device=device), horizon, dtype)


def halfcheetah_2x3(max_steps: int = 1000, dtype: torch.dtype = torch.float32, observe: str = "own",
                    **kwargs: Any) -> Environment:
    """MaMuJoCo HalfCheetah "2x3" (agent_0 the back leg, agent_1 the front leg: 3 joints each,
    shared team reward) through ``gymnasium_robotics.mamujoco_v1``. ``observe="state"`` gives
    both seats the full 17-dimensional state (Meta-MAPG's Figure 2d setting); ``kwargs`` go to
    its ``parallel_env`` (e.g. ``agent_obsk``, or ``forward_reward_weight=-1.0`` for a team
    rewarded for running left, as the teammate population is pretrained)."""
    from league.envs.pettingzoo import from_spec

    return from_spec("gymnasium_robotics.mamujoco_v1:parallel_env", max_steps, dtype, observe=observe,
                     scenario="HalfCheetah", agent_conf="2x3", max_episode_steps=max_steps, **kwargs)


def pong_2p(**kwargs: Any) -> Environment:
    """Two-player Atari Pong, RAM observations (:func:`league.envs.atari.pong_2p`; needs the
    ``atari`` extra: multi-agent-ale-py, ale-py for the ROM, pygame)."""
    from league.envs.atari import pong_2p as make

    return make(**kwargs)


#: Environments by name. Each entry is a plain factory taking keyword arguments.
ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "ipd": ipd_env,
    "rps": rps_env,
    "halfcheetah-2x3": halfcheetah_2x3,
    "hopper-3x1": hopper_3x1,
    "ant-4x2": ant_4x2,
    "pong-2p": pong_2p,
    "checkers": checkers_env,
    "switch": switch_env,
}


def make_env(name: str, /, **kwargs: Any) -> Environment:
    """A registered environment, or ``"module:factory"`` for any PettingZoo ``ParallelEnv``
    (then ``max_steps`` is required and the other ``kwargs`` go to the factory)."""
    if ":" in name:
        from league.envs.pettingzoo import from_spec

        if "max_steps" not in kwargs:
            raise ValueError(f"env {name!r}: a PettingZoo factory needs max_steps (the longest episode)")
        return from_spec(name, **kwargs)
    try:
        factory = ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ValueError(f"unknown env {name!r}; known: {known}, or 'module:factory' for a PettingZoo ParallelEnv") from None
    return factory(**kwargs)


def parallel_env(env: str, **kwargs: Any) -> "ParallelView":
    """The environment ``make_env(env, **kwargs)`` as a PettingZoo ``ParallelEnv``
    (PettingZoo's ``parallel_env`` factory convention; usable as ``"league.envs:parallel_env"``)."""
    from league.envs.pettingzoo import ParallelView

    return ParallelView(make_env(env, **kwargs))
