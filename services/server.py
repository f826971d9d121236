"""Server plumbing every league process shares: gRPC server and channel with the league's
message limits, health and reflection, binding, status-code aborts and the /metrics endpoint."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import NoReturn
from collections.abc import Callable, Mapping, Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgi_server

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, make_wsgi_app

from services.auth import CHANNEL_OPTIONS, AccessControl, access_table, channel_credentials, server_credentials
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


def bind(server: grpc.Server, host: str = "127.0.0.1", port: int = 0, credentials: Credentials | None = None) -> int:
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
