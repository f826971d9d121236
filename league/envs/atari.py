"""Two-player Atari Pong (PettingZoo ``atari.pong_v3``, the multi-agent ALE) as an Environment.

Needs the optional ``atari`` extra (``multi-agent-ale-py``, ``ale-py``, ``pygame``). The ROM is
the one the ``ale-py`` wheel ships (``ale_py/roms/pong.bin``), passed to PettingZoo as its
``auto_rom_install_path``: no ROM download, no AutoROM licence step.

Observations are the console's 128 bytes of RAM by default (``obs_type="ram"``): both seats read
the same bytes, which hold the ball's and both paddles' positions, so a small MLP can play, and
one emulator step costs microseconds instead of a convolution over a 210x160 frame (the MATRL
paper's agents read pixels through a CNN; Table 6), scaled to ``[0, 1]``. Each environment
step repeats the seats' actions for ``frame_skip`` frames and sums the rewards (the usual Atari
action repeat; :class:`AtariSteps`, a few lines here rather than SuperSuit and its dependencies
for two small wrappers).

Rewards (PettingZoo's Pong): +1 to the scorer and -1 to the other for a point; a seat that does
not serve within about 2 seconds gets -1 alone (so the game is not exactly zero-sum).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from pettingzoo import ParallelEnv

from league.envs.base import Environment
from league.envs.pettingzoo import PettingZooEnv

__all__ = ["AtariSteps", "ale_rom_folder", "pong_2p"]


def ale_rom_folder() -> str:
    """The folder of ROMs inside the installed ``ale-py`` wheel (``ale_py/roms``)."""
    import ale_py

    folder = Path(ale_py.__file__).parent / "roms"
    if not (folder / "pong.bin").exists():
        raise FileNotFoundError(f"ale-py is installed but {folder} holds no pong.bin")
    return str(folder)


class AtariSteps(ParallelEnv):
    """A PettingZoo Atari ``ParallelEnv`` seen through two usual Atari conventions: every step
    repeats the actions ``frames`` times, summing each agent's rewards and stopping early when
    an agent's episode ends; observations (RAM bytes or pixels, ``uint8``) are scaled to
    ``float32`` in ``[0, 1]`` so a network reads them at unit scale."""

    def __init__(self, env: ParallelEnv, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frames}")
        self.env = env
        self.frames = frames
        self.metadata = env.metadata
        self.possible_agents = list(env.possible_agents)
        self.render_mode = None
        self._obs_spaces = {a: gymnasium.spaces.Box(0.0, 1.0, env.observation_space(a).shape, np.float32)
                            for a in self.possible_agents}

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self.env.action_space(agent)

    @staticmethod
    def _scale(obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {a: np.asarray(o, dtype=np.float32) / 255.0 for a, o in obs.items()}

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._scale(obs), info

    def step(self, actions: dict[str, Any]):
        total = {a: 0.0 for a in self.env.agents}
        for _ in range(self.frames):
            obs, rew, term, trunc, info = self.env.step(actions)
            for agent, r in rew.items():
                total[agent] = total.get(agent, 0.0) + float(r)
            if any(term.values()) or any(trunc.values()):
                break
        return self._scale(obs), total, term, trunc, info

    def close(self) -> None:
        self.env.close()


def _pong_parallel(frame_skip: int, obs_type: str, **kwargs: Any) -> Any:
    from pettingzoo.atari import pong_v3

    env = pong_v3.parallel_env(num_players=2, obs_type=obs_type, auto_rom_install_path=ale_rom_folder(), **kwargs)
    return AtariSteps(env, frame_skip)


def pong_2p(n_players: int | None = 2, max_steps: int = 1000, dtype: torch.dtype = torch.float32,
            frame_skip: int = 4, obs_type: str = "ram", **kwargs: Any) -> Environment:
    """Two-player Pong (seat 0 ``first_0``, seat 1 ``second_0``; 6 actions each), ``max_steps``
    environment steps of ``frame_skip`` frames at most (a whole game, to 21 points, takes
    thousands of frames; a short ``max_steps`` plays its first points). ``kwargs`` go to
    ``pong_v3.parallel_env`` (e.g. ``max_cycles``)."""
    if n_players is not None and n_players != 2:
        raise ValueError(f"pong-2p has 2 seats, got n_players={n_players}")
    factory = functools.partial(_pong_parallel, frame_skip, obs_type, **kwargs)
    return PettingZooEnv(factory, max_steps, name="pong-2p", dtype=dtype)
