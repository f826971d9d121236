"""Server plumbing every league process shares: gRPC server and channel with the league's
message limits, health and reflection, binding, status-code aborts and the /metrics endpoint."""

from __future__ import annotations

from concurrent import futures
from typing import NoReturn
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from services.wire import WireError

PROTOCOL_VERSION = 1
# Largest single gRPC message; parameter sets larger than this travel in ~1 MiB chunks.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def make_server(max_workers: int = 8) -> grpc.Server:
    """A thread-pool gRPC server with the league's message-size limits (not yet bound or started)."""
    return grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=GRPC_OPTIONS)


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


def bind(server: grpc.Server, host: str = "127.0.0.1", port: int = 0) -> int:
    """Bind an insecure port (0 picks a free one) and return the port actually bound."""
    bound = server.add_insecure_port(_host_port(host, port))
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {_host_port(host, port)}")
    return bound


def abort(context: grpc.ServicerContext, err: WireError) -> NoReturn:
    """End the RPC with the error's status code and message (raises, never returns)."""
    context.abort(err.code, str(err))
    raise AssertionError("unreachable: context.abort returned")


def serve_metrics(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
    """Serve registry as Prometheus text on http://host:port/metrics in a daemon thread.

    Returns (server, bound port); stop it with server.shutdown() and server.server_close().
    """
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return httpd, httpd.server_port


def channel(address: str) -> grpc.Channel:
    """An insecure channel to host:port with the league's message-size limits."""
    return grpc.insecure_channel(address, options=GRPC_OPTIONS)
