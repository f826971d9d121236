"""The Agent gRPC service on a real server on 127.0.0.1: fetches, pushes and their status codes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agents.params import ParameterStore, StaleVersion
from agents.service import SERVICE_NAME, AgentService
from services.client import describe, fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, tensor_pb2
from services.server import PROTOCOL_VERSION, add_health_and_reflection, bind, channel, make_server
from services.wire import CHUNK_BYTES, WireError, chunk_parameters

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
RPC_TIMEOUT = 10.0
DESCRIPTION = {
    "agent_id": "a0",
    "env": "ipd",
    "obs_dim": 5,
    "n_actions": 2,
    "policy_class": "tabular",
    "policy_config": {"states": 5},
    "learning_rule": "pg",
    "rule_config": {"lr": 0.1},
    "capabilities": ["push"],
}


def small_policy() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"logits": torch.randn(5, 2, generator=g), "steps": torch.tensor([3], dtype=torch.int64)}


class Agent:
    """A running server with an AgentService, and a stub and health stub talking to it."""

    def __init__(self, store: ParameterStore, **kwargs: Any) -> None:
        self.store = store
        self.pushes: list[tuple[str, int]] = []
        on_push = lambda kind, version: self.pushes.append((kind, version))  # noqa: E731
        self.service = AgentService(store, DESCRIPTION, on_push=on_push, **kwargs)
        self.server = make_server(max_workers=4)
        agent_pb2_grpc.add_AgentServicer_to_server(self.service, self.server)
        self.health = add_health_and_reflection(self.server, [SERVICE_NAME])
        self.port = bind(self.server, "127.0.0.1", 0)
        self.server.start()
        self.channel = channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=RPC_TIMEOUT)
        self.stub = agent_pb2_grpc.AgentStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=None).wait(RPC_TIMEOUT)

    def serving(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=RPC_TIMEOUT)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def start_agent() -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(store: ParameterStore | None = None, **kwargs: Any) -> Agent:
        store = store or ParameterStore({"policy": small_policy(), "lr": {"alpha": torch.tensor(0.5)}})
        agent = Agent(store, **kwargs)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.close()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _expect(code: grpc.StatusCode, call: Callable[[], object], match: str = "") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == code, e.value.details()
    assert match in (e.value.details() or "")
    return e.value


def _assert_untouched(agent: Agent, version: int, params: dict[str, torch.Tensor]) -> None:
    """The rejected push changed nothing, the server is healthy and a normal fetch works."""
    now_version, now = agent.store.get("policy")
    assert now_version == version and _same(now, params)
    assert agent.serving()
    fetched = fetch_parameters(agent.stub, "policy", timeout=RPC_TIMEOUT)
    assert fetched.version == version and fetched.params is not None and _same(fetched.params, params)
    assert agent.pushes == []


def test_fetch_40mb_policy_bit_for_bit(start_agent: Callable[..., Agent]) -> None:
    g = torch.Generator().manual_seed(1)
    policy = {
        "w": torch.randn(10 * 1000 * 1000, generator=g),  # 40 MB
        "b": torch.randn(17, dtype=torch.float64, generator=g),
        "mask": torch.rand(33, generator=g) > 0.5,
    }
    policy["w"][:3] = torch.tensor([float("1e-45"), -0.0, 3.4e38])  # subnormal, negative zero, near max
    times: list[float] = []

    class Metrics:
        def observe_fetch(self, seconds: float) -> None:
            times.append(seconds)

    agent = start_agent(ParameterStore({"policy": policy}), metrics=Metrics())
    seen = []
    call = agent.stub.GetParameters(agent_pb2.GetParametersRequest(kind="policy"), timeout=RPC_TIMEOUT)
    for chunk in call:
        seen.append((chunk.index, chunk.count, len(chunk.payload), chunk.ByteSize()))
    assert len(seen) == -(-sum(t.numel() * t.element_size() for t in policy.values()) // CHUNK_BYTES)
    assert all(size <= CHUNK_BYTES and wire < CHUNK_BYTES + 4096 for _, _, size, wire in seen)

    start = time.perf_counter()
    out = fetch_parameters(agent.stub, "policy", timeout=RPC_TIMEOUT)
    elapsed = time.perf_counter() - start
    assert out.version == 1 and out.params is not None
    for name, t in policy.items():
        assert out.params[name].dtype == t.dtype
        assert out.params[name].numpy().tobytes() == t.numpy().tobytes()  # bit for bit
    assert elapsed < 10 and len(times) == 2


def test_min_version_fast_path(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    request = agent_pb2.GetParametersRequest(kind="policy", min_version=2)
    chunks = list(agent.stub.GetParameters(request, timeout=RPC_TIMEOUT))
    assert len(chunks) == 1 and chunks[0].count == 0 and chunks[0].version == 1 and not chunks[0].payload
    out = fetch_parameters(agent.stub, "policy", min_version=2, timeout=RPC_TIMEOUT)
    assert out.not_modified and out.version == 1
    out = fetch_parameters(agent.stub, "policy", min_version=1, timeout=RPC_TIMEOUT)
    assert not out.not_modified and _same(out.params, small_policy())


def test_unknown_kind(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    fetch = lambda: fetch_parameters(agent.stub, "nope", timeout=RPC_TIMEOUT)  # noqa: E731
    _expect(grpc.StatusCode.INVALID_ARGUMENT, fetch, "lr, policy")
    _expect(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: push_parameters(agent.stub, "nope", small_policy(), 1, timeout=RPC_TIMEOUT),
        "lr, policy",
    )


def test_valid_push_bumps_version(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    new = {"logits": torch.full((5, 2), 0.25), "steps": torch.tensor([4])}
    assert push_parameters(agent.stub, "policy", new, expected_version=1, timeout=RPC_TIMEOUT) == 2
    version, params = agent.store.get("policy")
    assert version == 2 and _same(params, new)
    assert agent.pushes == [("policy", 2)]
    assert dict(describe(agent.stub, timeout=RPC_TIMEOUT).versions) == {"policy": 2, "lr": 1}
    # Pushing again against the old version is stale now.
    push = lambda: push_parameters(agent.stub, "policy", new, 1, timeout=RPC_TIMEOUT)  # noqa: E731
    _expect(grpc.StatusCode.ABORTED, push, "expected 1, current is 2")


Pusher = Callable[["Agent"], object]


def _bad_pushes() -> dict[str, tuple[grpc.StatusCode, str, Pusher]]:
    """Each rejected push: its status code, a part of its message, and how to send it."""
    good = small_policy()
    invalid, aborted, exhausted = (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )

    def push(params: dict[str, torch.Tensor], expected: int = 1) -> Pusher:
        return lambda agent: push_parameters(agent.stub, "policy", params, expected, timeout=RPC_TIMEOUT)

    def raw(chunks: list[tensor_pb2.ParameterChunk]) -> Pusher:
        return lambda agent: agent.stub.PushParameters(iter(chunks), timeout=RPC_TIMEOUT)

    def unlimited(chunks: list[tensor_pb2.ParameterChunk]) -> Pusher:
        """Send from a channel without a send limit, so that the server's receive limit answers."""

        def send(agent: Agent) -> object:
            options = [("grpc.max_send_message_length", 64 * MIB)]
            with grpc.insecure_channel(f"127.0.0.1:{agent.port}", options=options) as ch:
                return agent_pb2_grpc.AgentStub(ch).PushParameters(iter(chunks), timeout=RPC_TIMEOUT)

        return send

    zeros = {"logits": torch.zeros(5, 2), "steps": torch.tensor([0])}
    bad_sum = list(chunk_parameters("policy", 2, zeros, expected_version=1))
    bad_sum[0].payload = b"\x01" + bad_sum[0].payload[1:]
    huge = tensor_pb2.ParameterChunk(
        kind="policy", version=2, index=0, count=1, expected_version=1, payload=b"\0" * 5_000_000
    )
    return {
        "wrong shape": (
            invalid,
            "'logits' has shape [2, 5], expected [5, 2]",
            push({**good, "logits": torch.zeros(2, 5)}),
        ),
        "wrong dtype": (
            invalid,
            "'steps' has dtype torch.int32, expected torch.int64",
            push({**good, "steps": torch.tensor([1], dtype=torch.int32)}),
        ),
        "missing tensor": (invalid, "missing ['steps']", push({"logits": good["logits"]})),
        "nan": (invalid, "NaN/Inf in tensor 'logits'", push({**good, "logits": torch.full((5, 2), float("nan"))})),
        "stale": (aborted, "expected 0, current is 1", push(good, expected=0)),
        "future": (aborted, "expected 5, current is 1", push(good, expected=5)),
        "bad checksum": (invalid, "sha256 mismatch", raw(bad_sum)),
        "message over 4 MiB": (exhausted, "SERVER: Received message larger than max", unlimited([huge])),
        "total over limit": (
            exhausted,
            "exceeds the limit of 8388608 bytes",
            push({"logits": torch.zeros(3 * MIB), "steps": torch.zeros(1)}),
        ),
        "not modified": (invalid, "must carry parameters", raw([tensor_pb2.ParameterChunk(kind="policy", version=1)])),
        "empty stream": (invalid, "empty parameter stream", raw([])),
    }


