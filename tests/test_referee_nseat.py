"""Matchmaking for n seats: a meta-agent's chains seat n-1 personas (consecutive groups in
league order, or the config's teams), learners play in random groups of n or fixed teams,
chains persist with all their personas, and league configs size everything from the game.

The referee here is the real one with members entered directly (no processes): schedule()
reads only the member table, so every seating can be checked against an exact expectation."""

from __future__ import annotations

import json
import time

import pytest
import torch

from agents.policy_factory import game_for, initial_state, make_policy
from league.config import ConfigError
from league.personas import make_personas
from services.league_config import AgentSpec, LeagueConfig, RefereeConfig, validate_league
from services.referee import Member, Referee


def _referee(n_players: int, roles: dict[str, str], teams=(), state_file=None, **cfg) -> Referee:
    ref = Referee(RefereeConfig(env="rps", n_players=n_players, lease_seconds=600.0, **cfg), list(roles),
                  state_file=state_file, teams=teams)
    for order, (agent, role) in enumerate(roles.items()):
        policy = make_policy(AgentSpec(id=agent, role=role), ref.env)
        ref.members[agent] = Member(agent, "127.0.0.1:1", role, policy, "tabular", None, None, order,
                                    time.monotonic() + 600)
    return ref


def _seatings(matches) -> list[tuple[str, ...]]:
    return [tuple(m.seats) for m in matches]


@pytest.mark.parametrize("n_players, n_personas, groups", [
    (2, 3, [("p0",), ("p1",), ("p2",)]),
    (3, 4, [("p0", "p1"), ("p2", "p3")]),
    (3, 5, [("p0", "p1"), ("p2", "p3")]),  # p4 completes no group: it sits out
    (4, 6, [("p0", "p1", "p2"), ("p3", "p4", "p5")]),
])
def test_meta_chains_seat_consecutive_persona_groups(n_players, n_personas, groups):
    ref = _referee(n_players, {"m": "meta", **{f"p{i}": "persona" for i in range(n_personas)}})
    try:
        matches = ref.schedule()
        assert _seatings(matches) == [("m", *g) for g in groups]
        assert all(m.kinds == ["policy"] * n_players and m.min_versions == [0] * n_players for m in matches)
        assert sorted(ref.chains) == sorted(("m", g) for g in groups)
        # step l >= 1 pins every seat's chain kind at version l
        for m in matches:
            m.chain.step = 2
        again = ref.schedule()
        assert all(m.kinds == [f"policy@{m.chain_id}"] * n_players and m.min_versions == [2] * n_players
                   for m in again)
    finally:
        ref.stop()


def test_teams_fix_chains_and_learner_matches():
    roles = {"m": "meta", "p0": "persona", "p1": "persona", "p2": "persona",
             "a": "learner", "b": "learner", "c": "learner", "d": "learner", "e": "learner", "f": "learner"}
    teams = [("m", "p2", "p0"), ("m", "p1", "p2"), ("a", "b", "c")]
    ref = _referee(3, roles, teams)
    try:
        for _ in range(3):
            seatings = _seatings(ref.schedule())
            assert seatings[:3] == [("m", "p2", "p0"), ("m", "p1", "p2"), ("a", "b", "c")]
            assert len(seatings) == 4 and sorted(seatings[3]) == ["d", "e", "f"]  # the rest, grouped at random
            ref.round += 1
        # a team with a member gone is not scheduled; the others are
        ref._drop("p0")
        assert _seatings(ref.schedule())[:2] == [("m", "p1", "p2"), ("a", "b", "c")]
    finally:
        ref.stop()


@pytest.mark.parametrize("n_players, n_learners", [(2, 5), (3, 7), (4, 9)])
def test_learners_are_grouped_by_one_random_permutation(n_players, n_learners):
    roles = {f"l{i}": "learner" for i in range(n_learners)}
    ref = _referee(n_players, roles, seed=11)
    mirror = torch.Generator().manual_seed(11)
    try:
        seen = set()
        for _ in range(6):
            perm = torch.randperm(n_learners, generator=mirror).tolist()
            want = [tuple(f"l{i}" for i in perm[g:g + n_players])
                    for g in range(0, n_learners - n_players + 1, n_players)]
            matches = ref.schedule()
            assert _seatings(matches) == want
            assert [m.match_id for m in matches] == [f"r{ref.round}." + "-".join(w) for w in want]
            seen.add(tuple(want))
            ref.round += 1
        assert len(seen) > 1  # the grouping really changes between rounds
    finally:
        ref.stop()


def test_two_seat_pairing_is_unchanged():
    """Two seats draw exactly the pairs drawn before n seats (perm[0::2] with perm[1::2])."""
    roles = {f"l{i}": "learner" for i in range(6)}
    ref = _referee(2, roles, seed=5)
    try:
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(5)).tolist()
        assert _seatings(ref.schedule()) == [(f"l{a}", f"l{b}") for a, b in zip(perm[0::2], perm[1::2])]
    finally:
        ref.stop()


