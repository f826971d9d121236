"""Deep MATRL in the coordinator's ``matrl`` mode (kind ``deep``; agents with rule ``ppo-matrl``).

- One round by two in-process ``AgentProcess`` objects (no sockets): each agent's ``predicted``
  and its best response after the coordinator's mixture equal the embedded ``deep_round`` of
  the same episodes to 1e-6; a mixture of the wrong shape is refused.
- Real processes on 127.0.0.1 (referee, two agents, coordinator): three rounds on checkers equal
  the embedded ``run_deep_matrl`` from the same seed (parameters, Nash weights, meta-games to
  1e-6), with two PPO minibatches per epoch, so each seat's shuffling draws from its own
  generator ``seat_generator(seed, seat)``.
- An agent killed during the rounds voids its group's rounds while the other group goes on.
- The committed league config and deep config are a pair; the trust settings survive the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.matrl import (COMMIT, MIXTURE, PREDICTED, TRUST, CHOICES, PPOTrust, mixture_message, ppo_trust_message,
                          ppo_trust_settings, round_message)
from agents.policy_factory import initial_state, make_policy
from agents.runtime import AgentProcess, AgentRuntimeConfig
from league.matrl.deep import deep_round, run_deep_matrl, seat_generator
from league.matrl.ppo import Critic, PPOConfig
from league.matrl.sampled import nash_weights, peer_log_ratios, round_metagame, score_round
from league.envs.base import flat_dim
from league.rollout import Episodes, play, reset_seed
from services.batches import batch_tensors, encode_batch, read_batches
from services.coordinator_matrl import league_pair_mismatch, load_matrl_config
from services.gen.league.v1 import referee_pb2
from services.league_config import league_env, load_league_config
from services.limits import PUSHED_RANGES, check_pushed_range
from services.wire import WireError
from tests.league_procs import ROOT, agent_toml, metric_value, metrics, spawn, start_league, wait_json, wait_until
from tests.test_matrl_league import kill_b1_and_check_its_group_voided

torch.set_num_threads(1)
LEAGUE = ROOT / "configs" / "league_matrl_checkers.toml"
DEEP = ROOT / "configs" / "matrl" / "checkers_league.toml"
TOL = 1e-6
SMALL = ["episodes=4", "ppo.epochs=3", "ppo.minibatches=2", "ppo.critic_epochs=3",
         "br_steps=3", "br_lr=0.01"]
"""Smaller than the shipped deep config (K 4; checkers' episodes last at most 100 steps), two minibatches per epoch (the seats'
generators shuffle), and a larger best-response step so three rounds move the parameters far
beyond the tolerance."""


def _small_league(tmp: Path, ids: list[str]) -> str:
    """The shipped league config at the ``SMALL`` shapes, with agents ``ids`` (init random:i+1)."""
    head = LEAGUE.read_text().split("[[agents]]")[0].replace("trajectories = 8", "trajectories = 4")
    return head + "".join(agent_toml(a, role="persona", policy="mlp_categorical", hidden=32, init=f"random:{i + 1}",
                                     rule="ppo-matrl") for i, a in enumerate(ids))


def _embedded(tmp: Path, ids: list[str], seed: int, rounds: int, overrides: list[str] = ()):
    """The embedded run of the same config (with ``overrides``) and seed from the agents' own
    initial parameters."""
    league = load_league_config(tmp / "league.toml")
    cfg = load_matrl_config(str(DEEP), [*SMALL, *overrides])
    r = league.referee
    env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    specs = {a.id: a for a in league.agents}
    inits = [initial_state(specs[a], make_policy(specs[a], env, k), env, 0, 1, r.env)[0] for k, a in enumerate(ids)]
    finals: list = []
    records = run_deep_matrl(cfg, seed, params=inits, iterations=rounds,
                             checkpoint=lambda it, params: finals.append(params))
    return dict(zip(ids, finals[-1])), records, inits


def assert_league_equals_embedded(tmp: Path, ids: list[str], seed: int, result: dict, overrides: list[str] = ()
                                  ) -> list[dict]:
    """The coordinator's ``result`` (final parameters of every agent, each completed round's
    weights and meta-game) equals the embedded run of the config (with ``overrides``) over as
    many rounds as it completed, to 1e-6, and the agents learned; returns the embedded records
    (weights and meta-games are compared where the embedded run has them)."""
    embedded, records, inits = _embedded(tmp, ids, seed, len(result["rounds"]), overrides)
    for k, a in enumerate(ids):
        for name, value in embedded[a].items():
            got = np.array(result["params"][a][name])
            gap = float(np.abs(got - value.numpy()).max())
            print(f"{a} {name}: max |league - embedded| = {gap:.2e}")
            np.testing.assert_allclose(got, value.numpy(), atol=TOL, rtol=0, err_msg=f"{a} {name}")
        moved = max(float((embedded[a][n] - inits[k][n]).abs().max()) for n in inits[k])
        assert moved > 100 * TOL, a  # it learned
    print("league weights", [r["weights"] for r in result["rounds"]])
    print("embedded weights", [r["weights"] for r in records])
    for mine, theirs in zip(result["rounds"], records):
        for key in ("weights", "metagame"):
            if theirs[key] is not None:
                np.testing.assert_allclose(mine[key], theirs[key], atol=TOL, rtol=0, err_msg=key)
    return records


def test_the_agents_round_is_the_embedded_round(tmp_path):
    """Two in-process agents (rule ``ppo-matrl``) learn from one chunk-encoded broadcast batch
    of checkers played as the referee plays it; their ``predicted`` and, after the mixture the
    coordinator computes, their ``policy`` v+1 equal ``deep_round``'s predictions and best
    responses (per-seat critics and generators from ``seat_generator(seed, seat)``)."""
    (tmp_path / "league.toml").write_text(_small_league(tmp_path, ["a0", "a1"]))
    league = load_league_config(tmp_path / "league.toml")
    cfg = load_matrl_config(str(DEEP), SMALL)
    r, seed = league.referee, 7
    env = league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    agents = [AgentProcess(spec, AgentRuntimeConfig(
        referee="127.0.0.1:1", env=r.env, n_players=r.n_players, horizon=r.horizon, gamma=r.gamma,
        chain_length=1, checkpoint_dir=str(tmp_path / "ckpt"))) for spec in league.agents]
    policies = [a.policy for a in agents]
    params = [a.store.snapshot("policy")[1] for a in agents]
    generator = torch.Generator().manual_seed(seed)
    traj = play(env, policies, params, 1, cfg.episodes, generator, seed=reset_seed(env, generator))
    header = referee_pb2.TrajectoryBatch(match_id="matrl.r1.g0", env=r.env, step=1,
                                         seats=[referee_pb2.Seat(agent_id=a.spec.id, behaviour_version=1)
                                                for a in agents])
    tensors = batch_tensors([o[0] for o in traj.obs], [a[0] for a in traj.actions], traj.rewards[0], traj.dones[0])
    (batch,) = read_batches(encode_batch(header, tensors, limit=0, chunk_bytes=4096))
    episodes = Episodes.of(traj)
    for a in agents:
        a.store.compare_and_set(TRUST, 1, ppo_trust_message(cfg.ppo, seed, cfg.br_steps))
        a.learn_many([batch])
    # the embedded round on the same episodes
    gens = [seat_generator(seed, k) for k in range(2)]
    critics = [Critic(flat_dim(env.observation_spaces[k]), cfg.ppo, gens[k]) for k in range(2)]
    out = deep_round(policies, params, critics, episodes, cfg, gens)
    predicted = [a.store.snapshot(PREDICTED) for a in agents]
    for k, (version, pred) in enumerate(predicted):
        assert version == 1
        for name in pred:
            gap = float((pred[name] - out.predicted[k][name]).abs().max())
            assert gap <= TOL, f"seat {k} predicted {name}: |agent - embedded| = {gap:.2e}"
    # the coordinator's half, from the agents' published parameters
    scores = score_round(policies, params, [p for _, p in predicted], episodes)
    meta, _ = round_metagame(scores, episodes, cfg.ppo.gamma)
    w, _, _ = nash_weights(meta, cfg.solvers_for(2), cfg.nash_eps)
    torch.testing.assert_close(w[0], out.weights, atol=TOL, rtol=0)
    ratios = peer_log_ratios(scores, w)
    K, H = episodes.shape[1:3]
    for k, a in enumerate(agents):
        assert a.store.snapshot(MIXTURE)[1]["peer_log_ratio"].shape == (1, K, H)  # opened for this round
        with pytest.raises(WireError):  # a mixture shaped for another round is refused, nothing applied
            a.store.compare_and_set(MIXTURE, a.store.version(MIXTURE),
                                    mixture_message(1, 0.5, torch.zeros(1, K, H + 1), cfg.br_lr, cfg.br_clip))
        assert a.store.version("policy") == 1
        message = mixture_message(1, float(w[0, k]), ratios[k], cfg.br_lr, cfg.br_clip)
        check_pushed_range(MIXTURE, message)
        a.store.compare_and_set(MIXTURE, a.store.version(MIXTURE), message)
        a._on_push(MIXTURE, a.store.version(MIXTURE))
        assert a.store.version("policy") == 1  # prepared, not committed
        a.store.compare_and_set(COMMIT, a.store.version(COMMIT), round_message(1))
        a._on_push(COMMIT, a.store.version(COMMIT))
        version, new = a.store.snapshot("policy")
        assert version == 2
        for name in new:
            gap = float((new[name] - out.params[k][name]).abs().max())
            print(f"seat {k} {name}: |agent - embedded| = {gap:.2e}")
            assert gap <= TOL, f"seat {k} best response {name}: |agent - embedded| = {gap:.2e}"
        moved = max(float((new[n] - out.predicted[k][n]).abs().max()) for n in new)
        assert moved > 100 * TOL  # the best response moved away from the prediction


def _league(tmp_path: Path, ids: list[str], seed: int, iterations: int, *extra: str):
    """A secured league of ``ids`` and a coordinator in mode matrl driving them with the small
    deep config for ``iterations`` rounds."""
    from tests.league_procs import league_credentials

    creds = league_credentials(tmp_path, ids, coordinator=True)
    lg = start_league(tmp_path, _small_league(tmp_path, ids), ids, creds)
    sets = [x for s in SMALL for x in ("--set", s)]
    coord = spawn(["coordinator", "--join", lg.ref["address"], "--mode", "matrl", "--experiment", str(DEEP), *sets,
                   "--agents", ",".join(ids), "--iterations", str(iterations), "--seed", str(seed),
                   "--results", str(tmp_path / "coord.json"), "--ready-file", str(tmp_path / "coord.ready.json"),
                   "--credentials", str(creds["coordinator"]), *extra], tmp_path / "coord.log")
    lg.procs["coordinator"] = coord
    return lg, coord


def test_league_deep_rounds_equal_the_embedded_run(tmp_path):
    """Three deep MATRL rounds on checkers through real processes (40 s of CPU, 110 s wall on
    the loaded 2 shared cores, mostly starting them) equal ``run_deep_matrl`` from the same seed
    to 1e-6: every parameter tensor of both agents, every round's Nash weights and meta-game."""
    ids, seed, rounds = ["p0", "p1"], 3, 3
    lg, coord = _league(tmp_path, ids, seed, rounds, "--linger", "1")
    try:
        ready = wait_json(tmp_path / "coord.ready.json", coord, timeout=120)
        wait_until(lambda: (tmp_path / "coord.json").exists() and json.loads(
            (tmp_path / "coord.json").read_text())["state"] in ("done",) or coord.poll() is not None, 300,
            "the coordinator's rounds")
        text = metrics(ready["metrics"]) if coord.poll() is None else ""
        assert coord.wait(timeout=60) == 0, (tmp_path / "coord.log").read_text()[-3000:]
        result = json.loads((tmp_path / "coord.json").read_text())
        assert result["state"] == "done", result["state"]
        records = assert_league_equals_embedded(tmp_path, ids, seed, result)
        assert len(records) == rounds
        assert any(abs(x) > 100 * TOL for r in records for x in r["metagame"])  # the meta-games are not all zero
        if text:
            assert metric_value(text, "league_matrl_rounds_total") == rounds
            assert metric_value(text, "league_matrl_rounds_voided_total") == 0
    finally:
        lg.stop()


