"""Server plumbing every league process shares: gRPC server and channel with the league's
message limits, health and reflection, binding, status-code aborts and the /metrics endpoint.

Two kinds of server: :func:`make_server`, a thread-pool ``grpc.server`` (agents, the
coordinator: a handful of callers, no long-lived streams), and :class:`AioServer`, a
``grpc.aio`` server on an event loop of its own (the referee: one Subscribe stream per agent
stays open for the league's life, and on ``grpc.aio`` an open stream holds no thread)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgi_server

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, make_wsgi_app

from services.auth import CHANNEL_OPTIONS, AccessControl, access_table, channel_credentials, server_credentials
from services.intercept import AioInterceptor
from services.pki import Credentials
from services.wire import WireError

PROTOCOL_VERSION = 1
# Largest single gRPC message; parameter sets larger than this travel in ~1 MiB chunks.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# Servers do not share ports (SO_REUSEPORT would let a second server bind a port in use).
SERVER_OPTIONS: list[tuple[str, int]] = [*GRPC_OPTIONS, ("grpc.so_reuseport", 0)]
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Every league process logs to stderr and, when given, to its log file (appended)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


def make_server(max_workers: int = 8, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """A thread-pool gRPC server with the league's message-size limits (not yet bound or
    started); ``interceptors`` wrap every RPC (e.g. ``services.metrics.RpcMetrics``)."""
    return grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS,
                       interceptors=list(interceptors))


T = TypeVar("T")


class AioServer:
    """A ``grpc.aio`` server served by an asyncio event loop in a daemon thread of its own, so
    the process's main thread stays free for blocking work (the referee's rounds).

    Handlers that are coroutines or async generators (the referee's ``Subscribe``, health)
    run on the loop: an open stream costs a task and a queue, not a thread. Plain handlers
    (the unary RPCs, written for the sync server) run in ``grpc.aio``'s migration pool of
    ``unary_workers`` threads, a fixed bound however many streams are open. ``interceptors``
    are ``grpc.aio.ServerInterceptor`` (e.g. ``RpcMetrics(...).aio()``). Register servicers
    on :attr:`server` with the generated ``add_*_to_server`` (or :meth:`call` when they must
    run on the loop), then :func:`bind` and :meth:`start`."""

    def __init__(self, unary_workers: int = 16, interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                 slow_methods: Collection[str] = (), slow_workers: int = 16) -> None:
        """``slow_methods`` (``/package.Service/Method``, plain unary handlers that wait on
        other servers, e.g. the referee's Join) run in a pool of ``slow_workers`` threads of
        their own, so a burst of them never queues the quick RPCs (Status, Heartbeat)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio-loop", daemon=True)
        self._thread.start()
        self.pool = futures.ThreadPoolExecutor(max_workers=unary_workers, thread_name_prefix="grpc-unary")
        self.slow_pool = futures.ThreadPoolExecutor(max_workers=slow_workers, thread_name_prefix="grpc-slow")
        lane = [AioInterceptor(_own_pool_wrap(frozenset(slow_methods), self.slow_pool))] if slow_methods else []

        async def make() -> grpc.aio.Server:  # grpc.aio binds the server to the running loop
            return grpc.aio.server(migration_thread_pool=self.pool, options=SERVER_OPTIONS,
                                   interceptors=[*interceptors, *lane])

        self.server: grpc.aio.Server = self.call(make())

    def call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``coro`` on the server's loop from any other thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop (thread-safe, in call order; returns at once)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self.server.add_secure_port(address, credentials)

    def add_insecure_port(self, address: str) -> int:
        return self.server.add_insecure_port(address)

    def start(self) -> None:
        self.call(self.server.start())

    def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds; open streams are cancelled),
        then end the loop and its thread and the unary pool."""
        if self.loop.is_closed():
            return
        try:
            self.call(self.server.stop(grace))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.slow_pool.shutdown(wait=False, cancel_futures=True)
            if not self._thread.is_alive():
                self.loop.close()


class _PoolContext:
    """The context a plain handler sees in an :class:`AioServer` pool of its own: as
    ``grpc.aio``'s context for its migration pool, ``abort`` runs on the loop and raises in
    the handler's thread; everything else is the loop's context."""

    def __init__(self, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._context, self._loop = context, loop

    def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> NoReturn:
        asyncio.run_coroutine_threadsafe(self._context.abort(code, details, *args), self._loop).result()
        raise AssertionError("unreachable: abort returned")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _own_pool_wrap(methods: frozenset[str], pool: futures.Executor):
    """A ``services.intercept.Wrap`` running the plain unary-unary handlers of ``methods`` in
    ``pool`` (as coroutines awaiting it) instead of ``grpc.aio``'s migration pool."""

    def wrap(behavior: Callable, method: str, handler: grpc.RpcMethodHandler) -> Callable:
        if (method not in methods or handler.request_streaming or handler.response_streaming
                or inspect.iscoroutinefunction(behavior)):
            return behavior

        async def in_pool(request: Any, context: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(pool, behavior, request, _PoolContext(context, loop))
        return in_pool
    return wrap


def add_health_and_reflection_aio(server: AioServer, service_full_names: list[str]):
    """:func:`add_health_and_reflection` for an :class:`AioServer`: grpc.health.v1's asyncio
    servicer (a Watch stream holds no thread either) and reflection. Returns a function that
    flips every status to NOT_SERVING (call it before stopping the server)."""
    from grpc_health.v1.health import aio as health_aio

    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server.server)

    async def serving() -> None:
        for name in ["", *service_full_names]:
            await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    server.call(serving())
    reflection.enable_server_reflection(
        [*service_full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server.server
    )
    return lambda: server.call(servicer.enter_graceful_shutdown())


def access_control(credentials: Credentials | None, registry: CollectorRegistry,
                   peer_access: str = "direct") -> list[grpc.ServerInterceptor]:
    """The interceptor enforcing the league's access table (``services.auth``) for a server
    bound with ``credentials``; none for a plaintext (``--insecure``) server, which has no
    identities to check. Put it after ``RpcMetrics`` so refusals are counted there too."""
    if credentials is None:
        return []
    return [AccessControl(access_table(peer_access), registry)]


def add_health_and_reflection(server: grpc.Server, service_full_names: list[str]) -> health.HealthServicer:
    """Register grpc.health.v1 (SERVING for "" and each service) and reflection on server.

    Returns the health servicer so the caller can flip statuses, e.g. to NOT_SERVING on shutdown.
    """
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *service_full_names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*service_full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return servicer


def _host_port(host: str, port: int) -> str:
    """host:port, with brackets around a bare IPv6 host."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def bind(server: grpc.Server | AioServer, host: str = "127.0.0.1", port: int = 0, credentials: Credentials | None = None) -> int:
    """Bind a port (0 picks a free one) and return the port actually bound: mutual TLS with
    ``credentials`` (``services.auth``), plaintext without (``--insecure``)."""
    try:
        if credentials is not None:
            bound = server.add_secure_port(_host_port(host, port), server_credentials(credentials))
        else:
            bound = server.add_insecure_port(_host_port(host, port))
    except RuntimeError:  # grpcio raises this when the port is taken
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {_host_port(host, port)}: address in use or not available")
    return bound


def abort(context: grpc.ServicerContext, err: WireError) -> NoReturn:
    """End the RPC with the error's status code and message (raises, never returns)."""
    context.abort(err.code, str(err))
    raise AssertionError("unreachable: context.abort returned")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - no access log on stderr
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_metrics(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0,
                  routes: Mapping[str, Callable[[], bytes]] | None = None) -> tuple[WSGIServer, int]:
    """Serve registry as Prometheus text on http://host:port/metrics in a daemon thread, plus
    optional JSON ``routes`` (path -> body), e.g. the referee's service-discovery list.

    Returns (server, bound port); stop it with server.shutdown() and server.server_close().
    """
    metrics_app = make_wsgi_app(registry)
    extra = dict(routes or {})

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in extra:
            body = extra[path]()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)

    httpd = make_wsgi_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_port


def channel(address: str, credentials: Credentials | None = None) -> grpc.Channel:
    """A channel to host:port with the league's message-size limits: mutual TLS with
    ``credentials`` (the server must hold a league-CA certificate), plaintext without."""
    if credentials is not None:
        return grpc.secure_channel(address, channel_credentials(credentials), options=[*GRPC_OPTIONS, *CHANNEL_OPTIONS])
    return grpc.insecure_channel(address, options=GRPC_OPTIONS)
