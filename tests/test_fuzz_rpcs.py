"""Fuzz every RPC of the Agent and Referee services (hypothesis) against real gRPC servers
on 127.0.0.1: a referee with two real agent servers as members. Each request breaks at
least one field of a valid one; for each the answer must be a contract status code (never
UNKNOWN or INTERNAL), nothing may be applied, and both servers must stay healthy, serving
the same members and the same parameters."""

from __future__ import annotations

import math
import socket
import time

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.params import ParameterStore
from agents.service import SERVICE_NAME, AgentService
from services import limits
from services import server as srv
from services.client import fetch_parameters
from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, referee_pb2, referee_pb2_grpc, tensor_pb2
from services.league_config import RefereeConfig
from services.processes import referee_server
from services.referee import Referee
from services.wire import chunk_parameters

pytestmark = pytest.mark.timeout(240)

TIMEOUT = 15.0
MEMBERS = ("m0-fuzz", "m1-fuzz")
CONTRACT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_id(s: str) -> bool:
    try:
        limits.check_id(s)
        return True
    except ValueError:
        return False


def _valid_kind(s: str) -> bool:
    try:
        limits.check_kind(s)
        return True
    except ValueError:
        return False


bad_ids = st.one_of(st.just(""), st.text(min_size=1, max_size=80).filter(lambda s: not _valid_id(s)),
                    st.text(alphabet="abc", min_size=limits.ID_MAX_CHARS + 1, max_size=limits.ID_MAX_CHARS + 30))
stranger_ids = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(lambda s: s not in MEMBERS)
bad_kinds = st.one_of(st.just(""), st.text(min_size=1, max_size=60).filter(lambda s: not _valid_kind(s)),
                      st.text(alphabet="k", min_size=limits.KIND_MAX_CHARS + 1, max_size=limits.KIND_MAX_CHARS + 9))
bad_addresses = st.one_of(st.just(""), st.text(max_size=40).filter(lambda s: ":" not in s),
                          st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "localhost", "a b", ""]),
                                    st.one_of(st.integers(65536, 10**9), st.just(0), st.just(-1), st.just("x"))),
                          st.text(alphabet="a", min_size=limits.ADDRESS_MAX_CHARS, max_size=300).map(lambda s: s + ":1"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class League:
    """A referee and two agent servers, all real gRPC servers on 127.0.0.1 in this process."""

    def __init__(self) -> None:
        self.servers, self.channels, self.agents = [], [], []
        for agent_id in MEMBERS:
            store = ParameterStore({"policy": {"logits": torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(1))},
                                    "lr": {"lr": torch.tensor([[0.5]])}})
            desc = {"agent_id": agent_id, "env": "ipd", "obs_dim": 5, "n_actions": 2, "policy_class": "tabular",
                    "policy_config": {}, "learning_rule": "frozen", "rule_config": {}, "capabilities": []}
            server = srv.make_server(max_workers=8)
            agent_pb2_grpc.add_AgentServicer_to_server(AgentService(store, desc), server)
            srv.add_health_and_reflection(server, [SERVICE_NAME])
            port = srv.bind(server, "127.0.0.1", 0)
            server.start()
            self.servers.append(server)
            ch = srv.channel(f"127.0.0.1:{port}")
            self.channels.append(ch)
            self.agents.append((agent_id, f"127.0.0.1:{port}", store, agent_pb2_grpc.AgentStub(ch),
                                health_pb2_grpc.HealthStub(ch)))
        self.referee = Referee(RefereeConfig(env="ipd", trajectories=2, horizon=3, rounds=0, lease_seconds=600.0,
                                             fetch_timeout=2.0))
        server, _ = referee_server(self.referee)  # as the referee process serves it
        port = srv.bind(server, "127.0.0.1", 0)
        server.start()
        self.servers.append(server)
        ch = srv.channel(f"127.0.0.1:{port}")
        self.channels.append(ch)
        self.ref = referee_pb2_grpc.RefereeStub(ch)
        self.ref_health = health_pb2_grpc.HealthStub(ch)
        for agent_id, address, *_ in self.agents:
            self.ref.Join(referee_pb2.JoinRequest(agent_id=agent_id, address=address, protocol_version=1,
                                                  role="learner"), timeout=TIMEOUT)
        self.before = self.state()

    def state(self):
        """What must not change: members, round, every agent's versions and parameters."""
        status = self.ref.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT)
        agents = []
        for agent_id, _, store, stub, _ in self.agents:
            got = fetch_parameters(stub, "policy", timeout=TIMEOUT)
            agents.append((agent_id, store.versions(), got.version, {k: v.tolist() for k, v in got.params.items()}))
        return [(m.agent_id, m.address, m.role) for m in status.members], status.round, agents

    def healthy(self) -> bool:
        stubs = [(h, SERVICE_NAME) for *_, h in self.agents] + [(self.ref_health, "league.v1.Referee")]
        return all(h.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT).status
                   == health_pb2.HealthCheckResponse.SERVING for h, name in stubs)

    def close(self) -> None:
        self.referee.stop()
        for ch in self.channels:
            ch.close()
        for server in self.servers:
            server.stop(grace=None)


