"""The live league on environments other than matrix games (issue 8): the referee steps
MaMuJoCo HalfCheetah 2x3 (real MuJoCo, both legs seeing the full state), where a meta-agent
process (Gaussian LSTM, policy-gradient rule, its own per-step learning rates) adapts to a
teammate process (Gaussian LSTM, learning too), and MATRL's checkers grid world (MLP
categorical policies, episodes that end on their own); the league's per-step team returns
and both agents' final parameters equal the embedded Markov chain of the same config and
seed (``league.chain.unroll`` with ``SampledEvaluator(env=...)``).

The referee is the real ``Referee`` behind its gRPC server in this process (so the test can
play the rounds one at a time and read the agents' adapted parameters between them, over
gRPC, before the chain's last step discards them); the agents are real ``league agent``
processes."""

from __future__ import annotations

import time
import json
from pathlib import Path

import importlib.util

import pytest
import torch

from agents.policy_factory import initial_state, make_policy  # noqa: E402
from league.chain import unroll  # noqa: E402
from league.evaluators import SampledEvaluator  # noqa: E402
from league.rollout import play, reset_seed  # noqa: E402
from league.updates import make_update_rule  # noqa: E402
from services import server as srv  # noqa: E402
from agents.runtime import AgentProcess, AgentRuntimeConfig  # noqa: E402
from services.batches import batch_tensors, encode_batch, read_batches  # noqa: E402
from services.client import fetch_parameters  # noqa: E402
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2  # noqa: E402
from services.league_config import LeagueConfig, league_env, load_league_config, seats_of  # noqa: E402
from tests.inprocess_league import InProcessLeague  # noqa: E402
from tests.league_procs import ROOT, spawn, stop, wait_json, wait_until  # noqa: E402

CONFIG = ROOT / "configs" / "league_halfcheetah.toml"
CHECKERS = ROOT / "configs" / "league_checkers.toml"
TOL = 1e-6
needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None,
                                  reason="gymnasium-robotics (the mujoco extra) is not installed")
CONFIGS = [pytest.param(CONFIG, id="halfcheetah", marks=needs_mujoco), pytest.param(CHECKERS, id="checkers")]


def embedded_chain(cfg: LeagueConfig) -> tuple[list[float], list[dict[str, torch.Tensor]]]:
    """The embedded meta-test chain of a league config with one meta-agent (seat 0) and one
    persona (seat 1): the meta-agent's mean per-step reward at every chain step and both
    seats' parameters after the last inner step (``phi_L``)."""
    r = cfg.referee
    env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    specs = sorted(cfg.agents, key=lambda a: a.role != "meta")  # seat 0 the meta-agent
    policies = [make_policy(spec, env, seat) for seat, spec in enumerate(specs)]
    inits = [initial_state(spec, policy, env, cfg.population_seed, r.chain_length, r.env)
             for spec, policy in zip(specs, policies)]
    evaluator = SampledEvaluator(None, policies, r.trajectories, r.horizon, r.gamma,
                                 torch.Generator().manual_seed(r.seed), env=env)
    steps = unroll(evaluator, [p for p, _ in inits], [make_update_rule(s.rule) for s in specs],
                   [lr for _, lr in inits], r.chain_length, differentiable=False)
    curve = [float(evaluator.mean_rewards(step.data)[0, 0]) for step in steps]
    return curve, [{k: v.detach() for k, v in p.items()} for p in steps[-1].params]