@pytest.mark.parametrize("case", list(_bad_pushes()))
def test_rejected_push_changes_nothing(start_agent: Callable[..., Agent], case: str) -> None:
    code, match, push = _bad_pushes()[case]
    agent = start_agent(max_push_bytes=8 * MIB)
    version, before = agent.store.get("policy")
    _expect(code, lambda: push(agent), match)
    _assert_untouched(agent, version, before)


def test_concurrent_pushes_one_wins(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    results: list[object] = []

    def push(value: float) -> None:
        try:
            params = {"logits": torch.full((5, 2), value), "steps": torch.tensor([0])}
            results.append(push_parameters(agent.stub, "policy", params, 1, timeout=RPC_TIMEOUT))
        except grpc.RpcError as err:
            results.append(err.code())

    threads = [threading.Thread(target=push, args=(float(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RPC_TIMEOUT)
    assert sorted(map(str, results)) == sorted(map(str, [2] + [grpc.StatusCode.ABORTED] * 3))
    assert agent.store.version("policy") == 2


def test_describe(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    desc = describe(agent.stub, timeout=RPC_TIMEOUT)
    assert desc.agent_id == "a0" and desc.protocol_version == PROTOCOL_VERSION and desc.obs_dim == 5
    assert desc.policy_config_json == '{"states": 5}' and list(desc.capabilities) == ["push"]
    assert dict(desc.versions) == {"policy": 1, "lr": 1}
    unspecified = agent_pb2.DescribeRequest()  # protocol_version 0: accepted
    assert agent.stub.Describe(unspecified, timeout=RPC_TIMEOUT).agent_id == "a0"
    newer = agent_pb2.DescribeRequest(protocol_version=PROTOCOL_VERSION + 1)
    err = _expect(grpc.StatusCode.FAILED_PRECONDITION, lambda: agent.stub.Describe(newer, timeout=RPC_TIMEOUT))
    assert f"client speaks {PROTOCOL_VERSION + 1}" in err.details()
    assert f"agent speaks {PROTOCOL_VERSION}" in err.details()
    with pytest.raises(ValueError, match="unknown agent description field"):
        AgentService(ParameterStore(), {"agent": "typo"})


def test_health_and_reflection(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent()
    assert agent.serving()
    stub = reflection_pb2_grpc.ServerReflectionStub(agent.channel)
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = list(stub.ServerReflectionInfo(iter([listing]), timeout=RPC_TIMEOUT))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"league.v1.Agent", "grpc.health.v1.Health"} <= names
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol="league.v1.Agent")
    reply = next(iter(stub.ServerReflectionInfo(iter([symbol]), timeout=RPC_TIMEOUT)))
    assert reply.file_descriptor_response.file_descriptor_proto


def test_store_compare_and_set_and_wait() -> None:
    store = ParameterStore()
    assert store.set("policy", {"w": torch.zeros(2)}) == 1
    with pytest.raises(StaleVersion) as stale:
        store.compare_and_set("policy", 0, {"w": torch.ones(2)})
    assert stale.value.code == grpc.StatusCode.ABORTED
    with pytest.raises(WireError, match="shape"):
        store.compare_and_set("policy", 1, {"w": torch.ones(3)})
    version, params = store.get("policy")
    params["w"].fill_(7)  # a copy: the store is unaffected
    assert version == 1 and torch.equal(store.get("policy")[1]["w"], torch.zeros(2))
    assert not store.wait_for_version("policy", 2, timeout=0.05)
    timer = threading.Timer(0.05, lambda: store.compare_and_set("policy", 1, {"w": torch.ones(2)}))
    timer.start()
    assert store.wait_for_version("policy", 2, timeout=RPC_TIMEOUT)
    timer.join()
    assert store.versions() == {"policy": 2}


def test_serve_metrics_on_loopback() -> None:
    import urllib.request

    from prometheus_client import CollectorRegistry, Counter

    from services.server import serve_metrics

    registry = CollectorRegistry()
    Counter("league_test_pushes", "Pushes seen by the test.", registry=registry).inc(3)
    httpd, port = serve_metrics(registry, "127.0.0.1", 0)
    try:
        assert port > 0 and httpd.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=RPC_TIMEOUT) as reply:
            assert "league_test_pushes_total 3.0" in reply.read().decode()
    finally:
        httpd.shutdown()
        httpd.server_close()
