"""PettingZoo in both directions.

- :class:`ParallelView`: any :class:`~league.envs.base.Environment` as a PettingZoo
  ``ParallelEnv`` (one episode, batch shape ``()``), so every project game passes
  ``pettingzoo.test.parallel_api_test`` and can be used by PettingZoo tooling.
- :class:`PettingZooEnv`: any PettingZoo ``ParallelEnv`` with ``Discrete``/``Box`` spaces as a
  batched Environment (one env instance per batch element, stepped in Python), resolved
  from a ``"module:factory"`` string by :func:`from_spec`. MaMuJoCo
  (``gymnasium_robotics.mamujoco_v1``) enters this way.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any, Callable, Sequence

import gymnasium
import numpy as np
import torch
from pettingzoo import ParallelEnv

from league.envs.base import Environment, TimeStep, check_space, from_numpy, space_dtype, to_numpy

__all__ = ["ParallelView", "PettingZooEnv", "resolve_factory", "from_spec"]


class ParallelView(ParallelEnv):
    """One episode of an Environment through PettingZoo's parallel API."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.metadata = {"name": env.name, "is_parallelizable": True, "render_modes": []}
        self.render_mode = None
        self.possible_agents = list(env.agents)
        self.agents: list[str] = []
        self._obs_spaces = dict(zip(env.agents, env.observation_spaces))
        self._act_spaces = dict(zip(env.agents, env.action_spaces))

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_spaces[agent]

    def _obs(self, ts: TimeStep) -> dict[str, Any]:
        return {a: to_numpy(self._obs_spaces[a], ts.obs[k]) for k, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        ts = self.env.reset((), seed)
        self.agents = list(self.possible_agents)
        return self._obs(ts), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"{self.env.name}: every live agent acts each step; no action for {missing}")
        dtype = getattr(self.env, "dtype", torch.float32)
        acts = [torch.as_tensor(np.asarray(actions[a]), dtype=space_dtype(self._act_spaces[a], dtype))
                for a in self.possible_agents]
        ts = self.env.step(acts)
        live = list(self.agents)
        obs = {a: o for a, o in self._obs(ts).items() if a in live}
        rewards = {a: float(ts.rewards[k]) for k, a in enumerate(self.possible_agents) if a in live}
        term = {a: bool(ts.terminated) for a in live}
        trunc = {a: bool(ts.truncated) for a in live}
        if bool(ts.dones):
            self.agents = []
        return obs, rewards, term, trunc, {a: {} for a in live}

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None


