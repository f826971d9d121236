"""The server interceptors (``RpcMetrics``, ``AccessControl``) do the same on a sync
``grpc.server`` and, through their ``aio()`` adapters, on ``grpc.aio`` (``services.server.AioServer``):
for a fixed script of calls, the counters of ``league_grpc_server_handled_total`` are exactly
the codes each call ended with, for plain handlers (run in the thread pool) and async ones
(run on the event loop), unary and streaming, including an abort and a client's cancel."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services import server as srv
from services.auth import AccessControl, Rule
from services.metrics import RpcMetrics

pytestmark = pytest.mark.timeout(60)

SERVICE = "test.Echo"
T = 10.0


def _plain_unary(request: bytes, context) -> bytes:
    if request == b"bad":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
    return request


def _plain_stream(request: bytes, context):
    for i in range(int(request)):
        yield b"%d" % i


async def _async_unary(request: bytes, context) -> bytes:
    if request == b"bad":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
    return request


async def _async_stream(request: bytes, context):
    n = int(request)
    for i in range(n if n >= 0 else 10**9):
        if n < 0:
            await asyncio.sleep(0.05)  # an endless, slow stream the client cancels
        yield b"%d" % i


HANDLERS = {
    "sync": {"Unary": grpc.unary_unary_rpc_method_handler(_plain_unary),
             "Stream": grpc.unary_stream_rpc_method_handler(_plain_stream)},
    "aio": {"Unary": grpc.unary_unary_rpc_method_handler(_async_unary),
            "Stream": grpc.unary_stream_rpc_method_handler(_async_stream),
            "PlainUnary": grpc.unary_unary_rpc_method_handler(_plain_unary),
            "PlainStream": grpc.unary_stream_rpc_method_handler(_plain_stream)},
}


def _serve(kind: str, metrics: RpcMetrics):
    if kind == "sync":
        server = srv.make_server(max_workers=4, interceptors=[metrics])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, HANDLERS[kind])])
    else:
        server = srv.AioServer(unary_workers=2, interceptors=[metrics.aio()])
        server.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, HANDLERS[kind])])
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    return server, f"127.0.0.1:{port}"


def _handled(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["grpc_method"], s.labels["grpc_code"]): s.value for m in registry.collect()
            for s in m.samples if s.name == "league_grpc_server_handled_total"}


def _expect_handled(registry: CollectorRegistry, expected: dict[tuple[str, str], int]) -> None:
    """The counters reach exactly ``expected`` (a handler's count lands when its wrapper
    returns, which may be just after the client got its status)."""
    deadline = time.monotonic() + T
    while _handled(registry) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _handled(registry) == expected


def _script(channel: grpc.Channel, method: str, stream: str) -> None:
    """Two OK unary calls, one aborted with INVALID_ARGUMENT, a stream of 3 read to its end
    and an endless one the client cancels after two messages."""
    unary = channel.unary_unary(f"/{SERVICE}/{method}")
    assert unary(b"a", timeout=T) == b"a" and unary(b"b", timeout=T) == b"b"
    with pytest.raises(grpc.RpcError) as e:
        unary(b"bad", timeout=T)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details() == "bad request"
    streaming = channel.unary_stream(f"/{SERVICE}/{stream}")
    assert list(streaming(b"3", timeout=T)) == [b"0", b"1", b"2"]


@pytest.mark.parametrize("kind,method,stream", [("sync", "Unary", "Stream"), ("aio", "Unary", "Stream"),
                                                ("aio", "PlainUnary", "PlainStream")])
def test_rpc_metrics_count_the_same_codes_on_both_servers(kind, method, stream):
    registry = CollectorRegistry()
    server, address = _serve(kind, RpcMetrics(registry))
    try:
        with srv.channel(address) as channel:
            _script(channel, method, stream)
        _expect_handled(registry, {(method, "OK"): 2, (method, "INVALID_ARGUMENT"): 1, (stream, "OK"): 1})
    finally:
        server.stop(None)


def test_a_cancelled_async_stream_counts_as_cancelled():
    registry = CollectorRegistry()
    server, address = _serve("aio", RpcMetrics(registry))
    try:
        with srv.channel(address) as channel:
            call = channel.unary_stream(f"/{SERVICE}/Stream")(b"-1", timeout=T)
            assert [next(call), next(call)] == [b"0", b"1"]
            call.cancel()
        _expect_handled(registry, {("Stream", "CANCELLED"): 1})
    finally:
        server.stop(None)


@pytest.mark.parametrize("method", ["Unary", "PlainUnary", "Stream", "PlainStream"])
def test_access_control_refuses_on_aio_before_the_handler_runs(method):
    """A plaintext caller has no identity: every method is refused UNAUTHENTICATED, counted
    once in the shared refusal counter, and the handler never runs."""
    registry = CollectorRegistry()
    ran = threading.Event()
    full = f"/{SERVICE}/{method}"
    guard = AccessControl({full: Rule(frozenset({"admin"}))}, registry)
    behaviour = HANDLERS["aio"][method]

    def spy(request, context):
        ran.set()
        return b""

    server = srv.AioServer(unary_workers=2, interceptors=[RpcMetrics(registry).aio(), guard.aio()])
    server.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        method: behaviour, "Spy": grpc.unary_unary_rpc_method_handler(spy)})])
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    try:
        with srv.channel(f"127.0.0.1:{port}") as channel:
            call = (channel.unary_stream if behaviour.response_streaming else channel.unary_unary)(full)
            with pytest.raises(grpc.RpcError) as e:
                reply = call(b"3", timeout=T)
                list(reply) if behaviour.response_streaming else reply
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as e:  # not in the table: refused too, the spy never runs
                channel.unary_unary(f"/{SERVICE}/Spy")(b"", timeout=T)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and not ran.is_set()
        refused = {(s.labels["grpc_method"], s.labels["caller"], s.labels["grpc_code"]): s.value
                   for m in registry.collect() for s in m.samples if s.name == "league_rpc_refused_total"}
        assert refused == {(method, "none", "UNAUTHENTICATED"): 1, ("unknown", "none", "UNAUTHENTICATED"): 1}
        _expect_handled(registry, {(method, "UNAUTHENTICATED"): 1, ("Spy", "UNAUTHENTICATED"): 1})
    finally:
        server.stop(None)