@pytest.mark.slow  # about 60 s of CPU (110 s on the loaded 2 shared cores)
def test_a_killed_deep_agent_voids_its_groups_rounds_and_the_other_group_goes_on(tmp_path):
    ids = ["a0", "a1", "b0", "b1"]  # groups [a0, a1] and [b0, b1]
    rounds = 4
    lg, coord = _league(tmp_path, ids, 0, rounds, "--timeout", "15", "--linger", "3")
    try:
        _, result, voided = kill_b1_and_check_its_group_voided(tmp_path, coord, rounds, 300)
        assert sum(r["groups_voided"] for r in result["iterations"]) == voided
    finally:
        lg.stop()


def test_the_committed_deep_league_and_its_matrl_config_agree(tmp_path):
    """configs/league_matrl_checkers.toml and configs/matrl/checkers_league.toml describe one
    run (game, seats, K, H, gamma, every agent's rule and policy); a league that differs is
    named in one line."""
    league = load_league_config(LEAGUE)
    cfg = load_matrl_config(str(DEEP))
    assert league_pair_mismatch(league, cfg) is None
    assert league.referee.chains_by == "coordinator" and len(league.agents) == cfg.n_players
    league.referee.horizon = 50
    league.agents[1].hidden = 64
    line = league_pair_mismatch(league, cfg)
    print(line)
    assert line == ("referee.horizon 50 != 100; agent p1 policy mlp_categorical {'hidden': 64} != "
                    "mlp_categorical {'hidden': 32}")
    from league.config import ConfigError

    assert load_matrl_config(str(DEEP), ["variant=il"]).variant == "il"  # the ablations run in the league too
    with pytest.raises(ConfigError, match="variant 'iql': known variants are il, il_pp, matrl_no_br, matrl"):
        load_matrl_config(str(DEEP), ["variant=iql"])
    with pytest.raises(ConfigError, match="kind 'tabular'"):
        load_matrl_config(str(DEEP), ["kind=tabular"])


