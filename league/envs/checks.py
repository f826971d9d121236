"""The contract every environment passes, reusable like ``pettingzoo.test``: call
:func:`check_environment` with a factory; it raises ``AssertionError`` naming the broken rule.

Rules: spaces per seat (``Discrete``/``Box``); observations in their spaces with the batch
shape first; ``flat_obs`` equals ``gymnasium.spaces.flatten``; rewards ``[*batch, n]`` and
finite; dones bool, sticky and absorbing (zero reward, same observation), every episode over
within ``max_steps``; same seed and actions give the same episodes; element ``j`` of a batch
equals a lone episode seeded ``seed + j``; bad actions raise ``ValueError``; the PettingZoo
view passes ``parallel_api_test`` and ``parallel_seed_test``; and an Environment rebuilt from
that view by the PettingZoo adapter plays the same episodes.
"""

from __future__ import annotations

import math
from typing import Callable

import gymnasium
import numpy as np
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from league.envs.base import Environment, TimeStep, flat_dim, flat_obs, random_actions, to_numpy
from league.envs.pettingzoo import ParallelView, PettingZooEnv

__all__ = ["check_environment", "play_random"]


def play_random(env: Environment, batch_shape: tuple[int, ...], seed: int, action_seed: int) -> list[TimeStep]:
    """Reset, then step with uniform random actions until every episode is over."""
    g = torch.Generator().manual_seed(action_seed)
    steps = [env.reset(batch_shape, seed)]
    while not bool(steps[-1].dones.all()):
        if len(steps) > env.max_steps:
            raise AssertionError(f"{env.name}: episodes still running after max_steps={env.max_steps}")
        steps.append(env.step(random_actions(env, batch_shape, g)))
    return steps


def _same(a: list[TimeStep], b: list[TimeStep], index=(...,)) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        pairs = [*zip(x.obs, y.obs), (x.rewards, y.rewards), (x.terminated, y.terminated), (x.truncated, y.truncated)]
        if not all(torch.equal(p[index], q) for p, q in pairs):
            return False
    return True


def _check_timestep(env: Environment, ts: TimeStep, batch_shape: tuple[int, ...]) -> None:
    n = env.n_agents
    assert len(ts.obs) == n, f"{env.name}: {len(ts.obs)} observations for {n} seats"
    for k, (o, space) in enumerate(zip(ts.obs, env.observation_spaces)):
        assert tuple(o.shape) == (*batch_shape, *space.shape), f"{env.name}: seat {k} obs shape {tuple(o.shape)}"
        fits = o.dtype == torch.long if isinstance(space, gymnasium.spaces.Discrete) else o.is_floating_point()
        assert fits, f"{env.name}: seat {k} obs dtype {o.dtype} does not fit {space}"
        flat = o.reshape(-1, *space.shape)
        for j in range(min(flat.shape[0], 4)):
            value = to_numpy(space, flat[j])
            assert space.contains(value), f"{env.name}: seat {k} observation {value} not in {space}"
            expected = gymnasium.spaces.flatten(space, value)
            got = flat_obs(space, flat[j]).double().numpy()
            assert got.shape == (flat_dim(space),) and np.allclose(got, expected), f"{env.name}: flat_obs != flatten"
    assert tuple(ts.rewards.shape) == (*batch_shape, n), f"{env.name}: rewards shape {tuple(ts.rewards.shape)}"
    assert ts.rewards.is_floating_point() and bool(torch.isfinite(ts.rewards).all()), f"{env.name}: bad rewards"
    for name, flag in (("terminated", ts.terminated), ("truncated", ts.truncated)):
        assert flag.dtype == torch.bool and tuple(flag.shape) == batch_shape, f"{env.name}: {name} not bool {batch_shape}"


def check_environment(make: Callable[[], Environment], batch_shape: tuple[int, ...] = (2, 3), seed: int = 0,
                      api_cycles: int = 200) -> None:
    """Run every rule of the module docstring on fresh environments from ``make``."""
    env = make()
    n = env.n_agents
    assert n == len(env.agents) == len(env.observation_spaces) == len(env.action_spaces) >= 1
    assert len(set(env.agents)) == n, f"{env.name}: seat names repeat"
    for space in (*env.observation_spaces, *env.action_spaces):
        assert isinstance(space, (gymnasium.spaces.Discrete, gymnasium.spaces.Box)), f"{env.name}: {space}"
    assert env.max_steps >= 1

    steps = play_random(env, batch_shape, seed, action_seed=seed)
    assert not bool(steps[0].dones.any()), f"{env.name}: an episode is over at reset"
    assert bool((steps[0].rewards == 0).all()), f"{env.name}: reset must report zero rewards"
    for prev, ts in zip(steps, steps[1:]):
        _check_timestep(env, ts, batch_shape)
        assert bool((ts.dones | ~prev.dones).all()), f"{env.name}: an episode came back after it ended"
        over = prev.dones
        assert bool((ts.rewards[over] == 0).all()), f"{env.name}: reward after the episode ended"
        for o_prev, o in zip(prev.obs, ts.obs):
            assert torch.equal(o[over], o_prev[over]), f"{env.name}: observation changed after the episode ended"
    _check_timestep(env, steps[0], batch_shape)
    # absorbing: one more step on a finished batch changes nothing
    extra = env.step(random_actions(env, batch_shape, torch.Generator().manual_seed(1)))
    assert bool(extra.dones.all()) and bool((extra.rewards == 0).all())

    # determinism and batch independence
    again = play_random(make(), batch_shape, seed, action_seed=seed)
    assert _same(steps, again), f"{env.name}: same seed and actions, different episodes"
    j = math.prod(batch_shape) - 1
    last = tuple(int(i) for i in np.unravel_index(j, batch_shape))
    env_b, env_1 = make(), make()  # the lone episode replays the batch's actions for element j
    g = torch.Generator().manual_seed(seed)
    tb, t1 = env_b.reset(batch_shape, seed), env_1.reset((), seed + j)
    for _ in range(env.max_steps):
        if bool(tb.dones[last]):
            break
        acts = random_actions(env, batch_shape, g)
        tb, t1 = env_b.step(acts), env_1.step([a[last] for a in acts])
        assert _same([tb], [t1], last), f"{env.name}: batch element {j} differs from a lone episode seeded {seed + j}"

    # bad actions
    env.reset(batch_shape, seed)
    acts = random_actions(env, batch_shape, torch.Generator().manual_seed(2))
    for bad in (acts[:-1], [a.reshape(-1, *a.shape[len(batch_shape):])[:1] for a in acts]):
        try:
            env.step(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{env.name}: step accepted actions of the wrong seats or shape")

    # PettingZoo both ways
    parallel_api_test(ParallelView(make()), num_cycles=api_cycles)
    parallel_seed_test(lambda: ParallelView(make()), num_cycles=api_cycles)
    dtype = getattr(env, "dtype", torch.float32)
    rebuilt = PettingZooEnv(lambda: ParallelView(make()), env.max_steps, name=env.name, dtype=dtype)
    assert rebuilt.agents == env.agents
    assert all(a == b for a, b in zip(rebuilt.observation_spaces, env.observation_spaces))
    assert all(a == b for a, b in zip(rebuilt.action_spaces, env.action_spaces))
    assert _same(steps, play_random(rebuilt, batch_shape, seed, action_seed=seed)), \
        f"{env.name}: the PettingZoo round trip plays different episodes"