def test_chains_persist_with_all_their_personas(tmp_path):
    roles = {"m": "meta", "p0": "persona", "p1": "persona"}
    state = tmp_path / "state.json"
    ref = _referee(3, roles, state_file=state, chain_length=2)
    try:
        matches = ref.schedule()
        ref._record(matches[0], ref.members, {matches[0].match_id: [(0, None)] * 3}, torch.zeros(2, 4, 3))
        ref.save_state()
        saved = json.loads(state.read_text())
        assert saved["chains"] == [["c1", "m", ["p0", "p1"], 0, 1]]  # id, meta, personas, completed, next step
        assert saved["chain_curves"] == [{"chain": "c1", "meta": "m", "personas": ["p0", "p1"], "rewards": [0.0]}]
    finally:
        ref.stop()
    back = Referee(RefereeConfig(env="rps", n_players=3, chain_length=2), list(roles), state_file=state)
    try:
        # caught between steps: voided and counted; its replacement will be this seating's chain 0 again
        assert list(back.chains) == [("m", ("p0", "p1"))] and back.chains[("m", ("p0", "p1"))].count == -1
        assert back.aborted == 1
    finally:
        back.stop()
    # a state saved before n seats (one persona per chain) still restores
    saved["chains"] = [["c1", "m", "p0", 3]]
    state.write_text(json.dumps(saved))
    old = Referee(RefereeConfig(env="rps", n_players=2), list(roles), state_file=state)
    try:
        assert list(old.chains) == [("m", ("p0",))] and old.chains[("m", ("p0",))].count == 3
    finally:
        old.stop()


def test_two_seat_chain_records_keep_the_persona_key():
    ref = _referee(2, {"m": "meta", "p0": "persona"})
    try:
        match = ref.schedule()[0]
        ref._record(match, ref.members, {match.match_id: [(0, None)] * 2}, torch.zeros(2, 4, 2))
        assert ref.chain_curves[0]["persona"] == "p0" and ref.chain_curves[0]["personas"] == ["p0"]
    finally:
        ref.stop()


# -- league configs ----------------------------------------------------------------------
def _league(n_players: int, agents: list[AgentSpec], teams=(), env: str = "rps") -> LeagueConfig:
    return LeagueConfig(referee=RefereeConfig(env=env, n_players=n_players, trajectories=4, horizon=10),
                        agents=agents, teams=[list(t) for t in teams])


def _meta_and_personas(n: int, index: int = 0) -> list[AgentSpec]:
    return [AgentSpec(id="m", role="meta", policy="lstm"),
            *(AgentSpec(id=f"p{i}", role="persona", init=f"persona:test:{index}") for i in range(n))]


@pytest.mark.parametrize("n_players", [2, 3, 4])
def test_rps_league_configs_size_personas_from_the_game(n_players):
    population = make_personas("rps", 0, n_players)
    last = population.test.shape[0] - 1
    cfg = _league(n_players, _meta_and_personas(n_players - 1, last))
    validate_league(cfg)
    game = game_for("rps", n_players)
    assert game.n_agents == n_players and game.n_states == 1 + 3 ** n_players
    spec = cfg.agents[1]
    params, _ = initial_state(spec, make_policy(spec, game), game, 0, 3, "rps")
    assert params["logits"].shape == (1, game.n_states, 3)
    torch.testing.assert_close(params["logits"].softmax(-1)[0], population.test[last], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match=f"names no persona of rps for {n_players} players"):
        validate_league(_league(n_players, _meta_and_personas(n_players - 1, last + 1)))


@pytest.mark.parametrize("make, message", [
    (lambda: _league(3, _meta_and_personas(2), env="ipd"), "game 'ipd' takes 2 players, got n_players=3"),
    (lambda: _league(5, _meta_and_personas(4)), "game 'rps' takes 2..4 players"),
    (lambda: _league(3, _meta_and_personas(3)), "3 personas do not split into chains of 2 persona seats"),
    (lambda: _league(3, _meta_and_personas(2), [("m", "p0")]), "has 2 seats"),
    (lambda: _league(3, _meta_and_personas(2), [("m", "p0", "p0")]), "names an agent twice"),
    (lambda: _league(3, _meta_and_personas(2), [("m", "p0", "zz")]), "not in \\[\\[agents\\]\\]: \\['zz'\\]"),
    (lambda: _league(3, _meta_and_personas(2), [("p0", "m", "p1")]), "a team is a meta-agent followed by 2"),
])
def test_bad_n_seat_configs_are_refused_with_one_line(make, message):
    with pytest.raises(ConfigError, match=message) as err:
        validate_league(make())
    assert "\n" not in str(err.value)


def test_teams_let_a_meta_agent_use_any_persona_count():
    validate_league(_league(3, _meta_and_personas(3), [("m", "p0", "p1"), ("m", "p2", "p0")]))
