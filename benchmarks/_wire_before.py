"""The parameter codec as it was before the copy-once / CRC32C rewrite (services/wire.py at
commit 59b7407), kept only so that benchmarks/parameter_fetch.py can time it side by side
with the current codec in the same run. Not used by the league."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping

import grpc
import torch

from services.gen.league.v1 import tensor_pb2
from services.wire import CHUNK_BYTES, Assembled, WireError, _decode, _raw_bytes, nbytes


def chunk_parameters(
    kind: str,
    version: int,
    params: Mapping[str, torch.Tensor],
    expected_version: int = 0,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[tensor_pb2.ParameterChunk]:
    """Split a parameter set into chunks of at most chunk_bytes of payload; chunk 0 has the header."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    specs, pieces = [], []
    for name, t in params.items():
        if not name:
            raise WireError("a parameter tensor needs a non-empty name")
        wire, data = _raw_bytes(t)
        specs.append(tensor_pb2.TensorSpec(name=name, dtype=wire, shape=list(t.shape)))
        pieces.append(data)
    payload = memoryview(b"".join(pieces))
    del pieces
    total = len(payload)
    header = tensor_pb2.ParameterHeader(
        tensors=specs, total_bytes=total, sha256=hashlib.sha256(payload).hexdigest()
    )
    count = max(1, -(-total // chunk_bytes))
    for index in range(count):
        chunk = tensor_pb2.ParameterChunk(
            kind=kind,
            version=version,
            index=index,
            count=count,
            expected_version=expected_version,
            payload=bytes(payload[index * chunk_bytes : (index + 1) * chunk_bytes]),
        )
        if index == 0:
            chunk.header.CopyFrom(header)
        yield chunk


def _check_header(header: tensor_pb2.ParameterHeader, max_bytes: int) -> list[tuple[str, int, list[int], int]]:
    """Validate a header before any payload is buffered; return (name, dtype, shape, nbytes) per tensor."""
    if header.total_bytes > max_bytes:
        raise WireError(
            f"parameter set of {header.total_bytes} bytes exceeds the limit of {max_bytes} bytes",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    specs, seen, total = [], set(), 0
    for spec in header.tensors:
        if not spec.name:
            raise WireError("header has a tensor with an empty name")
        if spec.name in seen:
            raise WireError(f"header names tensor '{spec.name}' twice")
        seen.add(spec.name)
        size = nbytes(spec.dtype, spec.shape, f"tensor '{spec.name}'")
        specs.append((spec.name, spec.dtype, list(spec.shape), size))
        total += size
    if total != header.total_bytes:
        raise WireError(f"header tensor specs add up to {total} bytes but total_bytes is {header.total_bytes}")
    if len(header.sha256) != 64 or any(c not in "0123456789abcdef" for c in header.sha256.lower()):
        raise WireError(f"header sha256 {header.sha256!r} is not a hex SHA-256 digest")
    return specs


def assemble_parameters(chunks: Iterable[tensor_pb2.ParameterChunk], max_bytes: int) -> Assembled:
    """Validate and reassemble a chunk stream into a parameter set; WireError on any breach."""
    stream = iter(chunks)
    first = next(stream, None)
    if first is None:
        raise WireError("empty parameter stream: expected at least one chunk")
    if first.index != 0:
        raise WireError(f"first chunk has index {first.index}, expected 0")
    kind, version, count, expected_version = first.kind, first.version, first.count, first.expected_version
    if count == 0:
        if first.HasField("header") or first.payload:
            raise WireError("a 'not modified' chunk (count 0) must carry no header and no payload")
        if next(stream, None) is not None:
            raise WireError("a 'not modified' chunk must be the only chunk of its stream")
        return Assembled(kind, version, expected_version, None)
    if not first.HasField("header"):
        raise WireError("chunk 0 carries no header")
    header = first.header
    specs = _check_header(header, max_bytes)
    total = header.total_bytes

    buffer = bytearray()
    digest = hashlib.sha256()
    received = 0
    chunk: tensor_pb2.ParameterChunk | None = first
    while chunk is not None:
        if chunk.index != received:
            raise WireError(f"chunk index {chunk.index} out of order: expected {received}")
        if received >= count:
            raise WireError(f"more chunks than the announced count {count}")
        if (chunk.kind, chunk.version, chunk.count, chunk.expected_version) != (
            kind,
            version,
            count,
            expected_version,
        ):
            raise WireError(
                f"chunk {chunk.index} is (kind {chunk.kind!r}, version {chunk.version}, count {chunk.count}, "
                f"expected_version {chunk.expected_version}) but chunk 0 was (kind {kind!r}, version {version}, "
                f"count {count}, expected_version {expected_version})"
            )
        if received > 0 and chunk.HasField("header"):
            raise WireError(f"chunk {chunk.index} carries a header; only chunk 0 may")
        if count > 1 and not chunk.payload:
            raise WireError(f"chunk {chunk.index} of {count} is empty; only a single-chunk empty set may be")
        size = len(buffer) + len(chunk.payload)
        if size > max_bytes:
            raise WireError(
                f"parameter stream exceeds the limit of {max_bytes} bytes", grpc.StatusCode.RESOURCE_EXHAUSTED
            )
        if size > total:
            raise WireError(f"parameter stream carries more than the announced {total} bytes")
        buffer += chunk.payload
        digest.update(chunk.payload)
        received += 1
        chunk = next(stream, None)
    if received != count:
        raise WireError(f"stream ended after {received} of {count} chunks")
    if len(buffer) != total:
        raise WireError(f"received {len(buffer)} bytes, header announced {total}")
    if digest.hexdigest() != header.sha256.lower():
        raise WireError(f"sha256 mismatch: payload hashes to {digest.hexdigest()}, header says {header.sha256}")

    params: dict[str, torch.Tensor] = {}
    view, offset = memoryview(buffer), 0
    for name, wire, shape, size in specs:
        params[name] = _decode(wire, shape, view[offset : offset + size], f"tensor '{name}'")
        offset += size
    return Assembled(kind, version, expected_version, params)
