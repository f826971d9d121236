"""Client helpers: fetch and push an agent's whole parameter sets over chunk streams, and
reach a league server that may not be up yet."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import grpc
import torch

from services.gen.league.v1 import agent_pb2, agent_pb2_grpc
from services.pki import Credentials
from services.server import PROTOCOL_VERSION, channel
from services.wire import (
    CHUNK_BYTES,
    ONE_MESSAGE_METADATA,
    Assembled,
    assemble_parameters,
    assemble_wire,
    chunk_parameters,
)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_FETCH_BYTES = 256 * 1024 * 1024

log = logging.getLogger("league.client")


class Unreachable(ConnectionError):
    """Nothing accepted a connection at the address within the allowed wait."""


def connect(address: str, total_wait: float, what: str = "the referee",
            credentials: Credentials | None = None) -> grpc.Channel:
    """A channel to ``address`` (mutual TLS with ``credentials``, else plaintext) once it
    accepts connections. While it retries it logs "waiting for <what> at <address>" (then
    every 10 s); after ``total_wait`` seconds it raises Unreachable with a one-line message."""
    ch = channel(address, credentials)
    start = time.monotonic()
    said = -10.0
    while True:
        left = start + total_wait - time.monotonic()
        try:
            grpc.channel_ready_future(ch).result(timeout=max(0.05, min(1.0, left)))
            return ch
        except grpc.FutureTimeoutError:
            waited = time.monotonic() - start
            if waited >= total_wait:
                ch.close()
                hint = ("" if credentials is not None else
                        " (a secured league refuses plaintext: give --credentials DIR)")
                raise Unreachable(f"no answer from {what} at {address} after {total_wait:g}s{hint}") from None
            if waited - said >= 10.0:
                log.warning("waiting for %s at %s (up to %gs)", what, address, total_wait)
                said = waited


class AgentClient(agent_pb2_grpc.AgentStub):
    """The generated Agent stub plus two readings of the same GetParameters RPC that hand
    over the chunks as the bytes that arrived (no protobuf parse per chunk), so that
    ``fetch_parameters`` reads each payload in place and copies it once, into its tensor:

    * ``GetParametersOne``, a unary call sent with ``ONE_MESSAGE_METADATA``: for a set that
      fits one chunk (and "not modified"), it saves the stream's per-call thread and
      handoffs; the agent refuses a larger set with OUT_OF_RANGE before sending anything;
    * ``GetParametersWire``, the stream, for sets of several chunks.

    ``streamed_kinds`` remembers the kinds last refused as one message, so that they go
    straight to the stream until a fetch finds them small again."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        method = "/league.v1.Agent/GetParameters"
        serialize = agent_pb2.GetParametersRequest.SerializeToString
        self.GetParametersOne = channel.unary_unary(method, request_serializer=serialize,
                                                    response_deserializer=None, _registered_method=True)
        self.GetParametersWire = channel.unary_stream(method, request_serializer=serialize,
                                                      response_deserializer=None, _registered_method=True)
        self.streamed_kinds: set[str] = set()

    def fetch(self, request: agent_pb2.GetParametersRequest, timeout: float, max_bytes: int) -> Assembled:
        """One fetch: as one message unless the kind is known to need a stream."""
        if request.kind not in self.streamed_kinds:
            try:
                data = self.GetParametersOne(request, timeout=timeout, metadata=(ONE_MESSAGE_METADATA,))
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.OUT_OF_RANGE:
                    raise
                self.streamed_kinds.add(request.kind)
            else:
                return assemble_wire((data,), max_bytes)
        call = self.GetParametersWire(request, timeout=timeout)
        try:
            got = assemble_wire(_counted(call, counter := [0]), max_bytes)
        except BaseException:
            call.cancel()
            raise
        if counter[0] <= 1:
            self.streamed_kinds.discard(request.kind)
        return got


def _counted(chunks, counter: list[int]):
    for chunk in chunks:
        counter[0] += 1
        yield chunk


def describe(stub: agent_pb2_grpc.AgentStub, timeout: float = DEFAULT_TIMEOUT) -> agent_pb2.AgentDescription:
    """The agent's description, announcing this side's protocol version."""
    return stub.Describe(agent_pb2.DescribeRequest(protocol_version=PROTOCOL_VERSION), timeout=timeout)


def fetch_parameters(
    stub: agent_pb2_grpc.AgentStub,
    kind: str,
    min_version: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_FETCH_BYTES,
    wait_seconds: float = 0.0,
) -> Assembled:
    """Fetch one parameter kind; `.params` is None when the agent's version is below min_version.

    With an ``AgentClient`` the chunks are assembled from their wire bytes (``assemble_wire``;
    a set of one chunk read as a unary call, see ``AgentClient``), with a plain generated stub
    from parsed messages; both check the same contract.
    Raises grpc.RpcError for a status from the agent and WireError for a malformed stream
    (the call is then cancelled).
    """
    request = agent_pb2.GetParametersRequest(kind=kind, min_version=min_version, wait_seconds=wait_seconds)
    if isinstance(stub, AgentClient):
        return stub.fetch(request, timeout, max_bytes)
    call = stub.GetParameters(request, timeout=timeout)
    try:
        return assemble_parameters(call, max_bytes)
    except BaseException:
        call.cancel()
        raise


def push_parameters(
    stub: agent_pb2_grpc.AgentStub,
    kind: str,
    params: Mapping[str, torch.Tensor],
    expected_version: int,
    timeout: float = DEFAULT_TIMEOUT,
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Push a parameter set replacing version expected_version; return the agent's new version.

    Raises grpc.RpcError: ABORTED if the version moved on, INVALID_ARGUMENT for mismatched
    or non-finite tensors, RESOURCE_EXHAUSTED if the set is over the agent's limit.
    """
    chunks = chunk_parameters(
        kind, expected_version + 1, params, expected_version=expected_version, chunk_bytes=chunk_bytes
    )
    return stub.PushParameters(chunks, timeout=timeout).version
