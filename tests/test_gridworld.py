"""Checkers and switch grid worlds: scripted episodes with hand-computed rewards, walls,
collisions, fruit removal, termination and absorption (the environment contract itself runs in
tests/test_environments.py)."""

from __future__ import annotations

import pytest
import torch

from league.envs import make_env, parallel_env

STAY, UP, DOWN, LEFT, RIGHT = range(5)


def play(env, script, batch=()):
    """Run joint actions (one tuple per step) from reset; return the timesteps."""
    steps = [env.reset(batch, 0)]
    for joint in script:
        steps.append(env.step([torch.full(batch, a, dtype=torch.long) for a in joint]))
    return steps


def positions(env):
    return env._pos.tolist()


def test_switch2_scripted_episode_rewards_and_termination():
    env = make_env("switch", n_players=2)
    # agent 0 crosses the corridor first (down, 6 x right, up) while agent 1 waits in its corner,
    # which is agent 0's target; agent 1 steps aside, agent 0 arrives, then agent 1 crosses
    # (row 0 has walls at columns 2..4: down, 5 x left, up).
    a0 = [DOWN] + [RIGHT] * 6 + [UP]
    script = [(a, STAY) for a in a0[:-1]]
    steps = play(env, script)
    assert positions(env) == [[1, 6], [0, 6]]  # agent 1 still holds agent 0's target
    steps.append(env.step([torch.tensor(STAY), torch.tensor(LEFT)]))
    assert positions(env) == [[1, 6], [0, 5]]
    steps.append(env.step([torch.tensor(UP), torch.tensor(STAY)]))  # agent 0 arrives
    assert positions(env) == [[0, 6], [0, 5]] and env._arrived.tolist() == [True, False]
    assert steps[-1].rewards.tolist() == pytest.approx([5 - 0.1, -0.1])
    rest = [DOWN] + [LEFT] * 5 + [UP]  # (0,5) -> (1,5) -> (1,0) -> (0,0)
    for a in rest:
        steps.append(env.step([torch.tensor(RIGHT), torch.tensor(a)]))  # agent 0 has arrived: it stays
    assert positions(env) == [[0, 6], [0, 0]]
    assert bool(steps[-1].terminated) and not bool(steps[-1].truncated)
    total = torch.stack([s.rewards for s in steps]).sum(0)
    # agent 0: 9 steps of cost, +5; agent 1: 1 + 7 (waiting) + 1 + 1 + 7 = 16 steps, +5
    n0, n1 = 9, len(script) + 2 + len(rest)
    assert total.tolist() == pytest.approx([5 - 0.1 * n0, 5 - 0.1 * n1])
    after = env.step([torch.tensor(DOWN), torch.tensor(DOWN)])  # absorbing
    assert after.rewards.tolist() == [0.0, 0.0] and bool(after.terminated)
    assert positions(env) == [[0, 6], [0, 0]]


def test_switch_walls_and_grid_edges_refuse_moves():
    env = make_env("switch", n_players=2)
    play(env, [(RIGHT, LEFT), (RIGHT, UP)])
    # (0,0) -> (0,1) -> (0,2) is a wall; (0,6) -> (0,5), then up leaves the grid
    assert positions(env) == [[0, 1], [0, 5]]


def test_switch4_has_four_agents_in_two_rooms_and_collisions_follow_seat_order():
    env = make_env("switch", n_players=4)
    assert env.agents == ("agent_0", "agent_1", "agent_2", "agent_3")
    env.reset((), 0)
    assert positions(env) == [[0, 0], [0, 6], [2, 0], [2, 6]]
    env.step([torch.tensor(DOWN), torch.tensor(STAY), torch.tensor(UP), torch.tensor(STAY)])
    # agents 0 and 2 both want (1, 0): seat 0 moves first, seat 2 is refused
    assert positions(env) == [[1, 0], [0, 6], [2, 0], [2, 6]]


def test_checkers_fruit_rewards_by_sensitivity_and_removal():
    env = make_env("checkers")
    steps = play(env, [(RIGHT, RIGHT)])
    # (0, 1): (0 + 1) odd -> lemon for agent 0 (-5); (2, 1): odd -> lemon for agent 1 (-1)
    assert steps[-1].rewards.tolist() == pytest.approx([-5 - 0.01, -1 - 0.01])
    assert env._fruit[0, 1].item() == 0 and env._fruit[2, 1].item() == 0
    steps.append(env.step([torch.tensor(LEFT), torch.tensor(LEFT)]))
    steps.append(env.step([torch.tensor(RIGHT), torch.tensor(RIGHT)]))  # the lemons are gone
    assert steps[-1].rewards.tolist() == pytest.approx([-0.01, -0.01])
    steps.append(env.step([torch.tensor(DOWN), torch.tensor(RIGHT)]))  # (1,1) even: apple; (2,2) even: apple
    assert steps[-1].rewards.tolist() == pytest.approx([5 - 0.01, 1 - 0.01])
    obs = steps[-1].obs[0]  # agent 0 at (1, 1): neighbourhood rows 0..2, columns 0..2
    assert obs[:2].tolist() == pytest.approx([0.5, 1 / 7])
    apples, lemons = obs[2:11].reshape(3, 3), obs[11:].reshape(3, 3)
    # (0,2) apple; (1,2) lemon; (2,1) eaten lemon, (2,2) eaten apple; (0,1) eaten lemon; column 0 empty
    assert apples.tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert lemons.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_checkers_terminates_when_every_fruit_is_eaten():
    env = make_env("checkers")
    env.reset((), 0)
    # agent 0 sweeps rows 0 and 1, agent 1 row 2 (snake paths over columns 1..6)
    script = [(RIGHT, RIGHT)] * 6 + [(DOWN, STAY)] + [(LEFT, STAY)] * 5
    total = torch.zeros(2)
    ts = None
    for a0, a1 in script:
        ts = env.step([torch.tensor(a0), torch.tensor(a1)])
        total += ts.rewards
    assert bool(ts.terminated) and int((env._fruit != 0).sum()) == 0
    # agent 0 ate rows 0 and 1 (columns 1..6): 6 apples and 6 lemons -> 0; agent 1 row 2: 3 and 3 -> 0
    assert total.tolist() == pytest.approx([-0.01 * 12, -0.01 * 12], abs=1e-5)


def test_gridworlds_batch_like_lone_episodes_and_as_pettingzoo():
    env = make_env("switch", n_players=4)
    g = torch.Generator().manual_seed(0)
    acts = [torch.randint(5, (6, 20, 4), generator=g)]
    env.reset((6,), 0)
    lone = make_env("switch", n_players=4)
    lone.reset((), 0)
    for t in range(20):
        ts = env.step([acts[0][:, t, k] for k in range(4)])
        t1 = lone.step([acts[0][3, t, k] for k in range(4)])
        assert torch.equal(ts.rewards[3], t1.rewards)
    pz = parallel_env("checkers")
    obs, _ = pz.reset(seed=0)
    assert set(obs) == {"agent_0", "agent_1"} and obs["agent_0"].shape == (20,)