def test_the_ppo_trust_settings_survive_the_wire_and_are_range_checked():
    """Every PPOConfig field, the seed, br_steps and the response come back exactly from
    ``matrl-trust`` (floats as float64, names by index, ``target_kl`` None); out-of-range values
    are refused."""
    for ppo, response in ((PPOConfig(), "best_response"),
                          (PPOConfig(lr=0.0031, minibatches=3, target_kl=0.02, activation="tanh",
                                     normalize_advantages=False, gamma=0.97), "interpolate")):
        message = ppo_trust_message(ppo, 2**40 + 3, 7, response)
        check_pushed_range(TRUST, message)
        assert ppo_trust_settings(message) == PPOTrust(ppo, 2**40 + 3, 7, response)
    assert PUSHED_RANGES[TRUST]["activation"] == (0, len(CHOICES["activation"]) - 1)
    for name, value, bad in [("gamma", 1.5, "gamma holds 1.5"), ("epochs", 0, "epochs holds 0"),
                             ("hidden", 100_000, "hidden holds 100000"), ("seed", -1, "seed holds -1"),
                             ("response", 2, "response holds 2")]:
        message = ppo_trust_message(PPOConfig(), 0, 5)
        message[name] = torch.tensor([value], dtype=message[name].dtype)
        with pytest.raises(WireError, match=bad):
            check_pushed_range(TRUST, message)


def test_the_coordinator_refuses_a_referee_of_another_game(tmp_path):
    """At start (``wait_for_members``) the coordinator compares the referee's game, seats and
    environment arguments with the experiment's and stops with one line when they differ."""
    from services.coordinator import CoordinatorConfig
    from services.coordinator_matrl import MatrlMode
    from tests.inprocess_league import InProcessLeague

    league = InProcessLeague(load_league_config(LEAGUE).referee)  # a checkers referee
    try:
        cfg = CoordinatorConfig(referee=league.address, meta_agent="", personas=[], agents={"p0": "", "p1": ""},
                                timeout=10)
        MatrlMode(load_matrl_config(str(DEEP)), "matrl", 0, cfg).check_referee()  # the pair: accepted
        mode = MatrlMode(load_matrl_config(str(ROOT / "configs" / "matrl" / "rps3.toml"), ["n_players=2"]), "matrl",
                         0, cfg)
        with pytest.raises(ValueError) as err:
            mode.wait_for_members(timeout=1)
        print(err.value)
        assert str(err.value) == "the league and the MATRL config disagree: env 'checkers' (referee) != 'rps' (--experiment)"
    finally:
        league.close()
