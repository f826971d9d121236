"""Tensor and parameter-set codec of the league wire contract (package league.v1).

Tensors travel as dtype + shape + raw C-order little-endian bytes. A parameter set of one
kind ("policy", "lr", "value") at one version travels as a stream of ParameterChunk messages
of about CHUNK_BYTES each: the payload is the concatenation of every tensor's bytes in dict
order; chunk 0 carries a header with the tensor specs, the total size and a checksum of the
whole payload (SHA-256 or CRC32C, see CHECKSUMS) so the receiver can validate the whole set
before applying any of it. The sender reads the tensors in place and copies each byte once
into its chunk; the receiver copies each byte once into freshly allocated tensors. No
sockets, no autograd.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import google_crc32c
import grpc
import numpy as np
import torch
from google.protobuf.message import DecodeError

from services.gen.league.v1 import tensor_pb2

CHUNK_BYTES = 1 << 20
ONE_MESSAGE_METADATA = ("league-fetch-one-message", "1")
"""Request metadata of a GetParameters call read as a unary call: the answer must be a single
chunk, so the agent refuses a set of several chunks with OUT_OF_RANGE before it sends
anything (a unary reader of several messages would wait for its deadline)."""
Buffer = Union[bytes, memoryview, np.ndarray]  # a payload: bytes, or a view of received bytes

DType = tensor_pb2.DType
_BY_TORCH: dict[torch.dtype, int] = {
    torch.float32: tensor_pb2.FLOAT32,
    torch.float64: tensor_pb2.FLOAT64,
    torch.int64: tensor_pb2.INT64,
    torch.int32: tensor_pb2.INT32,
    torch.bool: tensor_pb2.BOOL,
}
_TORCH: dict[int, torch.dtype] = {wire: t for t, wire in _BY_TORCH.items()}
# Little-endian wire layout of each dtype (bool is one byte, 0 or 1).
_NUMPY_WIRE: dict[int, np.dtype] = {
    tensor_pb2.FLOAT32: np.dtype("<f4"),
    tensor_pb2.FLOAT64: np.dtype("<f8"),
    tensor_pb2.INT64: np.dtype("<i8"),
    tensor_pb2.INT32: np.dtype("<i4"),
    tensor_pb2.BOOL: np.dtype("?"),
}


class WireError(ValueError):
    """A message that breaks the wire contract; `code` is the gRPC status to answer with."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Assembled:
    """A parameter set received as chunks; params is None for a "not modified" answer."""

    kind: str
    version: int
    expected_version: int
    params: dict[str, torch.Tensor] | None

    @property
    def not_modified(self) -> bool:
        """True when the sender answered "not modified" (the min_version fast path)."""
        return self.params is None


def dtype_name(wire_dtype: int) -> str:
    """Readable name of a wire dtype, also for unknown values (for error messages)."""
    try:
        return tensor_pb2.DType.Name(wire_dtype)
    except ValueError:
        return f"DType({wire_dtype})"


def wire_dtype(dtype: torch.dtype) -> int:
    """The wire dtype of a torch dtype; WireError for one the contract does not carry."""
    try:
        return _BY_TORCH[dtype]
    except KeyError:
        supported = ", ".join(str(d) for d in _BY_TORCH)
        raise WireError(f"dtype {dtype} cannot be sent; supported: {supported}") from None


def torch_dtype(wire: int) -> torch.dtype:
    """The torch dtype of a wire dtype; WireError for an unknown or unspecified one."""
    try:
        return _TORCH[wire]
    except KeyError:
        raise WireError(f"unknown tensor dtype {dtype_name(wire)}") from None


def _numel(shape: Iterable[int], what: str) -> int:
    """Element count of a shape, rejecting negative dimensions."""
    dims = list(shape)
    if any(d < 0 for d in dims):
        raise WireError(f"{what} has a negative dimension in shape {dims}")
    return math.prod(dims)


def nbytes(wire: int, shape: Iterable[int], what: str = "tensor") -> int:
    """Size in bytes on the wire of a tensor of this dtype and shape (validated)."""
    if wire not in _NUMPY_WIRE:
        raise WireError(f"{what} has unknown dtype {dtype_name(wire)}")
    return _numel(shape, what) * _NUMPY_WIRE[wire].itemsize


