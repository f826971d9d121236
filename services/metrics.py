"""Prometheus conventions every league process shares, and per-RPC gRPC server metrics.

Importing this module turns off prometheus_client's ``*_created`` series (one extra series
per counter and histogram child that no dashboard reads). ``process_registry`` gives a
process its registry with the one ``league_info`` metric that carries its constant labels
(component, env, version, ...), so other metrics need no constant labels. ``RpcMetrics`` is
a gRPC server interceptor that counts every RPC by service, method and status code and
observes its handling time, for any servicer, with no change to the servicers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics

disable_created_metrics()

RPC_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Handling-time buckets: sub-millisecond Describe calls up to 30 s long-poll fetches."""


def _version() -> str:
    try:
        return metadata.version("league")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def process_registry(component: str, labels: Mapping[str, str]) -> CollectorRegistry:
    """A fresh registry holding ``league_info{component=..., version=..., **labels} 1``.

    ``component`` is the kind of process (``referee``, ``agent``, ``coordinator``); the
    labels are what stays constant for the process's life (env, agent_id, role, ...)."""
    registry = CollectorRegistry()
    info = Info("league", "Constant facts about this league process (value always 1)", registry=registry)
    info.info({"component": component, "version": _version(), **{k: str(v) for k, v in labels.items()}})
    return registry


def _split(full_method: str) -> tuple[str, str]:
    """``/league.v1.Agent/Describe`` -> (``league.v1.Agent``, ``Describe``)."""
    parts = full_method.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 else ("unknown", full_method)


class RpcMetrics(grpc.ServerInterceptor):
    """Per-RPC server metrics: ``league_grpc_server_handled_total{grpc_service, grpc_method,
    grpc_code}`` and the ``league_grpc_server_handling_seconds`` histogram per method.
    A streaming response is timed until its last message (or the client's cancel)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter("league_grpc_server_handled", "RPCs completed on the server, by method and status code",
                               ["grpc_service", "grpc_method", "grpc_code"], registry=registry)
        self.seconds = Histogram("league_grpc_server_handling_seconds",
                                 "Time from an RPC's arrival to its last response message, by method",
                                 ["grpc_service", "grpc_method"], registry=registry, buckets=RPC_SECONDS_BUCKETS)

    def _done(self, service: str, method: str, code: grpc.StatusCode, t0: float) -> None:
        self.handled.labels(service, method, code.name).inc()
        self.seconds.labels(service, method).observe(time.perf_counter() - t0)

    @staticmethod
    def _code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
        code = context.code()  # set by context.abort / set_code; None when the handler left it
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK

    def _unary(self, behavior: Callable, service: str, method: str) -> Callable:
        def handle(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            t0, failed = time.perf_counter(), True
            try:
                reply = behavior(request_or_iterator, context)
                failed = False
                return reply
            finally:
                self._done(service, method, self._code(context, failed), t0)
        return handle

    def _streaming(self, behavior: Callable, service: str, method: str) -> Callable:
        def handle(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            t0, failed = time.perf_counter(), True
            try:
                yield from behavior(request_or_iterator, context)
                failed = False
            except GeneratorExit:  # the client went away mid-stream
                self._done(service, method, grpc.StatusCode.CANCELLED, t0)
                raise
            except BaseException:
                self._done(service, method, self._code(context, True), t0)
                raise
            else:
                self._done(service, method, self._code(context, failed), t0)
        return handle

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        service, method = _split(handler_call_details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, service, method),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, service, method),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._streaming(handler.unary_stream, service, method),
                                                        handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(self._streaming(handler.stream_stream, service, method),
                                                     handler.request_deserializer, handler.response_serializer)
