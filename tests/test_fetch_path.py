"""The parameter fetch path over a real gRPC server on 127.0.0.1: CRC32C on the wire, the
encoded-set cache (reused only for the same tensors at the same version, re-encoded after a
push), the wire-bytes path on both ends (``add_agent_service`` and ``AgentClient``) against
the generated message path, concurrent fetches, and a corrupted or truncated chunk refused
end to end."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
import torch

from agents.params import ParameterStore
from agents.service import AgentService, EncodedSets, add_agent_service
from services.client import AgentClient, fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, tensor_pb2
from services.server import bind, channel, make_server
from services.wire import (
    CHUNK_BYTES,
    ONE_MESSAGE_METADATA,
    WireError,
    assemble_parameters,
    assemble_wire,
    chunk_parameters,
    encode_parameter_set,
)

pytestmark = pytest.mark.timeout(60)

RPC_TIMEOUT = 10.0


def _policy(seed: int, n: int = 3 * CHUNK_BYTES // 4 + 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(n, generator=g), "b": torch.randn(7, dtype=torch.float64, generator=g)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


class Served:
    """An AgentService on a real server whose encoder calls are counted: registered with
    ``add_agent_service`` (wire bytes) or, with ``generated=True``, the generated registration
    (messages); ``stub`` is an ``AgentClient``, ``plain`` the generated stub."""

    def __init__(self, store: ParameterStore, generated: bool = False, **kwargs) -> None:
        self.service = AgentService(store, {"agent_id": "a", "env": "ipd"}, **kwargs)
        self.server = make_server(max_workers=8)
        if generated:
            agent_pb2_grpc.add_AgentServicer_to_server(self.service, self.server)
        else:
            add_agent_service(self.service, self.server)
        self.port = bind(self.server, "127.0.0.1", 0)
        self.server.start()
        self.channel = channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=RPC_TIMEOUT)
        self.stub = AgentClient(self.channel)
        self.plain = agent_pb2_grpc.AgentStub(self.channel)
        self.encodes: list[tuple[str, int]] = []
        real = self.service.encoded.chunks

        def counting(kind, version, params, encode):
            def counted():
                self.encodes.append((kind, version))
                return encode()

            return real(kind, version, params, counted)

        self.service.encoded.chunks = counting  # type: ignore[method-assign]

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=None).wait(RPC_TIMEOUT)


@pytest.fixture(params=[False, True], ids=["wire", "generated"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(ParameterStore({"policy": _policy(0)}), generated=request.param)
    yield s
    s.close()


def test_fetches_carry_crc32c_and_are_encoded_once_per_version(served: Served) -> None:
    chunks = list(served.stub.GetParameters(agent_pb2.GetParametersRequest(kind="policy"), timeout=RPC_TIMEOUT))
    assert len(chunks) == 4 and chunks[0].header.HasField("crc32c") and chunks[0].header.sha256 == ""
    for _ in range(3):
        out = fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
        assert out.version == 1 and _same(out.params, _policy(0))
    assert served.encodes == [("policy", 1)]
    served.service.store.set("policy", _policy(1))  # a new version is encoded afresh
    out = fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
    assert out.version == 2 and _same(out.params, _policy(1))
    assert served.encodes == [("policy", 1), ("policy", 2)]


def test_same_version_with_other_tensors_is_not_served_from_the_cache(served: Served) -> None:
    assert _same(fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(0))
    served.service.store.restore("policy", 1, _policy(2))  # version unchanged, tensors replaced
    out = fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
    assert out.version == 1 and _same(out.params, _policy(2))
    assert served.encodes == [("policy", 1), ("policy", 1)]


def test_concurrent_fetches_of_one_cached_set_all_arrive_intact(served: Served) -> None:
    fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
    results: list[bool] = []

    def fetch() -> None:
        for _ in range(3):
            out = fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
            results.append(_same(out.params, _policy(0)))

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 18 and served.encodes == [("policy", 1)]


def test_cache_keeps_the_most_recently_served_sets() -> None:
    cache = EncodedSets(capacity=2)
    calls: list[str] = []
    sets = {k: {"x": torch.full((3,), float(i))} for i, k in enumerate("abc")}

    def get(kind: str) -> list:
        def encode():
            calls.append(kind)
            return encode_parameter_set(kind, 1, sets[kind], checksum="crc32c")

        return cache.chunks(kind, 1, sets[kind], encode)

    for kind in "ababcab":
        chunks = get(kind)
        assert _same(assemble_wire(chunks, max_bytes=1 << 20).params, sets[kind])
    assert calls == ["a", "b", "c", "a", "b"]  # c pushed a out; then a pushed b out
    nothing = EncodedSets(capacity=0)
    for _ in range(2):
        nothing.chunks("a", 1, sets["a"], lambda: (calls.append("a0"), encode_parameter_set("a", 1, sets["a"]))[1])
    assert calls[-2:] == ["a0", "a0"]  # capacity 0 keeps nothing: every fetch encodes


def test_a_corrupted_chunk_in_transit_is_refused_by_the_client(served: Served) -> None:
    """Flip one payload bit in the stream as it arrives: the client raises and applies nothing."""
    call = served.stub.GetParameters(agent_pb2.GetParametersRequest(kind="policy"), timeout=RPC_TIMEOUT)

    def tampered() -> Iterator:
        for chunk in call:
            if chunk.index == 2:
                payload = bytearray(chunk.payload)
                payload[12345] ^= 0x10
                chunk.payload = bytes(payload)
            yield chunk

    with pytest.raises(WireError, match="crc32c mismatch"):
        assemble_parameters(tampered(), max_bytes=64 << 20)
    # the cached chunks themselves were not touched by the receiver's copy
    assert _same(fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(0))


def test_both_clients_read_the_same_set_and_the_same_bytes(served: Served) -> None:
    """The wire-bytes server sends what the generated one would: the message client and the
    bytes client both read the set, and the chunks parse to the generated encoding's."""
    request = agent_pb2.GetParametersRequest(kind="policy")
    wire = list(served.stub.GetParametersWire(request, timeout=RPC_TIMEOUT))
    want = list(chunk_parameters("policy", 1, _policy(0), checksum="crc32c"))
    assert [tensor_pb2.ParameterChunk.FromString(w) for w in wire] == want
    assert list(served.plain.GetParameters(request, timeout=RPC_TIMEOUT)) == want
    for stub in (served.stub, served.plain):
        out = fetch_parameters(stub, "policy", timeout=RPC_TIMEOUT)
        assert out.version == 1 and _same(out.params, _policy(0))
    assert fetch_parameters(served.stub, "policy", min_version=2, timeout=RPC_TIMEOUT).not_modified
    assert served.encodes == [("policy", 1)]