def _raw_bytes(t: torch.Tensor) -> tuple[int, bytes]:
    """(wire dtype, C-order little-endian bytes) of a tensor, detached from autograd."""
    wire = wire_dtype(t.dtype)
    array = t.detach().cpu().contiguous().numpy()
    return wire, array.astype(_NUMPY_WIRE[wire], copy=False).tobytes(order="C")


def encode_tensor(t: torch.Tensor) -> tensor_pb2.Tensor:
    """Encode a tensor as a Tensor message (dtype, shape, raw little-endian bytes)."""
    wire, data = _raw_bytes(t)
    return tensor_pb2.Tensor(dtype=wire, shape=list(t.shape), data=data)


def _decode(wire: int, shape: list[int], data: bytes | memoryview, what: str) -> torch.Tensor:
    """Decode raw bytes into a fresh, writable, native-endian tensor that aliases nothing."""
    expected = nbytes(wire, shape, what)
    if len(data) != expected:
        raise WireError(
            f"{what}: {len(data)} bytes of data, but dtype {dtype_name(wire)} and shape {shape} need {expected}"
        )
    array = np.frombuffer(data, dtype=_NUMPY_WIRE[wire])
    if wire == tensor_pb2.BOOL and expected and np.frombuffer(data, dtype=np.uint8).max() > 1:
        raise WireError(f"{what}: bool data holds bytes other than 0 and 1")
    native = array.astype(array.dtype.newbyteorder("="), copy=True).reshape(shape)
    return torch.from_numpy(native)


def decode_tensor(msg: tensor_pb2.Tensor, name: str = "tensor") -> torch.Tensor:
    """Decode and validate a Tensor message (known dtype, sane shape, exact byte length)."""
    return _decode(msg.dtype, list(msg.shape), msg.data, name)


def not_modified(kind: str, version: int) -> tensor_pb2.ParameterChunk:
    """The single "not modified" chunk (count == 0) carrying the sender's current version."""
    return tensor_pb2.ParameterChunk(kind=kind, version=version, index=0, count=0)


@dataclass(frozen=True)
class Checksum:
    """A whole-payload integrity check: a streaming state fed each chunk's payload once, and
    the header field that carries its value."""

    name: str
    new: Callable[[], Any]  # a fresh state with .update(bytes)
    value: Callable[[Any], str | int]  # the finished value, as the header field holds it
    is_set: Callable[[tensor_pb2.ParameterHeader], bool]  # whether a header carries this check
    field: str


def _crc32c_value(state: Any) -> int:
    return int.from_bytes(state.digest(), "big")


CHECKSUMS: dict[str, Checksum] = {
    # cryptographic, about 1-2 GB/s here: the default of chunk_parameters (pushes)
    "sha256": Checksum("sha256", hashlib.sha256, lambda h: h.hexdigest(), lambda hd: bool(hd.sha256), "sha256"),
    # hardware CRC32C (SSE4.2), an order of magnitude faster: what the fetch path sends. The
    # header travels in the same stream as the payload, so a cryptographic hash protects
    # against nothing more than a CRC does here; both catch corruption in transit.
    "crc32c": Checksum("crc32c", google_crc32c.Checksum, _crc32c_value, lambda hd: hd.HasField("crc32c"),
                       "crc32c"),
}
FETCH_CHECKSUM = "crc32c"


def get_checksum(name: str) -> Checksum:
    """The checksum called ``name``; ValueError naming the known ones otherwise."""
    try:
        return CHECKSUMS[name]
    except KeyError:
        raise ValueError(f"unknown checksum {name!r}; known: {', '.join(CHECKSUMS)}") from None


def _byte_view(t: torch.Tensor) -> tuple[int, memoryview]:
    """(wire dtype, flat byte view of the tensor's little-endian data): no copy for a
    contiguous CPU tensor on a little-endian host."""
    wire = wire_dtype(t.dtype)
    array = t.detach().cpu().contiguous().numpy().astype(_NUMPY_WIRE[wire], copy=False)
    return wire, memoryview(array.reshape(-1).view(np.uint8))


