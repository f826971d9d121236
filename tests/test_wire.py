"""The tensor and parameter-set codec: round trips and every contract violation's status code."""

from __future__ import annotations

import hashlib
import struct

import grpc
import pytest
import torch

from services.gen.league.v1 import tensor_pb2
from services.wire import (
    CHUNK_BYTES,
    WireError,
    assemble_parameters,
    check_finite,
    chunk_parameters,
    decode_tensor,
    encode_tensor,
    not_modified,
)

pytestmark = pytest.mark.timeout(30)

MIB = 1 << 20
DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool]


def _sample(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A deterministic tensor of any supported dtype, with extreme values for floats and ints."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        t = torch.randn(shape, generator=g, dtype=dtype)
        if t.numel() >= 3:
            t.view(-1)[:3] = torch.tensor([torch.finfo(dtype).max, torch.finfo(dtype).tiny, -0.0], dtype=dtype)
        return t
    info = torch.iinfo(dtype)
    t = torch.randint(-1000, 1000, shape, generator=g, dtype=dtype)
    if t.numel() >= 2:
        t.view(-1)[:2] = torch.tensor([info.min, info.max], dtype=dtype)
    return t


def _params(*sizes_bytes: int) -> dict[str, torch.Tensor]:
    return {f"w{i}": _sample(torch.float32, (n // 4,), seed=i) for i, n in enumerate(sizes_bytes)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _code(excinfo: pytest.ExceptionInfo[WireError]) -> grpc.StatusCode:
    return excinfo.value.code


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 0, 2), (4, 5, 6)])
def test_tensor_round_trip(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    t = _sample(dtype, shape)
    msg = tensor_pb2.Tensor.FromString(encode_tensor(t).SerializeToString())
    out = decode_tensor(msg)
    assert out.dtype == dtype and out.shape == t.shape and torch.equal(out, t)
    out.fill_(0)  # writable and independent of the message
    assert torch.equal(decode_tensor(msg), t)


def test_encode_is_little_endian_c_order_and_detached() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t().requires_grad_(True)  # non-contiguous, grad
    msg = encode_tensor(t)
    assert list(msg.shape) == [3, 2]
    assert msg.data == struct.pack("<6f", 0.0, 3.0, 1.0, 4.0, 2.0, 5.0)
    assert encode_tensor(torch.tensor([1.0], dtype=torch.float64)).data == struct.pack("<d", 1.0)
    assert encode_tensor(torch.tensor([1], dtype=torch.int32)).data == b"\x01\x00\x00\x00"


def test_decode_rejects_bad_tensors() -> None:
    with pytest.raises(WireError, match="unknown tensor dtype|unknown dtype") as e:
        decode_tensor(tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_UNSPECIFIED, shape=[1], data=b"\0"))
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(WireError, match="unknown dtype"):
        decode_tensor(tensor_pb2.Tensor(dtype=99, shape=[1], data=b"\0"))
    with pytest.raises(WireError, match="negative"):
        decode_tensor(tensor_pb2.Tensor(dtype=tensor_pb2.FLOAT32, shape=[-1], data=b""))
    with pytest.raises(WireError, match="need 24") as e:
        decode_tensor(tensor_pb2.Tensor(dtype=tensor_pb2.FLOAT32, shape=[2, 3], data=b"\0" * 23))
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(WireError, match="0 and 1"):
        decode_tensor(tensor_pb2.Tensor(dtype=tensor_pb2.BOOL, shape=[2], data=b"\x01\x02"))
    with pytest.raises(WireError, match="cannot be sent"):
        encode_tensor(torch.zeros(2, dtype=torch.float16))


@pytest.mark.parametrize("size", [0, 1 * MIB, 5 * MIB])
def test_parameter_round_trip_sizes(size: int) -> None:
    params = _params(size) if size else {"empty": torch.zeros(0)}
    chunks = list(chunk_parameters("policy", 7, params, expected_version=6))
    assert len(chunks) == max(1, size // CHUNK_BYTES)
    assert all(len(c.payload) <= CHUNK_BYTES for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.count == len(chunks) and c.kind == "policy" and c.version == 7 for c in chunks)
    assert chunks[0].HasField("header") and not any(c.HasField("header") for c in chunks[1:])
    wire = [tensor_pb2.ParameterChunk.FromString(c.SerializeToString()) for c in chunks]
    out = assemble_parameters(wire, max_bytes=64 * MIB)
    assert (out.kind, out.version, out.expected_version) == ("policy", 7, 6)
    assert out.params is not None and _equal(out.params, params)


def test_every_dtype_in_one_set_and_odd_chunk_size() -> None:
    params = {str(d): _sample(d, (3, 5), seed=i) for i, d in enumerate(DTYPES)}
    params["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    chunks = list(chunk_parameters("lr", 1, params, chunk_bytes=7))
    assert len(chunks) > 10
    out = assemble_parameters(chunks, max_bytes=MIB)
    assert out.params is not None and _equal(out.params, params)


def test_empty_parameter_set_is_one_chunk() -> None:
    chunks = list(chunk_parameters("value", 3, {}))
    assert len(chunks) == 1 and chunks[0].count == 1
    assert chunks[0].header.sha256 == hashlib.sha256(b"").hexdigest()
    out = assemble_parameters(chunks, max_bytes=0)
    assert out.params == {} and not out.not_modified


def test_not_modified() -> None:
    out = assemble_parameters([not_modified("policy", 4)], max_bytes=0)
    assert out.not_modified and out.params is None and (out.kind, out.version) == ("policy", 4)
    with pytest.raises(WireError, match="only chunk"):
        assemble_parameters([not_modified("policy", 4), not_modified("policy", 4)], max_bytes=0)


def _three_chunks() -> list[tensor_pb2.ParameterChunk]:
    return list(chunk_parameters("policy", 2, _params(3 * MIB), chunk_bytes=MIB))


def test_corrupted_checksum() -> None:
    chunks = _three_chunks()
    payload = bytearray(chunks[1].payload)
    payload[100] ^= 0xFF
    chunks[1].payload = bytes(payload)
    with pytest.raises(WireError, match="sha256 mismatch") as e:
        assemble_parameters(chunks, max_bytes=64 * MIB)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_chunk() -> None:
    chunks = _three_chunks()
    with pytest.raises(WireError, match="out of order") as e:
        assemble_parameters([chunks[0], chunks[2]], max_bytes=64 * MIB)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(WireError, match="after 2 of 3 chunks") as e:
        assemble_parameters(chunks[:2], max_bytes=64 * MIB)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(WireError, match="index 1, expected 0|no header"):
        assemble_parameters(chunks[1:], max_bytes=64 * MIB)
    with pytest.raises(WireError, match="empty parameter stream"):
        assemble_parameters([], max_bytes=64 * MIB)


def test_reordered_chunk() -> None:
    chunks = _three_chunks()
    with pytest.raises(WireError, match="out of order") as e:
        assemble_parameters([chunks[0], chunks[2], chunks[1]], max_bytes=64 * MIB)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_mixed_version_kind_count() -> None:
    for field, value in [("version", 3), ("kind", "lr"), ("count", 4), ("expected_version", 9)]:
        chunks = _three_chunks()
        setattr(chunks[2], field, value)
        with pytest.raises(WireError, match="but chunk 0 was") as e:
            assemble_parameters(chunks, max_bytes=64 * MIB)
        assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_total() -> None:
    chunks = _three_chunks()
    with pytest.raises(WireError, match="exceeds the limit") as e:
        assemble_parameters(chunks, max_bytes=2 * MIB)
    assert _code(e) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_oversize_is_detected_while_streaming() -> None:
    """A header that lies about its size is stopped before the stream is consumed further."""
    chunks = _three_chunks()
    consumed = []

    def lying() -> object:
        chunks[0].header.total_bytes = MIB  # specs no longer match: rejected at the header
        for c in chunks:
            consumed.append(c.index)
            yield c

    with pytest.raises(WireError, match="add up to"):
        assemble_parameters(lying(), max_bytes=64 * MIB)
    assert consumed == [0]

    # Header consistent, but a chunk carries more than announced: stopped at that chunk.
    chunks = _three_chunks()
    chunks[1].payload += b"\0" * 10
    consumed.clear()

    def padded() -> object:
        for c in chunks:
            consumed.append(c.index)
            yield c

    with pytest.raises(WireError, match="more than the announced"):
        assemble_parameters(padded(), max_bytes=64 * MIB)
    assert consumed == [0, 1, 2]  # chunk 2 pushes the total past the header's


def test_wrong_byte_length() -> None:
    chunks = _three_chunks()
    chunks[2].payload = chunks[2].payload[:-4]
    with pytest.raises(WireError, match="received .* bytes, header announced") as e:
        assemble_parameters(chunks, max_bytes=64 * MIB)
    assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_header() -> None:
    base = _three_chunks()
    cases = {
        "add up to": lambda h: h.tensors[0].shape.__setitem__(0, 5),
        "unknown dtype": lambda h: setattr(h.tensors[0], "dtype", 42),
        "not a hex SHA-256": lambda h: setattr(h, "sha256", "abc"),
    }
    for pattern, mutate in cases.items():
        chunks = [tensor_pb2.ParameterChunk.FromString(c.SerializeToString()) for c in base]
        mutate(chunks[0].header)
        with pytest.raises(WireError, match=pattern) as e:
            assemble_parameters(chunks, max_bytes=64 * MIB)
        assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT
    chunks = list(chunk_parameters("p", 1, {"a": torch.zeros(2), "b": torch.zeros(2)}))
    chunks[0].header.tensors[1].name = "a"
    with pytest.raises(WireError, match="twice"):
        assemble_parameters(chunks, max_bytes=MIB)


def test_check_finite() -> None:
    check_finite({"a": torch.zeros(3), "i": torch.arange(3), "b": torch.ones(2, dtype=torch.bool)})
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(WireError, match="NaN/Inf in tensor 'x'") as e:
            check_finite({"a": torch.zeros(3), "x": torch.tensor([1.0, bad])})
        assert _code(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_chunking_rejects_unnamed_and_unsupported_tensors() -> None:
    with pytest.raises(WireError, match="non-empty name"):
        list(chunk_parameters("policy", 1, {"": torch.zeros(1)}))
    with pytest.raises(WireError, match="cannot be sent"):
        list(chunk_parameters("policy", 1, {"h": torch.zeros(1, dtype=torch.bfloat16)}))
    with pytest.raises(ValueError, match="chunk_bytes"):
        list(chunk_parameters("policy", 1, {}, chunk_bytes=0))
