"""The Agent gRPC service: describes the agent, streams its parameters, accepts pushes.

Contract errors become gRPC status codes: INVALID_ARGUMENT for malformed or mismatched
parameters, RESOURCE_EXHAUSTED for oversize pushes, ABORTED for a stale expected_version,
FAILED_PRECONDITION for a protocol-version mismatch; a pushed hyperparameter (``lr``) outside
its range (``services.limits.PUSHED_RANGES``) is INVALID_ARGUMENT. A rejected push changes nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import grpc

from agents.params import ParameterStore, StaleVersion, UnknownKind
from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, tensor_pb2
from services.auth import redacted_fields
from services.limits import MAX_WAIT_SECONDS, check_kind, check_pushed_range, check_wait
from services.server import PROTOCOL_VERSION, abort
from services.wire import (
    CHUNK_BYTES,
    FETCH_CHECKSUM,
    ONE_MESSAGE_METADATA,
    WireError,
    assemble_parameters,
    encode_parameter_set,
    get_checksum,
    not_modified,
)

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
DEFAULT_MAX_PUSH_BYTES = 256 * 1024 * 1024

_PLAIN_FIELDS = ("agent_id", "env", "n_players", "obs_dim", "n_actions", "policy_class", "learning_rule", "capabilities",
                 "observation_space_json", "action_space_json")
_JSON_FIELDS = {"policy_config": "policy_config_json", "rule_config": "rule_config_json",
                "env_kwargs": "env_kwargs_json"}


class FetchMetrics(Protocol):
    """Optional metrics hook: observes how long serving one parameter fetch took."""

    def observe_fetch(self, seconds: float) -> None: ...


def _description_fields(description: Mapping[str, Any]) -> dict[str, Any]:
    """AgentDescription fields from a plain dict; *_config values may be dicts (JSON-encoded here)."""
    fields: dict[str, Any] = {}
    for key, value in description.items():
        if key in _PLAIN_FIELDS:
            fields[key] = list(value) if key == "capabilities" else value
        elif key in _JSON_FIELDS:
            fields[_JSON_FIELDS[key]] = json.dumps(value, sort_keys=True)
        elif key in _JSON_FIELDS.values():
            fields[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        else:
            raise ValueError(f"unknown agent description field {key!r}")
    return fields


CHAIN_KIND_PREFIX = "policy@"
"""Kinds ``policy@<chain>`` are created by the agent as it learns within a chain."""


def _wants_one_message(context: grpc.ServicerContext) -> bool:
    return ONE_MESSAGE_METADATA in (context.invocation_metadata() or ())


class EncodedSets:
    """The wire bytes of the chunks of the last ``capacity`` parameter sets served, so that
    repeated fetches of one version are encoded, checksummed and serialised once, not once
    per fetch.

    An entry is reused only while the store hands out the very same tensor objects at the
    same version (stored tensors are never mutated in place, see ``agents.params``); the
    entry keeps those tensors referenced, so their identities cannot be reused meanwhile.
    The least recently served set is dropped first. The bytes are immutable, so concurrent
    streams may send the same ones."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._sets: OrderedDict[str, tuple[int, list[Any], list[bytes]]] = OrderedDict()

    def chunks(self, kind: str, version: int, params: Mapping[str, Any],
               encode: Callable[[], list[bytes]]) -> list[bytes]:
        """The chunks of ``params`` (``kind`` at ``version``) as wire bytes: cached, or
        ``encode()``d and cached."""
        tensors = list(params.values())
        with self._lock:
            hit = self._sets.get(kind)
            if hit is not None and hit[0] == version and len(hit[1]) == len(tensors) and all(
                    a is b for a, b in zip(hit[1], tensors)):
                self._sets.move_to_end(kind)
                return hit[2]
        chunks = encode()
        if self.capacity > 0:
            with self._lock:
                self._sets[kind] = (version, tensors, chunks)
                self._sets.move_to_end(kind)
                while len(self._sets) > self.capacity:
                    self._sets.popitem(last=False)
        return chunks