def _pieces(views: list[memoryview], chunk_bytes: int) -> list[list[memoryview]]:
    """The concatenation of ``views`` cut into pieces of ``chunk_bytes`` (the last may be
    shorter; one empty piece for an empty payload), each as the views it spans: no copy."""
    pieces: list[list[memoryview]] = []
    pending: list[memoryview] = []
    size = 0
    for view in views:
        pos = 0
        while pos < len(view):
            take = min(chunk_bytes - size, len(view) - pos)
            pending.append(view[pos : pos + take])
            size, pos = size + take, pos + take
            if size == chunk_bytes:
                pieces.append(pending)
                pending, size = [], 0
    if size or not pieces:
        pieces.append(pending)
    return pieces


def _prepare(params: Mapping[str, torch.Tensor], chunk_bytes: int, checksum: str
             ) -> tuple[tensor_pb2.ParameterHeader, list[list[memoryview]]]:
    """The header (specs, size, ``checksum`` of the whole payload) and the payload pieces of
    one chunk each, read in place from the tensors' memory."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    check = get_checksum(checksum)
    specs, views = [], []
    for name, t in params.items():
        if not name:
            raise WireError("a parameter tensor needs a non-empty name")
        wire, view = _byte_view(t)
        specs.append(tensor_pb2.TensorSpec(name=name, dtype=wire, shape=list(t.shape)))
        views.append(view)
    pieces = _pieces(views, chunk_bytes)
    state, total = check.new(), 0
    for piece in pieces:
        for view in piece:
            state.update(np.frombuffer(view, dtype=np.uint8))  # CRC32C takes arrays, not memoryviews
            total += len(view)
    header = tensor_pb2.ParameterHeader(tensors=specs, total_bytes=total)
    setattr(header, check.field, check.value(state))
    return header, pieces


def chunk_parameters(
    kind: str,
    version: int,
    params: Mapping[str, torch.Tensor],
    expected_version: int = 0,
    chunk_bytes: int = CHUNK_BYTES,
    checksum: str = "sha256",
) -> Iterator[tensor_pb2.ParameterChunk]:
    """Split a parameter set into chunks of at most chunk_bytes of payload; chunk 0 has the
    header with the ``checksum`` (a name in CHECKSUMS) of the whole payload.

    The tensors' memory is read in place, checksummed once, and each payload byte is copied
    once (into its chunk's bytes), before the first chunk goes out."""
    header, pieces = _prepare(params, chunk_bytes, checksum)
    payloads = [bytes(piece[0]) if len(piece) == 1 else b"".join(piece) for piece in pieces]
    del pieces
    count = len(payloads)
    for index in range(count):
        chunk = tensor_pb2.ParameterChunk(
            kind=kind,
            version=version,
            index=index,
            count=count,
            expected_version=expected_version,
            payload=payloads[index],
        )
        payloads[index] = b""  # the message holds the bytes now
        if index == 0:
            chunk.header.CopyFrom(header)
        yield chunk


def encode_parameter_set(
    kind: str,
    version: int,
    params: Mapping[str, torch.Tensor],
    expected_version: int = 0,
    chunk_bytes: int = CHUNK_BYTES,
    checksum: str = "sha256",
) -> list[bytes]:
    """The wire bytes of the chunks ``chunk_parameters`` yields, byte for byte what protobuf
    serialises for them, built without a message per chunk: each chunk is its small fields
    (serialised by protobuf), the payload's tag and length, the payload copied once straight
    from the tensors' memory, and ``expected_version`` (the one field numbered after it)."""
    header, pieces = _prepare(params, chunk_bytes, checksum)
    count = len(pieces)
    tail = tensor_pb2.ParameterChunk(expected_version=expected_version).SerializeToString()
    encoded = []
    for index, piece in enumerate(pieces):
        head = tensor_pb2.ParameterChunk(kind=kind, version=version, index=index, count=count)
        if index == 0:
            head.header.CopyFrom(header)
        size = sum(map(len, piece))
        tag = _varint(_PAYLOAD_FIELD << 3 | _LEN) + _varint(size) if size else b""  # proto3 omits empty bytes
        encoded.append(b"".join([head.SerializeToString(), tag, *piece, tail]))
    return encoded


# ParameterChunk.payload as it appears on the wire: field number and length-delimited type.
_PAYLOAD_FIELD = tensor_pb2.ParameterChunk.DESCRIPTOR.fields_by_name["payload"].number
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> int:
    """Position just past the base-128 varint starting at ``pos``; IndexError if it runs
    past the end, ValueError if it is longer than 10 bytes."""
    for end in range(pos, pos + 10):
        if data[end] < 0x80:
            return end + 1
    raise ValueError("varint longer than 10 bytes")


def _varint_value(data: bytes, pos: int, end: int) -> int:
    return sum((data[i] & 0x7F) << (7 * (i - pos)) for i in range(pos, end))


def _payload_span(data: bytes) -> tuple[int, int, int] | None:
    """(start of the payload field's tag, start of its bytes, end) if ``data`` is a
    well-formed message of plain fields with exactly one payload field; None otherwise
    (the caller then leaves the message to the protobuf parser)."""
    pos, span = 0, None
    try:
        while pos < len(data):
            tag_end = _read_varint(data, pos)
            tag = _varint_value(data, pos, tag_end)
            field, wire_type = tag >> 3, tag & 7
            if wire_type == _VARINT:
                end = _read_varint(data, tag_end)
            elif wire_type == _LEN:
                len_end = _read_varint(data, tag_end)
                end = len_end + _varint_value(data, tag_end, len_end)
                if field == _PAYLOAD_FIELD:
                    if span is not None:
                        return None  # a repeated singular field: the parser's rules apply
                    span = (pos, len_end, end)
            elif wire_type == _FIXED64:
                end = tag_end + 8
            elif wire_type == _FIXED32:
                end = tag_end + 4
            else:
                return None  # groups: not ours to walk
            if end > len(data):
                return None
            pos = end
    except (IndexError, ValueError):
        return None
    return span


def split_chunk(data: bytes) -> tuple[tensor_pb2.ParameterChunk, np.ndarray]:
    """A serialised ParameterChunk as (the message without its payload, the payload as a
    read-only uint8 view of ``data``): the payload is not copied. Everything but the payload
    field is parsed by protobuf; a message this walk does not recognise as plain fields
    with one payload is parsed whole (WireError if protobuf refuses it)."""
    span = _payload_span(data)
    try:
        if span is None:
            chunk = tensor_pb2.ParameterChunk.FromString(data)
            return chunk, np.frombuffer(chunk.payload, dtype=np.uint8)
        tag, start, end = span
        chunk = tensor_pb2.ParameterChunk.FromString(data[:tag] + data[end:])
    except DecodeError as err:
        raise WireError(f"malformed parameter chunk: {err}") from None
    return chunk, np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)


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
    if header.sha256 and (len(header.sha256) != 64 or any(c not in "0123456789abcdef" for c in header.sha256.lower())):
        raise WireError(f"header sha256 {header.sha256!r} is not a hex SHA-256 digest")
    if not any(check.is_set(header) for check in CHECKSUMS.values()):
        raise WireError(f"header carries no checksum (one of {', '.join(CHECKSUMS)})")
    return specs


