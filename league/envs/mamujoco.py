"""Multi-agent MuJoCo (MaMuJoCo, de Witt et al. 2020) robots as Environments, through
``gymnasium_robotics.mamujoco_v1`` and the PettingZoo adapter (:func:`league.envs.pettingzoo.from_spec`).

Each robot's joints are split among the seats by the scenario's ``agent_conf``; every seat
receives the same team reward. The seat count is fixed by the split, so a factory takes
``n_players`` only to refuse a wrong one (as ``ipd_env`` does): a run config can then name any
environment with its seat count.
"""

from __future__ import annotations

from typing import Any

import torch

from league.envs.base import Environment

__all__ = ["mamujoco_env", "hopper_3x1", "ant_4x2"]


def mamujoco_env(scenario: str, agent_conf: str, max_steps: int = 1000, dtype: torch.dtype = torch.float32,
                 observe: str = "own", **kwargs: Any) -> Environment:
    """MaMuJoCo ``scenario`` split as ``agent_conf`` (e.g. ``"Hopper"``, ``"3x1"``): episodes end
    when the robot falls (the gymnasium task's termination) or after ``max_steps`` steps.
    ``observe="state"`` gives every seat the full MuJoCo state; ``kwargs`` go to
    ``mamujoco_v1.parallel_env`` (e.g. ``agent_obsk``)."""
    from league.envs.pettingzoo import from_spec

    return from_spec("gymnasium_robotics.mamujoco_v1:parallel_env", max_steps, dtype, observe=observe,
                     scenario=scenario, agent_conf=agent_conf, max_episode_steps=max_steps, **kwargs)


def _seats(name: str, n_players: int | None, want: int) -> None:
    if n_players is not None and n_players != want:
        raise ValueError(f"{name} has {want} seats (its joints are split {want} ways), got n_players={n_players}")


def hopper_3x1(n_players: int | None = 3, max_steps: int = 1000, dtype: torch.dtype = torch.float32,
               observe: str = "own", **kwargs: Any) -> Environment:
    """Hopper "3x1": three seats, one joint each (thigh, leg, foot), shared team reward; the
    MATRL paper's 3-agent Hopper (Figure 5c), where every seat sees the full state
    (``observe="state"``)."""
    _seats("hopper-3x1", n_players, 3)
    return mamujoco_env("Hopper", "3x1", max_steps, dtype, observe, **kwargs)


def ant_4x2(n_players: int | None = 4, max_steps: int = 1000, dtype: torch.dtype = torch.float32,
            observe: str = "own", **kwargs: Any) -> Environment:
    """Ant "4x2": four seats, one leg (two joints) each, shared team reward; the MATRL paper's
    4-agent Ant (Figure 9c)."""
    _seats("ant-4x2", n_players, 4)
    return mamujoco_env("Ant", "4x2", max_steps, dtype, observe, **kwargs)
