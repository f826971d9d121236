"""The parameter codec's integrity checks (SHA-256 and CRC32C) and its copy-once encoding:
round trips under each check, every corrupted byte refused, checksums against independent
reference implementations, and the received tensors owning fresh memory."""

from __future__ import annotations

import hashlib

import grpc
import pytest
import torch

from services.gen.league.v1 import tensor_pb2
from services.wire import CHECKSUMS, WireError, assemble_parameters, chunk_parameters, get_checksum

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool]


def _crc32c_reference(data: bytes) -> int:
    """Bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), straight from the definition."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _mixed_params() -> dict[str, torch.Tensor]:
    """Every dtype, odd byte lengths (so chunks straddle tensors), a scalar and an empty tensor."""
    g = torch.Generator().manual_seed(3)
    params: dict[str, torch.Tensor] = {}
    for i, d in enumerate(DTYPES):
        shape = (3 + i, 5)
        if d == torch.bool:
            params[str(d)] = torch.rand(shape, generator=g) > 0.5
        elif d.is_floating_point:
            params[str(d)] = torch.randn(shape, generator=g, dtype=d)
        else:
            params[str(d)] = torch.randint(-(2**30), 2**30, shape, generator=g, dtype=d)
    params["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    params["empty"] = torch.zeros(3, 0, 2)
    params["transposed"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # non-contiguous
    return params


def _wire(chunks: list[tensor_pb2.ParameterChunk]) -> list[tensor_pb2.ParameterChunk]:
    return [tensor_pb2.ParameterChunk.FromString(c.SerializeToString()) for c in chunks]


def _payload(chunks: list[tensor_pb2.ParameterChunk]) -> bytes:
    return b"".join(c.payload for c in chunks)


def test_crc32c_matches_the_bitwise_definition() -> None:
    assert _crc32c_reference(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    params = _mixed_params()
    chunks = _wire(list(chunk_parameters("policy", 1, params, chunk_bytes=64, checksum="crc32c")))
    header = chunks[0].header
    assert header.HasField("crc32c") and header.sha256 == ""
    assert header.crc32c == _crc32c_reference(_payload(chunks))


@pytest.mark.parametrize("checksum", sorted(CHECKSUMS))
@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, MIB])
def test_round_trip_under_each_checksum(checksum: str, chunk_bytes: int) -> None:
    params = _mixed_params()
    chunks = _wire(list(chunk_parameters("lr", 4, params, expected_version=3, chunk_bytes=chunk_bytes,
                                         checksum=checksum)))
    total = sum(t.numel() * t.element_size() for t in params.values())
    assert len(chunks) == -(-total // chunk_bytes) and all(len(c.payload) <= chunk_bytes for c in chunks)
    # the payload is the tensors' little-endian bytes in dict order, whatever their layout
    assert _payload(chunks) == b"".join(t.contiguous().numpy().tobytes() for t in params.values())
    if checksum == "sha256":
        assert chunks[0].header.sha256 == hashlib.sha256(_payload(chunks)).hexdigest()
    out = assemble_parameters(chunks, max_bytes=MIB)
    assert (out.kind, out.version, out.expected_version) == ("lr", 4, 3)
    assert out.params is not None and list(out.params) == list(params)
    for name, t in params.items():
        got = out.params[name]
        assert got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t), name
        assert got.is_contiguous()


def test_received_tensors_own_fresh_writable_memory() -> None:
    params = {"a": torch.arange(5, dtype=torch.float32), "b": torch.arange(3, dtype=torch.float64)}
    chunks = list(chunk_parameters("policy", 1, params, chunk_bytes=3, checksum="crc32c"))
    out = assemble_parameters(chunks, max_bytes=MIB).params
    assert out is not None
    assert out["b"].data_ptr() % 8 == 0  # aligned despite following 20 bytes of float32
    out["a"] += 1  # writable, and aliases neither the sender's tensors nor the other one
    assert torch.equal(params["a"], torch.arange(5, dtype=torch.float32))
    assert torch.equal(out["b"], torch.arange(3, dtype=torch.float64))
    assert out["a"].untyped_storage().data_ptr() != out["b"].untyped_storage().data_ptr()


@pytest.mark.parametrize("checksum", sorted(CHECKSUMS))
def test_a_corrupted_chunk_is_refused(checksum: str) -> None:
    """A single flipped bit anywhere in any chunk (first, middle, last byte) is refused."""
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(3 * MIB // 4, generator=g), "m": torch.rand(5, generator=g) > 0.5}
    base = _wire(list(chunk_parameters("policy", 2, params, chunk_bytes=MIB, checksum=checksum)))
    assert len(base) == 4
    assert assemble_parameters(base, max_bytes=64 * MIB).params is not None
    for index, position, bit in [(0, 0, 0), (1, 100, 7), (2, MIB - 1, 3), (3, 4, 0)]:
        chunks = _wire(base)
        payload = bytearray(chunks[index].payload)
        payload[position] ^= 1 << bit
        chunks[index].payload = bytes(payload)
        with pytest.raises(WireError, match=f"{checksum} mismatch") as e:
            assemble_parameters(chunks, max_bytes=64 * MIB)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_swapped_payloads_are_refused() -> None:
    """Two equally long chunks exchanging payloads keep every size right; the CRC still differs."""
    params = {"w": torch.arange(4 * 256, dtype=torch.float32)}
    chunks = _wire(list(chunk_parameters("policy", 1, params, chunk_bytes=1024, checksum="crc32c")))
    chunks[1].payload, chunks[2].payload = chunks[2].payload, chunks[1].payload
    with pytest.raises(WireError, match="crc32c mismatch"):
        assemble_parameters(chunks, max_bytes=MIB)


def test_a_corrupted_crc_field_and_a_missing_checksum_are_refused() -> None:
    chunks = _wire(list(chunk_parameters("policy", 1, {"w": torch.ones(10)}, checksum="crc32c")))
    chunks[0].header.crc32c ^= 1
    with pytest.raises(WireError, match="crc32c mismatch"):
        assemble_parameters(chunks, max_bytes=MIB)
    chunks[0].header.ClearField("crc32c")
    with pytest.raises(WireError, match="carries no checksum") as e:
        assemble_parameters(chunks, max_bytes=MIB)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_both_checksums_are_checked_when_both_are_sent() -> None:
    """A header with SHA-256 and CRC32C (e.g. from another sender) must pass both."""
    params = {"w": torch.arange(100, dtype=torch.float32)}
    chunks = _wire(list(chunk_parameters("policy", 1, params, checksum="sha256")))
    chunks[0].header.crc32c = _crc32c_reference(_payload(chunks))
    assert assemble_parameters(chunks, max_bytes=MIB).params is not None
    chunks[0].header.crc32c ^= 1
    with pytest.raises(WireError, match="crc32c mismatch"):
        assemble_parameters(chunks, max_bytes=MIB)


def test_bool_bytes_other_than_0_and_1_are_refused_under_a_valid_checksum() -> None:
    chunks = _wire(list(chunk_parameters("policy", 1, {"m": torch.ones(4, dtype=torch.bool)}, checksum="crc32c")))
    chunks[0].payload = b"\x01\x02\x00\x01"
    chunks[0].header.crc32c = _crc32c_reference(chunks[0].payload)
    with pytest.raises(WireError, match="0 and 1"):
        assemble_parameters(chunks, max_bytes=MIB)


def test_unknown_checksum_name() -> None:
    with pytest.raises(ValueError, match="unknown checksum 'md5'; known: sha256, crc32c"):
        get_checksum("md5")
    with pytest.raises(ValueError, match="unknown checksum"):
        list(chunk_parameters("policy", 1, {}, checksum="md5"))