@pytest.fixture(scope="module")
def league():
    lg = League()
    yield lg
    lg.close()


def expect_contract(league: League, call) -> grpc.StatusCode:
    """The call fails with a contract code and a one-line message; nothing changed; all healthy."""
    with pytest.raises(grpc.RpcError) as e:
        call()
    code, details = e.value.code(), e.value.details() or ""
    assert code in CONTRACT, f"{code}: {details}"
    assert details and "\n" not in details and "Traceback" not in details, details
    assert league.state() == league.before
    assert league.healthy()
    return code


# -- Agent service -----------------------------------------------------------------------
@FUZZ
@given(version=st.integers(2, 2**32 - 1))
def test_fuzz_describe(league, version):
    stub = league.agents[0][3]
    expect_contract(league, lambda: stub.Describe(agent_pb2.DescribeRequest(protocol_version=version), timeout=TIMEOUT))


@FUZZ
@given(breaker=st.one_of(
    st.builds(lambda k: {"kind": k}, bad_kinds),
    st.builds(lambda k: {"kind": k}, stranger_ids.filter(lambda s: not s.startswith("policy"))),
    st.builds(lambda w: {"kind": "policy", "min_version": 5, "wait_seconds": w},
              st.one_of(st.just(math.nan), st.just(math.inf), st.floats(max_value=-1e-9, allow_nan=False)))))
def test_fuzz_get_parameters(league, breaker):
    stub = league.agents[1][3]
    request = agent_pb2.GetParametersRequest(**breaker)
    expect_contract(league, lambda: list(stub.GetParameters(request, timeout=TIMEOUT)))


def _push_chunks(mutation: str, value) -> list[tensor_pb2.ParameterChunk]:
    """A push of the right structure at the right version, with one thing broken."""
    params = {"logits": torch.zeros(1, 5, 2)}
    kind, expected = "policy", 1
    if mutation == "shape":
        params = {"logits": torch.zeros(*value)}
    elif mutation == "nonfinite":
        params = {"logits": torch.full((1, 5, 2), value)}
    elif mutation == "dtype":
        params = {"logits": torch.zeros(1, 5, 2, dtype=value)}
    elif mutation == "names":
        params = {value: torch.zeros(1, 5, 2)}
    elif mutation == "version":
        expected = value
    elif mutation == "kind":
        kind = value
    chunks = list(chunk_parameters(kind, expected + 1, params, expected_version=expected, chunk_bytes=16))
    if mutation == "sha":
        chunks[0].header.sha256 = value
    elif mutation == "count":
        for c in chunks:
            c.count = value
    elif mutation == "total":
        chunks[0].header.total_bytes = value
    elif mutation == "empty_chunk":
        chunks.insert(1, tensor_pb2.ParameterChunk(kind=kind, version=expected + 1, index=1, count=chunks[0].count,
                                                   expected_version=expected))
    elif mutation == "not_modified":
        chunks = [tensor_pb2.ParameterChunk(kind=kind, version=expected, index=0, count=0)]
    return chunks