def test_a_push_invalidates_the_cached_encoding(served: Served) -> None:
    """A fetch after a push over gRPC returns the pushed version's bytes, never the cached ones."""
    assert _same(fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(0))
    for version in (2, 3):
        assert push_parameters(served.plain, "policy", _policy(version), expected_version=version - 1,
                               timeout=RPC_TIMEOUT) == version
        out = fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT)
        assert out.version == version and _same(out.params, _policy(version))
        assert _same(fetch_parameters(served.plain, "policy", timeout=RPC_TIMEOUT).params, _policy(version))
    assert served.encodes == [("policy", 1), ("policy", 2), ("policy", 3)]


def test_a_flipped_or_truncated_wire_chunk_in_transit_is_refused(served: Served) -> None:
    """Tamper with the received bytes of one chunk: a flipped payload bit fails the CRC32C,
    a truncated chunk fails to parse; the client applies nothing either way."""
    request = agent_pb2.GetParametersRequest(kind="policy")
    for tamper, error in [(lambda b: b[:-100] + bytes([b[-100] ^ 0x10]) + b[-99:], "crc32c mismatch"),
                          (lambda b: b[:-1], "malformed parameter chunk")]:
        call = served.stub.GetParametersWire(request, timeout=RPC_TIMEOUT)
        chunks = (tamper(data) if i == 2 else data for i, data in enumerate(call))
        with pytest.raises(WireError, match=error):
            assemble_wire(chunks, max_bytes=64 << 20)
        call.cancel()
    assert _same(fetch_parameters(served.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(0))


def test_a_one_chunk_set_is_read_as_one_message_and_a_larger_one_as_a_stream() -> None:
    """AgentClient asks for one message first; the agent refuses a set of several chunks with
    OUT_OF_RANGE at once (a unary reader of several messages would wait for its deadline), the
    client streams it and remembers; a kind that shrinks to one chunk goes back to one message."""
    s = Served(ParameterStore({"policy": _policy(0), "small": _policy(1, n=100)}))
    try:
        request = agent_pb2.GetParametersRequest(kind="policy")
        with pytest.raises(grpc.RpcError) as e:
            s.stub.GetParametersOne(request, timeout=RPC_TIMEOUT, metadata=(ONE_MESSAGE_METADATA,))
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and "4 chunks" in e.value.details()
        one = s.stub.GetParametersOne(agent_pb2.GetParametersRequest(kind="small"), timeout=RPC_TIMEOUT,
                                      metadata=(ONE_MESSAGE_METADATA,))
        assert tensor_pb2.ParameterChunk.FromString(one).count == 1
        for _ in range(2):
            assert _same(fetch_parameters(s.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(0))
            assert _same(fetch_parameters(s.stub, "small", timeout=RPC_TIMEOUT).params, _policy(1, n=100))
            assert s.stub.streamed_kinds == {"policy"}
        s.service.store.set("policy", _policy(2, n=10))  # now one chunk: read as one message again
        assert _same(fetch_parameters(s.stub, "policy", timeout=RPC_TIMEOUT).params, _policy(2, n=10))
        assert s.stub.streamed_kinds == set()
        assert fetch_parameters(s.stub, "policy", min_version=5, timeout=RPC_TIMEOUT).not_modified
    finally:
        s.close()