def league_chain(cfg: LeagueConfig, config: Path, tmp: Path) -> tuple[list[float], list[dict[str, torch.Tensor]]]:
    """The same chain played by the league: referee rounds one by one, the agents' adapted
    ``policy@<chain>`` at version L fetched over gRPC before the last step."""
    r = cfg.referee
    L = r.chain_length
    league = InProcessLeague(r)
    procs = []
    try:
        specs = sorted(cfg.agents, key=lambda a: a.role != "meta")
        for spec in specs:
            procs.append(spawn(["agent", "--join", league.address, "--config", str(config), "--id", spec.id,
                                "--insecure", "--checkpoint-dir", str(tmp / "ckpt"),
                                "--ready-file", str(tmp / f"{spec.id}.json")], tmp / f"{spec.id}.log"))
        ready = {spec.id: wait_json(tmp / f"{spec.id}.json", proc, timeout=180) for spec, proc in zip(specs, procs)}
        wait_until(lambda: len(league.referee.members) == len(specs), 60, "both agents to join")
        final = []
        for step in range(L + 1):
            if step == L:  # phi_L, which the last step plays and then discards
                chain_id = next(iter(league.referee.chains.values())).chain_id
                for spec in specs:
                    with srv.channel(ready[spec.id]["address"]) as channel:
                        stub = agent_pb2_grpc.AgentStub(channel)
                        deadline = time.monotonic() + 120
                        while True:
                            got = fetch_parameters(stub, f"policy@{chain_id}", min_version=L, timeout=30,
                                                   wait_seconds=5)
                            if got.params is not None or time.monotonic() > deadline:
                                break
                        assert got.params is not None and got.version == L, f"{spec.id} did not publish phi_{L}"
                        final.append(got.params)
            assert league.referee.play_round() == 1, f"round {step}: the chain's match was not played"
        assert league.referee.aborted == 0
        (record,) = league.referee.chain_curves
        return record["rewards"], final
    finally:
        stop(procs)
        league.close()


def _compare(cfg: LeagueConfig, config: Path, tmp: Path) -> None:
    embedded_curve, embedded_final = embedded_chain(cfg)
    league_curve, league_final = league_chain(cfg, config, tmp)
    print("embedded meta-agent mean step reward per chain step:", embedded_curve)
    print("league   meta-agent mean step reward per chain step:", league_curve)
    assert len(league_curve) == cfg.referee.chain_length + 1
    torch.testing.assert_close(torch.tensor(league_curve), torch.tensor(embedded_curve), atol=TOL, rtol=0)
    for seat, (mine, theirs) in enumerate(zip(league_final, embedded_final)):
        assert set(mine) == set(theirs)
        for name in theirs:
            gap = float((mine[name] - theirs[name]).abs().max())
            print(f"seat {seat} {name}: max |league - embedded| = {gap:.2e}")
            torch.testing.assert_close(mine[name], theirs[name], atol=TOL, rtol=0, msg=f"seat {seat} {name}")
    # both really learned: phi_L moved away from phi_0
    for spec, final in zip(sorted(cfg.agents, key=lambda a: a.role != "meta"), embedded_final):
        env = league_env(cfg.referee.env, cfg.referee.env_kwargs, cfg.referee.n_players, cfg.referee.horizon)
        seat = seats_of(spec.role, env.n_agents)[0]
        start, _ = initial_state(spec, make_policy(spec, env, seat), env, 0, cfg.referee.chain_length, cfg.referee.env)
        moved = max(float((final[k] - start[k]).abs().max()) for k in start)
        print(f"{spec.id}: max |phi_L - phi_0| = {moved:.2e}")
        assert moved > 100 * TOL, spec.id


SMALL = {"trajectories": 2, "horizon": 10, "chain_length": 1, "rounds": 2, "lr": [1.0]}
"""Smaller shapes than the shipped config, and a larger step so that ten steps of two
episodes move the parameters far beyond the tolerance."""


def small_config(tmp: Path, config: Path = CONFIG) -> Path:
    """A shipped config with the ``SMALL`` values, written to ``tmp/league.toml``."""
    lines = []
    for line in config.read_text().splitlines():
        key = line.split(" = ", 1)[0]
        lines.append(f"{key} = {SMALL[key]}" if key in SMALL and " = " in line else line)
    path = tmp / "league.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("shipped", CONFIGS)