@FUZZ
@given(mutation=st.one_of(
    st.tuples(st.just("shape"), st.lists(st.integers(0, 6), min_size=1, max_size=4).filter(lambda s: s != [1, 5, 2])),
    st.tuples(st.just("nonfinite"), st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("dtype"), st.sampled_from([torch.float64, torch.int64, torch.int32, torch.bool])),
    st.tuples(st.just("names"), st.text(alphabet="abcz", min_size=1, max_size=8).filter(lambda s: s != "logits")),
    st.tuples(st.just("version"), st.one_of(st.just(0), st.integers(2, 2**63))),
    st.tuples(st.just("kind"), st.one_of(bad_kinds, stranger_ids)),
    st.tuples(st.just("sha"), st.text(max_size=70)),
    st.tuples(st.just("count"), st.integers(0, 2**32 - 1).filter(lambda c: c != 3)),
    st.tuples(st.just("total"), st.integers(0, 2**64 - 1).filter(lambda t: t != 40)),
    st.tuples(st.just("empty_chunk"), st.none()),
    st.tuples(st.just("not_modified"), st.none())))
def test_fuzz_push_parameters(league, mutation):
    stub = league.agents[0][3]
    chunks = _push_chunks(*mutation)
    expect_contract(league, lambda: stub.PushParameters(iter(chunks), timeout=TIMEOUT))


# -- Referee service ---------------------------------------------------------------------
def _join(league: League, field: str, value) -> referee_pb2.JoinRequest:
    """A join of a stranger id from the first agent's address (whose description names another
    id, so it is refused even when the breaker happens to be harmless), with one field broken."""
    fields = {"agent_id": "stranger", "address": league.agents[0][1], "protocol_version": 1, "role": "learner"}
    if field == "live":  # a live member's id from another address
        fields |= {"agent_id": MEMBERS[1], "address": f"127.0.0.1:{_closed_port()}"}
    elif field == "closed":
        fields["address"] = f"127.0.0.1:{_closed_port()}"
    else:
        fields[field] = value
    return referee_pb2.JoinRequest(**fields)


@FUZZ
@given(breaker=st.one_of(
    st.tuples(st.just("agent_id"), bad_ids),
    st.tuples(st.just("agent_id"), stranger_ids),
    st.tuples(st.just("address"), bad_addresses),
    st.tuples(st.just("metrics_address"), bad_addresses.filter(bool)),
    st.tuples(st.just("role"), st.text(max_size=20).filter(lambda r: r not in ("meta", "persona", "learner"))),
    st.tuples(st.just("protocol_version"), st.integers(2, 2**32 - 1)),
    st.tuples(st.just("live"), st.none()),
    st.tuples(st.just("closed"), st.none())))
def test_fuzz_join(league, breaker):
    request = _join(league, *breaker)
    code = expect_contract(league, lambda: league.ref.Join(request, timeout=TIMEOUT))
    if breaker[0] == "live":
        assert code == grpc.StatusCode.ALREADY_EXISTS


@FUZZ
@given(agent_id=st.one_of(bad_ids, stranger_ids), rpc=st.sampled_from(["Heartbeat", "Leave", "Subscribe"]))
def test_fuzz_membership_rpcs(league, agent_id, rpc):
    if rpc == "Heartbeat":
        call = lambda: league.ref.Heartbeat(referee_pb2.HeartbeatRequest(agent_id=agent_id), timeout=TIMEOUT)  # noqa: E731
    elif rpc == "Leave":
        call = lambda: league.ref.Leave(referee_pb2.LeaveRequest(agent_id=agent_id), timeout=TIMEOUT)  # noqa: E731
    else:
        if not agent_id or _valid_id(agent_id):
            return  # a valid (or anonymous) subscription just waits for batches; its caps are tested below
        call = lambda: list(league.ref.Subscribe(referee_pb2.SubscribeRequest(agent_id=agent_id), timeout=TIMEOUT))  # noqa: E731
    expect_contract(league, call)