class _TensorSink:
    """Fresh tensors of the header's specs, filled in order from consecutive payload pieces:
    each received byte is copied once, straight into its tensor's memory."""

    def __init__(self, specs: list[tuple[str, int, list[int], int]]) -> None:
        self.params: dict[str, torch.Tensor] = {}
        self._views: list[memoryview] = []
        for name, wire, shape, _ in specs:
            t = torch.empty(shape, dtype=torch_dtype(wire))
            self.params[name] = t
            if t.numel():
                self._views.append(memoryview(t.numpy().reshape(-1).view(np.uint8)))
        self._tensor, self._pos = 0, 0

    def write(self, data: bytes | memoryview | np.ndarray) -> None:
        """Copy the next ``len(data)`` bytes of the payload into place (the caller checks sizes)."""
        src, done = memoryview(data), 0
        while done < len(src):
            dest = self._views[self._tensor]
            take = min(len(dest) - self._pos, len(src) - done)
            dest[self._pos : self._pos + take] = src[done : done + take]
            done, self._pos = done + take, self._pos + take
            if self._pos == len(dest):
                self._tensor, self._pos = self._tensor + 1, 0

    def finish(self) -> dict[str, torch.Tensor]:
        """The tensors in native byte order; WireError for bool data other than 0 and 1."""
        for name, t in self.params.items():
            if t.dtype == torch.bool and t.numel() and int(t.view(torch.uint8).max()) > 1:
                raise WireError(f"tensor '{name}': bool data holds bytes other than 0 and 1")
            if sys.byteorder == "big" and t.element_size() > 1:
                t.numpy().byteswap(inplace=True)
        return self.params


