"""MATRL's grid worlds, checkers (2 agents) and switch (2 or 4 agents), as batched environments
(and so, through ``league.envs.parallel_env``, PettingZoo ``ParallelEnv``s).

Written from the MATRL paper's descriptions (its Appendix D and Section 5; the original package
pins a gym version that no longer installs). One class, :class:`GridWorld`, runs any
:class:`GridLayout`; the two games are layouts:

- **switch**: a 3 x 7 grid, two rooms joined by a one-cell-wide corridor (row 1, columns 2..4).
  Agents start in the corner cells of one room and must reach a target in the other room; each
  step costs every agent that has not arrived 0.1, arriving pays 5, an agent that has arrived
  stays put. The episode ends when every agent has arrived (or after ``max_steps``, 50).
- **checkers**: a 3 x 8 grid with apples and lemons in a checker pattern on columns 1..6; the
  sensitive agent 0 gets +5 per apple and -5 per lemon, agent 1 +1 and -1; each step costs 0.01;
  a fruit is gone once eaten. The episode ends when no fruit is left (or after 100 steps).

Actions ``Discrete(5)``: stay, up, down, left, right. Moves into a wall, off the grid, or onto
another agent's cell are refused; agents move in seat order within a step. Observations
``Box(0, 1)``: the agent's own normalised (row, column) (switch), plus the apples and lemons in
its 3 x 3 neighbourhood (checkers). Both games are deterministic: ``reset``'s seed changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F

from league.envs.base import TimeStep

__all__ = ["GridLayout", "GridWorld", "switch_layout", "checkers_layout", "switch_env", "checkers_env"]

# stay, up, down, left, right
_MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


@dataclass(frozen=True)
class GridLayout:
    """A grid world: walls, starts, and what pays (targets and/or fruits)."""

    name: str
    walls: tuple[str, ...]
    """Rows of the map, ``#`` a wall, anything else free."""
    starts: tuple[tuple[int, int], ...]
    """Start cell (row, column) of each agent."""
    max_steps: int
    """Episodes are truncated after this many steps."""
    step_cost: float = 0.0
    """Paid every step by every agent that has not reached its target (all agents without targets)."""
    targets: tuple[tuple[int, int], ...] | None = None
    """Target cell of each agent; arriving pays ``target_reward`` and ends the agent's moves."""
    target_reward: float = 0.0
    fruits: tuple[str, ...] | None = None
    """Rows of fruit codes: ``a`` apple, ``l`` lemon, ``.`` none."""
    fruit_rewards: tuple[tuple[float, float], ...] | None = None
    """Per agent, the (apple, lemon) reward for eating one."""


def switch_layout(n_players: int = 2) -> GridLayout:
    """Switch with 2 agents (one per room, swapping rooms) or 4 (two per room)."""
    corners = {"tl": (0, 0), "tr": (0, 6), "bl": (2, 0), "br": (2, 6)}
    plans = {2: (("tl", "tr"), ("tr", "tl")),
             4: (("tl", "br"), ("tr", "bl"), ("bl", "tr"), ("br", "tl"))}
    if n_players not in plans:
        raise ValueError(f"switch takes 2 or 4 players, got {n_players}")
    plan = plans[n_players]
    return GridLayout(name=f"switch{n_players}", walls=("..###..", ".......", "..###.."),
                      starts=tuple(corners[s] for s, _ in plan), targets=tuple(corners[t] for _, t in plan),
                      max_steps=50, step_cost=0.1, target_reward=5.0)


def checkers_layout() -> GridLayout:
    """Checkers: 2 agents, apples and lemons alternating on columns 1..6 of a 3 x 8 grid."""
    fruits = tuple("." + "".join("a" if (r + c) % 2 == 0 else "l" for c in range(1, 7)) + "." for r in range(3))
    return GridLayout(name="checkers", walls=("........",) * 3, starts=((0, 0), (2, 0)), max_steps=100,
                      step_cost=0.01, fruits=fruits, fruit_rewards=((5.0, -5.0), (1.0, -1.0)))