class AgentService(agent_pb2_grpc.AgentServicer):
    """Serves one agent's ParameterStore and description over gRPC."""

    def __init__(
        self,
        store: ParameterStore,
        description: Mapping[str, Any],
        *,
        max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
        on_push: Callable[[str, int], None] | None = None,
        check_push: Callable[[str, Mapping[str, Any]], None] | None = None,
        metrics: FetchMetrics | None = None,
        checksum: str = FETCH_CHECKSUM,
        encoded_cache: int = 8,
        peer_access: str = "direct",
    ) -> None:
        self.store = store
        self.peer_access = peer_access  # which description fields each caller's role gets (services.auth.REDACTED)
        self._fields = _description_fields(description)
        self.max_push_bytes = max_push_bytes
        self.chunk_bytes = chunk_bytes
        self.on_push = on_push
        self.check_push = check_push  # the agent's own check of a pushed set (raises WireError), before it is applied
        self.metrics = metrics
        self.checksum = get_checksum(checksum).name  # the integrity check of served parameter sets
        self.encoded = EncodedSets(encoded_cache)  # how many encoded sets to keep (0: encode every fetch)

    def Describe(self, request: agent_pb2.DescribeRequest, context: grpc.ServicerContext) -> agent_pb2.AgentDescription:
        """The agent's description and current versions (less the fields the caller's role may
        not see in this peer-access mode); FAILED_PRECONDITION on a protocol mismatch."""
        if request.protocol_version not in (0, PROTOCOL_VERSION):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol version mismatch: client speaks {request.protocol_version}, "
                f"this agent speaks {PROTOCOL_VERSION}",
            )
        hidden = redacted_fields(self.peer_access, context)
        return agent_pb2.AgentDescription(
            protocol_version=PROTOCOL_VERSION, versions=self.store.versions(),
            **{k: v for k, v in self._fields.items() if k not in hidden}
        )

    def GetParameters(
        self, request: agent_pb2.GetParametersRequest, context: grpc.ServicerContext
    ) -> Iterator[tensor_pb2.ParameterChunk]:
        """Stream one kind in chunks, or one "not modified" chunk when its version < min_version
        (as messages: the generated registration; ``add_agent_service`` serves the bytes)."""
        for data in self.GetParametersWire(request, context):
            yield tensor_pb2.ParameterChunk.FromString(data)

    def GetParametersOne(self, request: agent_pb2.GetParametersRequest, context: grpc.ServicerContext) -> bytes:
        """``GetParametersWire`` for a call that asks for one message: the single chunk (OUT_OF_RANGE,
        before anything is sent, for a set of several)."""
        (chunk,) = self.GetParametersWire(request, context)
        return chunk

    def GetParametersWire(self, request: agent_pb2.GetParametersRequest, context: grpc.ServicerContext
                          ) -> Iterator[bytes]:
        """``GetParameters`` as the chunks' wire bytes, sent as they are: a version is
        encoded, checksummed and serialised once (``EncodedSets``), not per fetch."""
        start = time.perf_counter()
        try:
            check_kind(request.kind)
            wait = check_wait(request.wait_seconds)
        except WireError as err:
            abort(context, err)
        if request.min_version > 0 and wait > 0:
            # never past the caller's deadline (answer "not yet" just before it), never past the cap
            left = context.time_remaining()
            limit = MAX_WAIT_SECONDS if left is None else max(min(left, MAX_WAIT_SECONDS) - 0.5, 0.0)
            self.store.wait_for_version(request.kind, request.min_version, min(wait, limit))
        try:
            version, params = self.store.snapshot(request.kind)
        except UnknownKind as err:
            if request.kind.startswith(CHAIN_KIND_PREFIX) and request.min_version > 0:
                # a chain's parameters that this agent has not published yet: "not yet"
                yield not_modified(request.kind, 0).SerializeToString()
                return
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if version < request.min_version:
            yield not_modified(request.kind, version).SerializeToString()
        else:
            chunks = self.encoded.chunks(request.kind, version, params, lambda: encode_parameter_set(
                request.kind, version, params, chunk_bytes=self.chunk_bytes, checksum=self.checksum))
            if len(chunks) > 1 and _wants_one_message(context):
                context.abort(grpc.StatusCode.OUT_OF_RANGE, f"{request.kind!r} version {version} travels in "
                              f"{len(chunks)} chunks: fetch it as a stream")
            yield from chunks
        if self.metrics is not None:
            self.metrics.observe_fetch(time.perf_counter() - start)

    def PushParameters(
        self, request_iterator: Iterator[tensor_pb2.ParameterChunk], context: grpc.ServicerContext
    ) -> agent_pb2.PushResult:
        """Validate a whole pushed set, then compare-and-set it; all or nothing.

        The chunks' `version` field is informational; the store assigns the new version.
        """
        try:
            assembled = assemble_parameters(request_iterator, self.max_push_bytes)
            if assembled.params is None:
                raise WireError("a push must carry parameters, not a 'not modified' chunk")
            check_kind(assembled.kind)
            check_pushed_range(assembled.kind, assembled.params)
            if self.check_push is not None:
                self.check_push(assembled.kind, assembled.params)
            version = self.store.compare_and_set(assembled.kind, assembled.expected_version, assembled.params)
        except WireError as err:
            abort(context, err)
        except UnknownKind as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except StaleVersion as err:
            context.abort(err.code, str(err))
        if self.on_push is not None:
            self.on_push(assembled.kind, version)
        return agent_pb2.PushResult(kind=assembled.kind, version=version)


class _Registration:
    """Stands in for a server to capture the method handlers a generated
    ``add_*Servicer_to_server`` registers."""

    def __init__(self) -> None:
        self.service, self.handlers = "", {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)


class _AgentHandlers(grpc.GenericRpcHandler):
    """The Agent service's handlers by method, GetParameters picked per call: a unary
    handler (the one chunk and the status in one batch) for a call that asks for one message
    (``ONE_MESSAGE_METADATA``), a streaming one otherwise. Both send the same bytes."""

    def __init__(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler],
                 one_message: grpc.RpcMethodHandler) -> None:
        self._handlers = {f"/{service}/{name}": h for name, h in handlers.items()}
        self._fetch, self._one_message = f"/{service}/GetParameters", one_message

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method == self._fetch and ONE_MESSAGE_METADATA in (details.invocation_metadata or ()):
            return self._one_message
        return self._handlers.get(details.method)


def add_agent_service(service: AgentService, server: grpc.Server) -> None:
    """Register ``service`` on ``server`` as the generated ``add_AgentServicer_to_server``
    does, except that GetParameters sends the chunks' cached wire bytes as they are
    (``AgentService.GetParametersWire``, no serialiser) instead of a message per chunk, and
    answers a call that asks for one message (``services.client.AgentClient``) with a unary
    handler. The bytes on the wire are the same, so every client reads them as
    ParameterChunk messages."""
    captured = _Registration()
    agent_pb2_grpc.add_AgentServicer_to_server(service, captured)
    handlers = captured.handlers
    parse = agent_pb2.GetParametersRequest.FromString
    handlers["GetParameters"] = grpc.unary_stream_rpc_method_handler(service.GetParametersWire,
                                                                     request_deserializer=parse)
    one = grpc.unary_unary_rpc_method_handler(service.GetParametersOne, request_deserializer=parse)
    server.add_generic_rpc_handlers((_AgentHandlers(captured.service, handlers, one),))
