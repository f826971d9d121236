"""The wire-bytes side of the parameter codec: ``split_chunk`` reads a serialised chunk's
payload in place and must agree with the protobuf parser on every input (well-formed in any
field order, with unknown or repeated fields, and every truncation), and ``assemble_wire``
checks the same contract as ``assemble_parameters``."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from google.protobuf.message import DecodeError

from services.gen.league.v1 import tensor_pb2
from services.wire import (
    WireError,
    assemble_parameters,
    assemble_wire,
    chunk_parameters,
    encode_parameter_set,
    not_modified,
    split_chunk,
)

pytestmark = pytest.mark.timeout(60)


def encode_chunks(chunks) -> list[bytes]:
    """Protobuf's own serialisation of each chunk: what the hand-built wire bytes must equal."""
    return [chunk.SerializeToString() for chunk in chunks]

MIB = 1 << 20


def _params() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {"w": torch.randn(300, generator=g), "n": torch.arange(7, dtype=torch.int64),
            "m": torch.rand(5, generator=g) > 0.5}


def _field(number: int, wire_type: int, body: bytes) -> bytes:
    """One encoded field (tag, then body; a length prefix for wire type 2)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | wire_type) + (varint(len(body)) + body if wire_type == 2 else body)


def _agrees_with_protobuf(data: bytes) -> None:
    """split_chunk(data) is protobuf's parse of data (message and payload), or both refuse it."""
    try:
        want = tensor_pb2.ParameterChunk.FromString(data)
    except DecodeError:
        with pytest.raises(WireError, match="malformed parameter chunk"):
            split_chunk(data)
        return
    chunk, payload = split_chunk(data)
    assert isinstance(payload, np.ndarray) and not payload.flags.writeable
    assert payload.tobytes() == want.payload
    chunk.payload = want.payload
    assert chunk == want


def test_split_chunk_reads_the_payload_in_place() -> None:
    data = encode_chunks(chunk_parameters("policy", 3, _params(), expected_version=2, checksum="crc32c"))[0]
    chunk, payload = split_chunk(data)
    assert chunk.payload == b"" and (chunk.kind, chunk.version, chunk.expected_version) == ("policy", 3, 2)
    assert chunk.header.HasField("crc32c")
    assert payload.base is data  # a view of the received bytes, not a copy
    _agrees_with_protobuf(data)


def test_split_chunk_agrees_with_protobuf_on_any_field_order_and_unknown_fields() -> None:
    header = tensor_pb2.ParameterHeader(total_bytes=5, crc32c=7).SerializeToString()
    fields = [_field(1, 2, b"policy"), _field(2, 0, b"\x96\x01"), _field(4, 0, b"\x01"), _field(5, 2, header),
              _field(6, 2, b"\x00\x01\x02\x03\x04"), _field(7, 0, b"\x05")]
    unknown = [_field(9, 5, b"abcd"), _field(10, 1, b"12345678"), _field(11, 2, b"zz"), _field(12, 0, b"\x7f")]
    for order in (fields, fields[::-1], fields[5:] + fields[:5], fields[:3] + unknown + fields[3:]):
        _agrees_with_protobuf(b"".join(order))
    # a repeated payload (the last one wins) and a group are left to protobuf
    _agrees_with_protobuf(b"".join(fields) + _field(6, 2, b"later"))
    _agrees_with_protobuf(b"".join(fields) + bytes([13 << 3 | 3]) + _field(1, 0, b"\x01") + bytes([13 << 3 | 4]))
    # the payload field with another wire type, and a field number 0, are refused like protobuf does
    _agrees_with_protobuf(b"".join(fields[:4]) + _field(6, 0, b"\x01"))
    _agrees_with_protobuf(_field(0, 0, b"\x01") + b"".join(fields))


def test_split_chunk_agrees_with_protobuf_on_every_truncation_and_bit_flip() -> None:
    """Exhaustive over a small chunk: every prefix, and every single-bit flip."""
    data = encode_chunks(chunk_parameters("policy", 300, _params(), chunk_bytes=40, checksum="crc32c"))[0]
    for end in range(len(data) + 1):
        _agrees_with_protobuf(data[:end])
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            _agrees_with_protobuf(bytes(flipped))


@pytest.mark.parametrize("chunk_bytes", [1, 13, 64, MIB])
def test_assemble_wire_equals_assemble_parameters(chunk_bytes: int) -> None:
    params = _params()
    chunks = list(chunk_parameters("lr", 4, params, expected_version=3, chunk_bytes=chunk_bytes, checksum="crc32c"))
    a = assemble_wire(encode_chunks(chunks), max_bytes=MIB)
    b = assemble_parameters(chunks, max_bytes=MIB)
    assert (a.kind, a.version, a.expected_version) == (b.kind, b.version, b.expected_version) == ("lr", 4, 3)
    assert a.params is not None and list(a.params) == list(params)
    for name, t in params.items():
        assert a.params[name].dtype == t.dtype and torch.equal(a.params[name], t), name
    assert assemble_wire([not_modified("lr", 9).SerializeToString()], max_bytes=MIB).not_modified


def test_received_tensors_do_not_alias_the_received_bytes() -> None:
    data = encode_chunks(chunk_parameters("policy", 1, {"a": torch.arange(6, dtype=torch.float32)}, checksum="crc32c"))
    out = assemble_wire(data, max_bytes=MIB).params
    assert out is not None
    out["a"] += 1  # writable
    assert torch.equal(assemble_wire(data, max_bytes=MIB).params["a"], torch.arange(6, dtype=torch.float32))


def test_a_bit_flipped_truncated_or_missing_wire_chunk_is_refused() -> None:
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(3 * 1024 // 4 + 5, generator=g)}
    base = encode_chunks(chunk_parameters("policy", 2, params, chunk_bytes=1024, checksum="crc32c"))
    assert len(base) == 4 and assemble_wire(base, max_bytes=MIB).params is not None
    for index in range(4):
        flipped = list(base)
        raw = bytearray(flipped[index])
        raw[-5] ^= 0x04  # inside the payload (the last field of the message; chunk 3 holds 20 bytes)
        flipped[index] = bytes(raw)
        with pytest.raises(WireError, match="crc32c mismatch") as e:
            assemble_wire(flipped, max_bytes=MIB)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    for cut in (1, 100):  # a chunk cut short: its payload no longer fits, protobuf refuses it
        truncated = list(base)
        truncated[1] = truncated[1][:-cut]
        with pytest.raises(WireError, match="malformed parameter chunk"):
            assemble_wire(truncated, max_bytes=MIB)
    with pytest.raises(WireError, match="stream ended after 3 of 4 chunks"):
        assemble_wire(base[:3], max_bytes=MIB)


@pytest.mark.parametrize("checksum", ["sha256", "crc32c"])
@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 300, MIB])
def test_encode_parameter_set_is_protobufs_serialisation_byte_for_byte(checksum: str, chunk_bytes: int) -> None:
    params = {**_params(), "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(3, 0),
              "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t()}
    for expected_version in (0, 3, 1 << 40):
        want = encode_chunks(chunk_parameters("lr", 300, params, expected_version=expected_version,
                                              chunk_bytes=chunk_bytes, checksum=checksum))
        got = encode_parameter_set("lr", 300, params, expected_version=expected_version, chunk_bytes=chunk_bytes,
                                   checksum=checksum)
        assert got == want
    for empty in ({}, {"e": torch.zeros(0)}):  # one chunk without a payload field
        assert encode_parameter_set("p", 1, empty, checksum=checksum) == encode_chunks(
            chunk_parameters("p", 1, empty, checksum=checksum))
