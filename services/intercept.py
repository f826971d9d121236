"""What the league's server interceptors share, for the sync ``grpc.server`` and for
``grpc.aio``: rebuilding a method handler around a wrapped behaviour, telling a coroutine
behaviour from a plain one, the status code a handler ended with, and the adapter that runs
a sync interceptor's wrapping under ``grpc.aio``.

An interceptor here is a *wrap* function ``wrap(behavior, method, handler) -> behavior``
(``handler``: the method handler it came from, for its arity) that must
return a behaviour of the same kind it got: a plain function (or generator) for a plain
one, a coroutine function (or async generator) for an async one. ``grpc.aio`` runs plain
behaviours in its migration thread pool and async ones on its event loop, so a wrap keeps
each where it was. The sync server only ever passes plain behaviours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Wrap = Callable[[Callable, str, grpc.RpcMethodHandler], Callable]
"""``wrap(behavior, full_method, handler) -> behavior`` of the same kind (plain or async)."""

_MAKE = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
         (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}


def behavior_of(handler: grpc.RpcMethodHandler) -> Callable:
    """The one behaviour a method handler holds (whatever its arity)."""
    return next(b for b in (handler.unary_unary, handler.unary_stream, handler.stream_unary, handler.stream_stream)
                if b is not None)


def rewrap(handler: grpc.RpcMethodHandler | None, method: str, wrap: Wrap) -> grpc.RpcMethodHandler | None:
    """``handler`` with its behaviour replaced by ``wrap(behaviour, method, handler)``: same arity,
    same (de)serialisers. None stays None (an unknown method: gRPC answers UNIMPLEMENTED)."""
    if handler is None:
        return None
    make = _MAKE[(handler.request_streaming, handler.response_streaming)]
    return make(wrap(behavior_of(handler), method, handler), handler.request_deserializer, handler.response_serializer)


class StatusRecorder:
    """A servicer context that remembers the status code its handler aborted with or set.

    ``grpc.aio`` hands plain (thread-pool) handlers a context without ``code()``, so the
    interceptors read the code from here on both servers. Everything else is the wrapped
    context's; ``abort`` returns what the wrapped ``abort`` returns (a coroutine under
    ``grpc.aio``'s async context, to be awaited)."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.recorded: grpc.StatusCode | None = None

    def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> Any:
        self.recorded = code
        return self._context.abort(code, details, *args)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.recorded = code
        self._context.set_code(code)

    def code(self) -> grpc.StatusCode | None:
        return self.recorded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def recorder(context: Any) -> StatusRecorder:
    """``context`` as a :class:`StatusRecorder` (itself when it already is one, so stacked
    interceptors share the record)."""
    return context if isinstance(context, StatusRecorder) else StatusRecorder(context)


class AioInterceptor(grpc.aio.ServerInterceptor):
    """A sync interceptor's ``wrap`` applied on a ``grpc.aio`` server: one definition of what
    an interceptor does, on both kinds of server."""

    def __init__(self, wrap: Wrap) -> None:
        self.wrap = wrap

    async def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        return rewrap(handler, handler_call_details.method, self.wrap)