def test_agents_learn_from_a_broadcast_batch_as_the_embedded_chain_does(tmp_path, shipped):
    """Without processes: the meta-agent's and the teammate's ``AgentProcess`` (pg rule)
    learn from one chunk-encoded trajectory batch played as the referee plays it, and publish
    ``policy@c0`` equal to the embedded chain's ``phi_1`` of their seat. HalfCheetah: Gaussian
    LSTMs, per-seat 17-d state observations, 3-d float actions; checkers: MLP categorical
    policies, Box observations, Discrete moves and episodes that end on their own (dones)."""
    cfg = load_league_config(small_config(tmp_path, shipped))
    r = cfg.referee
    _, embedded_final = embedded_chain(cfg)
    env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    specs = sorted(cfg.agents, key=lambda a: a.role != "meta")
    policies = [make_policy(spec, env, seat) for seat, spec in enumerate(specs)]
    params = [initial_state(spec, policy, env, 0, r.chain_length, r.env)[0] for spec, policy in zip(specs, policies)]
    generator = torch.Generator().manual_seed(r.seed)  # as the referee plays a round: reset seed, then episodes
    traj = play(env, policies, params, 1, r.trajectories, generator, seed=reset_seed(env, generator))
    header = referee_pb2.TrajectoryBatch(match_id="m0", env=r.env, chain_id="c0", step=0,
                                         seats=[referee_pb2.Seat(agent_id=s.id, behaviour_version=1) for s in specs])
    tensors = batch_tensors([o[0] for o in traj.obs], [a[0] for a in traj.actions], traj.rewards[0], traj.dones[0])
    (batch,) = read_batches(encode_batch(header, tensors, limit=0, chunk_bytes=4096))  # as parts, reassembled
    for seat, spec in enumerate(specs):
        agent = AgentProcess(spec, AgentRuntimeConfig(
            referee="127.0.0.1:1", env=r.env, n_players=r.n_players, env_kwargs=r.env_kwargs, horizon=r.horizon,
            gamma=r.gamma, chain_length=r.chain_length, checkpoint_dir=str(tmp_path / "ckpt")))
        description = agent.description()
        assert description["policy_class"] == spec.policy and json.loads(description["observation_space_json"])
        agent.learn_many([batch])
        version, learned = agent.store.snapshot("policy@c0")
        assert version == 1  # phi_1 of chain c0
        for name, value in embedded_final[seat].items():
            gap = float((learned[name] - value).abs().max())
            assert gap <= TOL, f"{spec.id} {name}: |agent - embedded| = {gap:.2e}"
        assert max(float((learned[k] - params[seat][k]).abs().max()) for k in learned) > 100 * TOL, spec.id


@pytest.mark.slow
@pytest.mark.parametrize("shipped", CONFIGS)
def test_a_small_league_equals_the_embedded_chain(tmp_path, shipped):
    """The shipped config at smaller shapes (``SMALL``: K 2, H 10, L 1; ~40 s, mostly
    starting two agent processes that import torch and MuJoCo)."""
    config = small_config(tmp_path, shipped)
    cfg = load_league_config(config)
    assert (cfg.referee.horizon, cfg.agents[0].lr) == (SMALL["horizon"], SMALL["lr"])
    _compare(cfg, config, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("shipped", CONFIGS)
def test_the_shipped_league_equals_the_embedded_chain(tmp_path, shipped):
    """configs/league_halfcheetah.toml (K 4, H 50, L 2) and league_checkers.toml as shipped."""
    _compare(load_league_config(shipped), shipped, tmp_path)


@needs_mujoco
def test_a_meta_agent_starts_from_a_checkpoint_file_that_fits_its_seat(tmp_path):
    """``init = "checkpoint:PATH"``: a file holding ``{"policy": ...}`` (learning rates from the
    spec) or ``{"best": {"policy": ..., "lr": ...}}`` (``league train``'s); a policy of another
    size is a one-line error naming the tensor."""
    cfg = load_league_config(CONFIG)
    r = cfg.referee
    env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    (meta,) = [a for a in cfg.agents if a.role == "meta"]
    policy = make_policy(meta, env, 0)
    saved = policy.init_params(torch.Generator().manual_seed(11))
    torch.save({"policy": saved}, tmp_path / "bare.pt")
    meta.init = f"checkpoint:{tmp_path / 'bare.pt'}"
    params, lr = initial_state(meta, policy, env, 0, r.chain_length, r.env)
    assert all(torch.equal(params[k], saved[k]) for k in saved)
    torch.testing.assert_close(lr, torch.tensor([meta.lr[:r.chain_length]]))
    torch.save({"best": {"policy": saved, "lr": torch.tensor([[0.3, 0.2, 0.1]])}}, tmp_path / "trained.pt")
    meta.init = f"checkpoint:{tmp_path / 'trained.pt'}"
    _, lr = initial_state(meta, policy, env, 0, r.chain_length, r.env)
    torch.testing.assert_close(lr, torch.tensor([[0.3, 0.2]]))
    torch.save({"policy": {**saved, "in_w": saved["in_w"][:, :4]}}, tmp_path / "small.pt")
    meta.init = f"checkpoint:{tmp_path / 'small.pt'}"
    with pytest.raises(ValueError, match=r"tensor 'in_w' is \(1, 4, 17\), expected \(1, 32, 17\)"):
        initial_state(meta, policy, env, 0, r.chain_length, r.env)
