"""Prometheus conventions every league process shares, and per-RPC gRPC server metrics.

Importing this module turns off prometheus_client's ``*_created`` series (one extra series
per counter and histogram child that no dashboard reads). ``process_registry`` gives a
process its registry with the one ``league_info`` metric that carries its constant labels
(component, env, version, ...), so other metrics need no constant labels. ``RpcMetrics`` is
a gRPC server interceptor that counts every RPC by service, method and status code and
observes its handling time, for any servicer, with no change to the servicers; its
``aio()`` is the same interceptor for a ``grpc.aio`` server.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics

from services.intercept import AioInterceptor, StatusRecorder, recorder, rewrap

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
    def _code(context: StatusRecorder, failed: bool) -> grpc.StatusCode:
        code = context.code()  # recorded by abort / set_code; None when the handler left it
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK

    def wrap(self, behavior: Callable, full_method: str, handler: grpc.RpcMethodHandler) -> Callable:
        """``behavior`` counted and timed (``services.intercept.Wrap``): a unary reply until
        it returns, a stream until its last message or the client's cancel; plain or async
        as ``behavior`` is."""
        service, method = _split(full_method)
        streaming = handler.response_streaming

        def done(context: StatusRecorder, t0: float, failed: bool, cancelled: bool = False) -> None:
            self._done(service, method, grpc.StatusCode.CANCELLED if cancelled else self._code(context, failed), t0)

        if inspect.isasyncgenfunction(behavior):
            async def stream_async(request: Any, context: Any) -> AsyncIterator[Any]:
                t0, context, failed, cancelled = time.perf_counter(), recorder(context), True, False
                try:
                    async for item in behavior(request, context):
                        yield item
                    failed = False
                except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-stream
                    cancelled = True
                    raise
                finally:
                    done(context, t0, failed, cancelled)
            return stream_async
        if inspect.iscoroutinefunction(behavior):  # a unary reply, or a stream written with context.write
            async def unary_async(request: Any, context: Any) -> Any:
                t0, context, failed, cancelled = time.perf_counter(), recorder(context), True, False
                try:
                    reply = await behavior(request, context)
                    failed = False
                    return reply
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                finally:
                    done(context, t0, failed, cancelled)
            return unary_async

        def unary(request: Any, context: Any) -> Any:
            t0, context, failed = time.perf_counter(), recorder(context), True
            try:
                reply = behavior(request, context)
                failed = False
                return reply
            finally:
                done(context, t0, failed)

        def stream(request: Any, context: Any) -> Iterator[Any]:
            t0, context, failed, cancelled = time.perf_counter(), recorder(context), True, False
            try:
                yield from behavior(request, context)
                failed = False
            except GeneratorExit:  # the client went away mid-stream
                cancelled = True
                raise
            finally:
                done(context, t0, failed, cancelled)

        return stream if streaming else unary

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        return rewrap(continuation(handler_call_details), handler_call_details.method, self.wrap)

    def aio(self) -> AioInterceptor:
        """The same metrics (same series) for a ``grpc.aio`` server."""
        return AioInterceptor(self.wrap)