def assemble_parameters(chunks: Iterable[tensor_pb2.ParameterChunk], max_bytes: int) -> Assembled:
    """Validate and reassemble a chunk stream into a parameter set; WireError on any breach.

    Every checksum the header carries is checked before the tensors are handed out."""
    # every read of a bytes field makes a new copy: each payload is read once
    return _assemble(((chunk, chunk.payload) for chunk in chunks), max_bytes)


def assemble_wire(chunks: Iterable[bytes], max_bytes: int) -> Assembled:
    """``assemble_parameters`` for chunks as they arrive on the wire (serialised
    ParameterChunk messages, e.g. from ``AgentClient.GetParametersWire``): each payload is
    read in place from the received bytes (checksummed there, then copied once into its
    tensor) instead of being copied twice by a protobuf parse and the field read."""
    return _assemble(map(split_chunk, chunks), max_bytes)


def _assemble(pieces: Iterable[tuple[tensor_pb2.ParameterChunk, Buffer]], max_bytes: int) -> Assembled:
    """The checks of ``assemble_parameters`` over (chunk, its payload) pairs."""
    stream = iter(pieces)
    first, first_payload = next(stream, (None, b""))
    if first is None:
        raise WireError("empty parameter stream: expected at least one chunk")
    if first.index != 0:
        raise WireError(f"first chunk has index {first.index}, expected 0")
    kind, version, count, expected_version = first.kind, first.version, first.count, first.expected_version
    if count == 0:
        if first.HasField("header") or len(first_payload):
            raise WireError("a 'not modified' chunk (count 0) must carry no header and no payload")
        if next(stream, None) is not None:
            raise WireError("a 'not modified' chunk must be the only chunk of its stream")
        return Assembled(kind, version, expected_version, None)
    if not first.HasField("header"):
        raise WireError("chunk 0 carries no header")
    header = first.header
    specs = _check_header(header, max_bytes)
    total = header.total_bytes
    checks = [(check, check.new()) for check in CHECKSUMS.values() if check.is_set(header)]

    sink = _TensorSink(specs)
    size = 0
    received = 0
    chunk: tensor_pb2.ParameterChunk | None = first
    payload = first_payload
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
        if count > 1 and not len(payload):
            raise WireError(f"chunk {chunk.index} of {count} is empty; only a single-chunk empty set may be")
        size += len(payload)
        if size > max_bytes:
            raise WireError(
                f"parameter stream exceeds the limit of {max_bytes} bytes", grpc.StatusCode.RESOURCE_EXHAUSTED
            )
        if size > total:
            raise WireError(f"parameter stream carries more than the announced {total} bytes")
        sink.write(payload)
        for _, state in checks:
            state.update(payload)
        received += 1
        chunk, payload = next(stream, (None, b""))
    if received != count:
        raise WireError(f"stream ended after {received} of {count} chunks")
    if size != total:
        raise WireError(f"received {size} bytes, header announced {total}")
    for check, state in checks:
        got, want = check.value(state), getattr(header, check.field)
        if (got.lower() if isinstance(got, str) else got) != (want.lower() if isinstance(want, str) else want):
            raise WireError(f"{check.name} mismatch: payload checks to {got}, header says {want}")
    return Assembled(kind, version, expected_version, sink.finish())


def check_structure(what: str, expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> None:
    """WireError unless ``got`` has exactly ``expected``'s tensor names, shapes and dtypes."""
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if missing or extra:
        raise WireError(f"{what} has the wrong tensors: missing {missing[:8]}, unexpected {extra[:8]}")
    for name, want in expected.items():
        t = got[name]
        if t.shape != want.shape:
            raise WireError(f"{what}: tensor '{name}' has shape {list(t.shape)}, expected {list(want.shape)}")
        if t.dtype != want.dtype:
            raise WireError(f"{what}: tensor '{name}' has dtype {t.dtype}, expected {want.dtype}")


def check_finite(params: Mapping[str, torch.Tensor], what: str = "parameter set") -> None:
    """Raise WireError naming the first floating tensor that holds NaN or Inf."""
    for name, t in params.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise WireError(f"{what} contains NaN/Inf in tensor '{name}'")