class PettingZooEnv:
    """A batched Environment over independent copies of a PettingZoo ``ParallelEnv``.

    Batch element at flat index ``j`` is reset with ``seed + j``; with ``seed=None`` a copy
    that was never reset is seeded ``j`` and later ones continue its own random stream, so
    two environments built alike and reset alike play the same episodes (a league's referee
    and the embedded chain of the same config). Every seat acts every step;
    an element's episode ends when any of its agents terminates or truncates (a seat that
    leaves ends the match), or after ``max_steps`` steps, whichever comes first.

    ``observe``: ``"own"``, each seat reads its agent's observation; ``"state"``, every seat
    reads the environment's global state (PettingZoo's ``ParallelEnv.state()``, e.g. the
    full MuJoCo state of a MaMuJoCo robot: "both agents see the full state").

    The simulators are numpy's, so every tensor of a step is on the CPU (:attr:`device`);
    ``league.rollout.play`` moves them to the policies' device once per step.
    """

    device = torch.device("cpu")
    """Where observations, rewards and ends are made (and where actions are read)."""

    def __init__(self, factory: Callable[[], ParallelEnv], max_steps: int, name: str | None = None,
                 dtype: torch.dtype = torch.float32, observe: str = "own") -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if observe not in ("own", "state"):
            raise ValueError(f"observe must be 'own' or 'state', got {observe!r}")
        self.observe = observe
        self._seeded: set[int] = set()  # copies reset with a seed at least once
        self._factory = factory
        self.max_steps = max_steps
        self.dtype = dtype
        probe = self._make()
        self.name = name or str(probe.metadata.get("name", type(probe).__name__))
        self.agents = tuple(probe.possible_agents)
        if not self.agents:
            raise ValueError(f"{self.name}: the ParallelEnv has no possible_agents")
        if observe == "state":
            state_space = getattr(probe, "state_space", None)
            if state_space is None:  # e.g. MaMuJoCo: state() without a declared space
                probe.reset(seed=0)
                self._seeded.add(0)
                state = np.asarray(probe.state())
                state_space = gymnasium.spaces.Box(-np.inf, np.inf, state.shape, state.dtype)
            self.observation_spaces = (check_space(state_space, f"{self.name} state"),) * len(self.agents)
        else:
            self.observation_spaces = tuple(check_space(probe.observation_space(a), f"{self.name} observation of {a}")
                                            for a in self.agents)
        self.action_spaces = tuple(check_space(probe.action_space(a), f"{self.name} action of {a}")
                                   for a in self.agents)
        self._envs: list[ParallelEnv] = [probe]
        self._shape: tuple[int, ...] = ()
        self._last: list[dict[str, Any]] = []
        self._done = np.zeros(0, dtype=bool)
        self._terminated = np.zeros(0, dtype=bool)
        self._t = 0

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    def __repr__(self) -> str:
        return f"PettingZooEnv({self.name!r}, agents={self.agents}, max_steps={self.max_steps})"

    def _make(self) -> ParallelEnv:
        env = self._factory()
        if not isinstance(env, ParallelEnv):
            raise ValueError(f"the factory returned {type(env).__name__}, not a PettingZoo ParallelEnv "
                             "(wrap an AEC env with pettingzoo.utils.conversions.aec_to_parallel)")
        return env

    def _seen(self, env: ParallelEnv, obs: dict[str, Any]) -> dict[str, Any]:
        """What each seat reads: its own observation, or the global state for every seat."""
        if self.observe == "own":
            return obs
        state = np.asarray(env.state())
        return {a: state for a in self.agents}

    def _stack_obs(self) -> list[torch.Tensor]:
        return [from_numpy(space, [o[a] for o in self._last], self.dtype).reshape((*self._shape, *space.shape))
                for a, space in zip(self.agents, self.observation_spaces)]

    def reset(self, batch_shape: tuple[int, ...] = (), seed: int | None = None) -> TimeStep:
        self._shape = tuple(batch_shape)
        size = math.prod(self._shape)
        while len(self._envs) < size:
            self._envs.append(self._make())
        self._last = []
        for j in range(size):
            if seed is None and j not in self._seeded:
                obs, _ = self._envs[j].reset(seed=j)  # deterministic: a copy's first episode is seeded
            else:
                obs, _ = self._envs[j].reset(seed=None if seed is None else seed + j)
            self._seeded.add(j)
            if set(obs) != set(self.agents):
                raise ValueError(f"{self.name}: reset must return an observation for every agent "
                                 f"{list(self.agents)}, got {sorted(obs)}")
            self._last.append(self._seen(self._envs[j], obs))
        self._done = np.zeros(size, dtype=bool)
        self._terminated = np.zeros(size, dtype=bool)
        self._t = 0
        zeros = torch.zeros(self._shape, dtype=torch.bool, device=self.device)
        rewards = torch.zeros(*self._shape, self.n_agents, dtype=self.dtype, device=self.device)
        return TimeStep(self._stack_obs(), rewards, zeros, zeros)

    def step(self, actions: Sequence[torch.Tensor]) -> TimeStep:
        if not self._last:
            raise RuntimeError(f"{self.name}: call reset before step")
        if len(actions) != self.n_agents:
            raise ValueError(f"{self.name} has {self.n_agents} seats, got {len(actions)} actions")
        flat = []
        for k, (a, space) in enumerate(zip(actions, self.action_spaces)):
            want = (*self._shape, *space.shape)
            if tuple(a.shape) != want:
                raise ValueError(f"{self.name}: seat {k}'s actions must have shape {want}, got {tuple(a.shape)}")
            flat.append(a.reshape(-1, *space.shape))
        size = len(self._last)
        rewards = torch.zeros(size, self.n_agents, dtype=self.dtype, device=self.device)
        self._t += 1
        for j in range(size):
            if self._done[j]:
                continue  # absorbing: same observation, no reward
            step = {a: to_numpy(space, flat[k][j]) for k, (a, space) in enumerate(zip(self.agents, self.action_spaces))}
            obs, rew, term, trunc, _ = self._envs[j].step(step)
            rewards[j] = torch.tensor([float(rew.get(a, 0.0)) for a in self.agents], dtype=self.dtype,
                                      device=self.device)
            self._terminated[j] = any(term.get(a, False) for a in self.agents)
            truncated = any(trunc.get(a, False) for a in self.agents) or self._t >= self.max_steps
            self._done[j] = self._terminated[j] or truncated
            self._last[j] = self._seen(self._envs[j], {a: obs.get(a, self._last[j][a]) for a in self.agents})
        terminated = torch.from_numpy(self._terminated.copy()).reshape(self._shape)
        done = torch.from_numpy(self._done.copy()).reshape(self._shape)
        return TimeStep(self._stack_obs(), rewards.reshape(*self._shape, self.n_agents), terminated, done & ~terminated)


def resolve_factory(spec: str) -> Callable[..., ParallelEnv]:
    """``"package.module:factory"`` -> the callable, with an error that names what is missing."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"env {spec!r} is not 'module:factory' (e.g. 'gymnasium_robotics.mamujoco_v1:parallel_env')")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # a package may export a module-like attribute (gymnasium_robotics.mamujoco_v1)
        head, _, tail = module_name.rpartition(".")
        try:
            module = getattr(importlib.import_module(head), tail) if head else None
        except (ModuleNotFoundError, AttributeError):
            module = None
        if module is None:
            raise ValueError(f"env {spec!r}: unknown module {module_name!r} ({e})") from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"env {spec!r}: module {module_name!r} has no factory {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"env {spec!r}: {attr!r} in {module_name!r} is not callable")
    return factory


def from_spec(spec: str, /, max_steps: int, dtype: torch.dtype = torch.float32, observe: str = "own",
              **kwargs: Any) -> PettingZooEnv:
    """The Environment of a PettingZoo ``ParallelEnv`` factory named ``"module:factory"``,
    called with ``kwargs`` for every batch element (``observe``: see :class:`PettingZooEnv`)."""
    factory = resolve_factory(spec)
    return PettingZooEnv(functools.partial(factory, **kwargs), max_steps, name=spec, dtype=dtype, observe=observe)