class GridWorld:
    """An :class:`~league.envs.base.Environment` running a :class:`GridLayout`, batched."""

    random_reset = False
    """Every episode starts on the layout's start cells: no reset seed is drawn for it."""

    def __init__(self, layout: GridLayout, dtype: torch.dtype = torch.float32) -> None:
        self.layout = layout
        self.name = layout.name
        self.dtype = dtype
        self.max_steps = layout.max_steps
        self._walls = torch.tensor([[ch == "#" for ch in row] for row in layout.walls])
        self._rows, self._cols = self._walls.shape
        n = len(layout.starts)
        self.agents = tuple(f"agent_{k}" for k in range(n))
        self._starts = torch.tensor(layout.starts)
        self._targets = None if layout.targets is None else torch.tensor(layout.targets)
        if layout.fruits is not None:
            codes = {".": 0, "a": 1, "l": 2}
            self._fruit0 = torch.tensor([[codes[ch] for ch in row] for row in layout.fruits])
            pay = torch.tensor(layout.fruit_rewards, dtype=dtype)
            self._fruit_pay = torch.cat([torch.zeros(n, 1, dtype=dtype), pay], 1)  # [n, 3]: none, apple, lemon
        else:
            self._fruit0 = None
        dim = 2 + (18 if self._fruit0 is not None else 0)
        self.observation_spaces = tuple(gymnasium.spaces.Box(0.0, 1.0, (dim,), np.float32) for _ in self.agents)
        self.action_spaces = tuple(gymnasium.spaces.Discrete(5) for _ in self.agents)
        self._pos = self._arrived = self._fruit = self._term = None
        self._t = 0

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    def __repr__(self) -> str:
        return f"GridWorld({self.name!r})"

    def _obs(self) -> list[torch.Tensor]:
        pos = self._pos
        norm = pos.to(self.dtype) / torch.tensor([self._rows - 1, self._cols - 1], dtype=self.dtype)
        if self._fruit is None:
            return [norm[..., k, :] for k in range(self.n_agents)]
        # 3 x 3 neighbourhood of each agent, cells off the grid hold no fruit
        padded = F.pad(self._fruit, (1, 1, 1, 1))
        batch = pos.shape[:-2]
        flat = padded.reshape(-1, self._rows + 2, self._cols + 2)
        out = []
        dr, dc = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
        for k in range(self.n_agents):
            p = pos[..., k, :].reshape(-1, 2)
            rows = (p[:, 0, None, None] + dr).reshape(p.shape[0], -1)
            cols = (p[:, 1, None, None] + dc).reshape(p.shape[0], -1)
            cells = flat[torch.arange(p.shape[0])[:, None], rows, cols].reshape(*batch, 9)
            out.append(torch.cat([norm[..., k, :], (cells == 1).to(self.dtype), (cells == 2).to(self.dtype)], -1))
        return out

    def _timestep(self, rewards: torch.Tensor) -> TimeStep:
        truncated = torch.full_like(self._term, self._t >= self.max_steps) & ~self._term
        return TimeStep(obs=self._obs(), rewards=rewards, terminated=self._term.clone(), truncated=truncated)

    def reset(self, batch_shape: tuple[int, ...] = (), seed: int | None = None) -> TimeStep:
        """Every agent on its start cell, every fruit in place (deterministic: ``seed`` is unused)."""
        shape = tuple(batch_shape)
        self._pos = self._starts.expand(*shape, self.n_agents, 2).clone()
        self._arrived = torch.zeros(*shape, self.n_agents, dtype=torch.bool)
        self._fruit = None if self._fruit0 is None else self._fruit0.expand(*shape, self._rows, self._cols).clone()
        self._term = torch.zeros(shape, dtype=torch.bool)
        self._t = 0
        return self._timestep(torch.zeros(*shape, self.n_agents, dtype=self.dtype))

    def step(self, actions: Sequence[torch.Tensor]) -> TimeStep:
        if self._pos is None:
            raise RuntimeError(f"{self.name}: call reset before step")
        if len(actions) != self.n_agents:
            raise ValueError(f"{self.name} has {self.n_agents} seats, got {len(actions)} actions")
        shape = tuple(self._term.shape)
        for k, a in enumerate(actions):
            if tuple(a.shape) != shape:
                raise ValueError(f"{self.name}: seat {k}'s actions must have the batch shape {shape}, got {tuple(a.shape)}")
            if bool(((a < 0) | (a > 4)).any()):
                raise ValueError(f"{self.name}: seat {k}'s actions must lie in 0..4")
        live = ~self._term
        rewards = torch.zeros(*shape, self.n_agents, dtype=self.dtype)
        if self._t >= self.max_steps or not bool(live.any()):
            return self._timestep(rewards)  # absorbing
        self._t += 1
        for k in range(self.n_agents):
            moving = live & ~self._arrived[..., k]
            rewards[..., k] -= self.layout.step_cost * moving.to(self.dtype)
            new = self._pos[..., k, :] + _MOVES[actions[k].long()]
            inside = (new[..., 0] >= 0) & (new[..., 0] < self._rows) & (new[..., 1] >= 0) & (new[..., 1] < self._cols)
            r, c = new[..., 0].clamp(0, self._rows - 1), new[..., 1].clamp(0, self._cols - 1)
            free = inside & ~self._walls[r, c]
            others = torch.cat([self._pos[..., :k, :], self._pos[..., k + 1 :, :]], -2)
            free &= ~(others == new.unsqueeze(-2)).all(-1).any(-1)
            go = moving & free
            self._pos[..., k, :] = torch.where(go.unsqueeze(-1), new, self._pos[..., k, :])
            if self._targets is not None:
                reach = go & (self._pos[..., k, :] == self._targets[k]).all(-1)
                rewards[..., k] += self.layout.target_reward * reach.to(self.dtype)
                self._arrived[..., k] |= reach
            if self._fruit is not None:
                flat = self._fruit.reshape(-1, self._rows, self._cols)
                p = self._pos[..., k, :].reshape(-1, 2)
                idx = torch.arange(flat.shape[0])
                kind = flat[idx, p[:, 0], p[:, 1]].reshape(shape) * live.long()
                rewards[..., k] += self._fruit_pay[k][kind]
                flat[idx, p[:, 0], p[:, 1]] = torch.where(live.reshape(-1), 0, flat[idx, p[:, 0], p[:, 1]])
        goal = torch.ones(shape, dtype=torch.bool)
        if self._targets is not None:
            goal &= self._arrived.all(-1)
        if self._fruit is not None:
            goal &= (self._fruit == 0).flatten(-2).all(-1)
        self._term = self._term | (live & goal)
        return self._timestep(rewards)


def switch_env(n_players: int = 2, dtype: torch.dtype = torch.float32) -> GridWorld:
    """Switch with 2 or 4 agents (see the module docstring)."""
    return GridWorld(switch_layout(n_players), dtype)


def checkers_env(n_players: int = 2, dtype: torch.dtype = torch.float32) -> GridWorld:
    """Checkers, 2 agents (any other count is refused)."""
    if n_players != 2:
        raise ValueError(f"checkers takes 2 players, got {n_players}")
    return GridWorld(checkers_layout(), dtype)