def _play(field: str, value) -> referee_pb2.PlayMatchesRequest:
    """A valid PlayMatches request (both members, pinned at their versions, the caller's
    generator state) with one field broken."""
    def seat(agent_id, kind="policy", version=1):
        return referee_pb2.PinnedSeat(agent_id=agent_id, kind=kind, version=version)

    spec = {"match_id": "fz.0", "chain_id": "", "step": 0, "seats": [seat(MEMBERS[0]), seat(MEMBERS[1])]}
    request = {"episodes": 2, "horizon": 3, "rng_state": torch.Generator().manual_seed(0).get_state().numpy().tobytes()}
    matches = [spec]
    if field in ("match_id", "chain_id", "step"):
        spec[field] = value
    elif field == "seats":
        spec["seats"] = [seat(MEMBERS[i % 2]) for i in range(value)]
    elif field == "seat_id":
        spec["seats"][0] = seat(value)
    elif field == "kind":
        spec["seats"][1] = seat(MEMBERS[1], kind=value)
    elif field == "version":
        spec["seats"][0] = seat(MEMBERS[0], version=value)
    elif field == "duplicate":
        matches = [spec, dict(spec)]
    elif field == "many":
        matches = [dict(spec, match_id=f"fz.{i}") for i in range(value)]
    elif field == "none":
        matches = []
    else:
        request[field] = value
    return referee_pb2.PlayMatchesRequest(matches=[referee_pb2.MatchSpec(**m) for m in matches], **request)


@FUZZ
@given(breaker=st.one_of(
    st.tuples(st.just("match_id"), bad_ids),
    st.tuples(st.just("chain_id"), bad_ids.filter(bool)),
    st.tuples(st.just("step"), st.integers(limits.MAX_STEP + 1, 2**32 - 1)),
    st.tuples(st.just("seats"), st.sampled_from([0, 1, 3, 5])),
    st.tuples(st.just("seat_id"), st.one_of(bad_ids, stranger_ids)),
    st.tuples(st.just("kind"), st.one_of(bad_kinds, stranger_ids.filter(lambda s: not s.startswith("policy")))),
    st.tuples(st.just("version"), st.just(0)),
    st.tuples(st.just("duplicate"), st.none()),
    st.tuples(st.just("many"), st.just(limits.MAX_MATCHES + 1)),
    st.tuples(st.just("none"), st.none()),
    st.tuples(st.just("episodes"), st.integers(limits.MAX_EPISODES + 1, 2**32 - 1)),
    st.tuples(st.just("horizon"), st.integers(limits.MAX_HORIZON + 1, 2**32 - 1)),
    st.tuples(st.just("horizon"), st.just(limits.MAX_HORIZON)),  # with episodes, over the batch limit
    st.tuples(st.just("rng_state"), st.binary(min_size=1, max_size=limits.MAX_RNG_STATE_BYTES + 10)
              .filter(lambda b: len(b) != 5056))))
def test_fuzz_play_matches(league, breaker):
    request = _play(*breaker)
    if breaker == ("horizon", limits.MAX_HORIZON):
        request.episodes = limits.MAX_EPISODES
    expect_contract(league, lambda: list(league.ref.PlayMatches(request, timeout=TIMEOUT)))


def test_the_request_the_breakers_start_from_is_valid(league):
    """Unbroken, the PlayMatches request the fuzz breaks plays its match (so every breaker
    above is what made the request fail)."""
    replies = list(league.ref.PlayMatches(_play("episodes", 2), timeout=TIMEOUT))
    assert len(replies) == 1 and len(replies[0].batches) == 1 and replies[0].rng_state
    ok = replies[0].batches[0]
    assert list(ok.rewards.shape) == [2, 3, 2] and list(ok.dones.shape) == [2, 3]
    assert [s.behaviour_version for s in ok.seats] == [1, 1]


def test_subscribe_streams_are_capped_per_agent(league):
    def open_streams():
        with league.referee.streams_lock:
            return sum(a == "watcher" for a, _ in league.referee.subscribers.values())

    streams = [league.ref.Subscribe(referee_pb2.SubscribeRequest(agent_id="watcher"), timeout=TIMEOUT)
               for _ in range(limits.MAX_STREAMS_PER_AGENT)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while open_streams() < limits.MAX_STREAMS_PER_AGENT:
            assert time.monotonic() < deadline, "the streams did not open"
            time.sleep(0.05)
        extra = league.ref.Subscribe(referee_pb2.SubscribeRequest(agent_id="watcher"), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError) as e:
            next(extra)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert league.healthy() and league.state() == league.before
    finally:
        for s in streams:
            s.cancel()
