"""Benchmark: fetching a float32 policy from a real agent parameter server over gRPC on
127.0.0.1, against a raw loopback TCP baseline moving the same bytes.

* **gRPC fetch**: an ``AgentService`` over a ``ParameterStore`` (the agent process's
  server: ``services.server.make_server``, the league's message limits, 1 MiB chunks)
  runs in a separately spawned process; the benchmark process fetches with
  ``services.client.fetch_parameters`` (chunk stream, CRC32C check, copy into fresh
  tensors) over one persistent channel. Policies of 1 MiB and 40 MiB (one float32 tensor
  each). Three servers: the current one (a version encoded once, then served from
  ``EncodedSets``), the current one with that cache off (every fetch encoded afresh), and
  one with the codec before the rewrite (the baseline commit's ``services/wire.py``,
  exported with git archive: SHA-256, five copies), each in its own process.
* **raw TCP**: a plain socket server in another spawned process. Per fetch the client
  sends an 8-byte length on a persistent connection and the server answers with that many
  bytes in 1 MiB ``sendall`` writes; the client ``recv_into``s them into one buffer. No
  gRPC, no protobuf, no hashing, no tensors.
* **not-modified fast path**: ``fetch_parameters(..., min_version=current + 1)``, answered
  by one empty chunk; compared with a raw 8-byte request / 1-byte answer round trip and a
  unary gRPC ``Describe`` call.

Transfers alternate gRPC / raw within every repetition so both see the same load. The
script also times, in-process and without sockets, the codec work a gRPC fetch does
(``chunk_parameters`` on the server side, protobuf serialise and parse, and
``assemble_parameters`` on the client side) to show where the time goes.

    python benchmarks/parameter_fetch.py                 # full run, writes benchmarks/parameter_fetch.json
    python benchmarks/parameter_fetch.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import multiprocessing as mp
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baseline import export_commit  # noqa: E402
from _bench_common import ROOT, loadavg, machine_info, med, summary  # noqa: E402

sys.path.insert(0, str(ROOT))

MiB = 1 << 20
WRITE = 1 << 20  # raw baseline write size
SIZES = {"policy_1MiB": 1 * MiB, "policy_40MiB": 40 * MiB}


BASELINE = "59b7407"  # the codec before the copy-once / CRC32C rewrite


@functools.lru_cache(maxsize=1)
def wire_before():
    """``services/wire.py`` of the BASELINE commit (exported with git archive), loaded as its own
    module next to today's: the codec before the rewrite, for side-by-side timing."""
    spec = importlib.util.spec_from_file_location("wire_before", export_commit(BASELINE) / "services" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_before"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_params(nbytes: int, seed: int):
    import torch

    return {"weight": torch.randn(nbytes // 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)}


# ----------------------------------------------------------------------------- servers (child processes)

def serve_agent(sizes: dict, ready, stop, before: bool = False, encoded_cache: int = 8) -> None:
    """An agent's parameter server; ``before`` serves with the baseline commit's codec,
    ``encoded_cache=0`` encodes every fetch afresh (a version's first fetch)."""
    import torch

    from agents import service as agent_service
    from agents.params import ParameterStore
    from agents.service import AgentService
    from services import server as srv
    from services.gen.league.v1 import agent_pb2_grpc

    if before:
        old = wire_before()
        agent_service.chunk_parameters = lambda kind, version, params, chunk_bytes, checksum: (
            old.chunk_parameters(kind, version, params, chunk_bytes=chunk_bytes))
    torch.set_num_threads(1)
    store = ParameterStore()
    for i, (kind, nbytes) in enumerate(sizes.items()):
        store.set(kind, make_params(nbytes, i))
    server = srv.make_server()
    agent_pb2_grpc.add_AgentServicer_to_server(AgentService(store, {"agent_id": "bench", "env": "ipd"},
                                                                    encoded_cache=encoded_cache), server)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    ready.put(port)
    stop.wait(600)
    server.stop(0).wait()


def serve_raw(max_bytes: int, ready, stop) -> None:
    payload = memoryview(bytes(bytearray(range(256)) * (max_bytes // 256 + 1))[:max_bytes])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(600)
    ready.put(lsock.getsockname()[1])
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while not stop.is_set():
            head = _recv_exact(conn, 8)
            if head is None:
                break
            n = int.from_bytes(head, "little")
            if n == 0:
                conn.sendall(b"\x01")
                continue
            for off in range(0, n, WRITE):
                conn.sendall(payload[off:min(off + WRITE, n)])
    lsock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            return None
        got += r
    return bytes(buf)


# ----------------------------------------------------------------------------- clients

def raw_fetch(sock: socket.socket, n: int) -> bytearray:
    sock.sendall(n.to_bytes(8, "little"))
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        r = sock.recv_into(view[got:], min(n - got, WRITE))
        if r == 0:
            raise ConnectionError("raw server closed")
        got += r
    return buf


def raw_ping(sock: socket.socket) -> None:
    sock.sendall((0).to_bytes(8, "little"))
    if sock.recv(1) != b"\x01":
        raise ConnectionError("raw server closed")


def fetch_before(stub, kind: str, max_bytes: int = 256 * MiB):
    """``services.client.fetch_parameters`` with the codec of the baseline commit."""
    from services.gen.league.v1 import agent_pb2

    assemble_parameters = wire_before().assemble_parameters

    call = stub.GetParameters(agent_pb2.GetParametersRequest(kind=kind), timeout=30)
    try:
        return assemble_parameters(call, max_bytes)
    except BaseException:
        call.cancel()
        raise


def codec_costs(nbytes: int, reps: int, before: bool = False) -> dict:
    """The codec work of one fetch, in this process, no sockets: medians in seconds. The
    current codec encodes with the fetch path's checksum (CRC32C); ``before`` times the codec
    of the baseline commit's services/wire.py (SHA-256, five copies)."""
    import functools

    from services.gen.league.v1 import tensor_pb2

    if before:
        assemble_parameters, chunk_parameters = wire_before().assemble_parameters, wire_before().chunk_parameters
    else:
        from services.wire import FETCH_CHECKSUM, assemble_parameters
        from services.wire import chunk_parameters as _chunk

        chunk_parameters = functools.partial(_chunk, checksum=FETCH_CHECKSUM)

    params = make_params(nbytes, 0)
    raw = params["weight"].numpy().tobytes()
    out = {"chunk_parameters": [], "serialize": [], "parse": [], "assemble_parameters": [], "bytes_copy": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        chunks = list(chunk_parameters("policy", 1, params))
        t1 = time.perf_counter()
        wire = [c.SerializeToString() for c in chunks]
        t2 = time.perf_counter()
        parsed = []
        for w in wire:
            m = tensor_pb2.ParameterChunk()
            m.ParseFromString(w)
            parsed.append(m)
        t3 = time.perf_counter()
        got = assemble_parameters(iter(parsed), 1 << 30)
        t4 = time.perf_counter()
        assert got.params["weight"].numel() == nbytes // 4
        t5 = time.perf_counter()
        copy = bytearray(raw)  # one plain copy of the whole payload, for scale
        t6 = time.perf_counter()
        del copy
        for k, v in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5)):
            out[k].append(v)
        del chunks, wire, parsed, got
    res = {k: med(v) for k, v in out.items()}
    res["codec_total_excluding_copy"] = sum(res[k] for k in ("chunk_parameters", "serialize", "parse",
                                                              "assemble_parameters"))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a ~20 s smoke run)")
    p.add_argument("--reps-small", type=int, default=None, help="1 MiB transfers per method (default 60; 10 quick)")
    p.add_argument("--reps-large", type=int, default=None, help="40 MiB transfers per method (default 15; 3 quick)")
    p.add_argument("--reps-fast", type=int, default=None, help="fast-path calls per method (default 400; 50 quick)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "parameter_fetch.json"))
    args = p.parse_args()
    reps = {"policy_1MiB": args.reps_small or (10 if args.quick else 60),
            "policy_40MiB": args.reps_large or (3 if args.quick else 15)}
    reps_fast = args.reps_fast or (50 if args.quick else 400)

    import grpc
    import torch

    from services import server as srv
    from services.client import describe, fetch_parameters
    from services.gen.league.v1 import agent_pb2_grpc
    from services.wire import CHUNK_BYTES, FETCH_CHECKSUM

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    info = machine_info()
    load_start = loadavg()
    print(f"parameter fetch benchmark: sizes {SIZES}, reps {reps}, fast path {reps_fast}, load {load_start}",
          flush=True)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    q_agent, q_cold, q_before, q_raw = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=serve_agent, args=(SIZES, q_agent, stop), daemon=True),
             ctx.Process(target=serve_agent, args=(SIZES, q_cold, stop, False, 0), daemon=True),
             ctx.Process(target=serve_agent, args=(SIZES, q_before, stop, True), daemon=True),
             ctx.Process(target=serve_raw, args=(max(SIZES.values()), q_raw, stop), daemon=True)]
    for pr in procs:
        pr.start()
    channel = channel_cold = channel_before = sock = None
    try:
        agent_port, cold_port, before_port = q_agent.get(timeout=120), q_cold.get(timeout=120), q_before.get(timeout=120)
        raw_port = q_raw.get(timeout=120)
        channel = srv.channel(f"127.0.0.1:{agent_port}")
        channel_cold = srv.channel(f"127.0.0.1:{cold_port}")
        channel_before = srv.channel(f"127.0.0.1:{before_port}")
        for ch in (channel, channel_cold, channel_before):
            grpc.channel_ready_future(ch).result(timeout=30)
        stub = agent_pb2_grpc.AgentStub(channel)
        stub_cold = agent_pb2_grpc.AgentStub(channel_cold)
        stub_before = agent_pb2_grpc.AgentStub(channel_before)
        sock = socket.create_connection(("127.0.0.1", raw_port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        results = {}
        for kind, nbytes in SIZES.items():
            expected = make_params(nbytes, list(SIZES).index(kind))["weight"]
            for _ in range(2):  # warm-up (and check the bytes that arrive)
                got = fetch_parameters(stub, kind)
                assert torch.equal(got.params["weight"], expected) and got.params["weight"].is_contiguous()
                assert torch.equal(fetch_parameters(stub_cold, kind).params["weight"], expected)
                assert torch.equal(fetch_before(stub_before, kind).params["weight"], expected)
                assert len(raw_fetch(sock, nbytes)) == nbytes
            g_s, c_s, b_s, r_s = [], [], [], []
            for i in range(reps[kind]):
                t0 = time.perf_counter()
                got = fetch_parameters(stub, kind)
                t1 = time.perf_counter()
                buf = raw_fetch(sock, nbytes)
                t2 = time.perf_counter()
                old = fetch_before(stub_before, kind)
                t3 = time.perf_counter()
                cold = fetch_parameters(stub_cold, kind)
                t4 = time.perf_counter()
                assert got.params is not None and old.params is not None and cold.params is not None
                assert len(buf) == nbytes
                del got, buf, old, cold
                c_s.append(t4 - t3)
                g_s.append(t1 - t0)
                r_s.append(t2 - t1)
                b_s.append(t3 - t2)
            gm, rm, bm, cm = med(g_s), med(r_s), med(b_s), med(c_s)
            codec_reps = max(3, min(reps[kind], 10))
            results[kind] = {
                "bytes": nbytes,
                "grpc_fetch_s": summary(g_s), "raw_tcp_s": summary(r_s), "grpc_fetch_before_s": summary(b_s),
                "grpc_fetch_uncached_s": summary(c_s),
                "grpc_fetch_MB_per_s": nbytes / gm / 1e6, "raw_tcp_MB_per_s": nbytes / rm / 1e6,
                "grpc_fetch_before_MB_per_s": nbytes / bm / 1e6,
                "grpc_over_raw_time": gm / rm, "grpc_before_over_raw_time": bm / rm,
                "grpc_uncached_over_raw_time": cm / rm, "grpc_fetch_uncached_MB_per_s": nbytes / cm / 1e6,
                "grpc_fetch_MB_per_s_best": nbytes / min(g_s) / 1e6, "raw_tcp_MB_per_s_best": nbytes / min(r_s) / 1e6,
                "codec_in_process_s": codec_costs(nbytes, codec_reps),
                "codec_before_in_process_s": codec_costs(nbytes, codec_reps, before=True),
            }
            print(f"  {kind}: gRPC {gm * 1e3:.2f} ms ({nbytes / gm / 1e6:.0f} MB/s), uncached {cm * 1e3:.2f} ms, "
                  f"before {bm * 1e3:.2f} ms, raw TCP {rm * 1e3:.2f} ms ({nbytes / rm / 1e6:.0f} MB/s); / raw: "
                  f"{gm / rm:.2f}x, uncached {cm / rm:.2f}x, before {bm / rm:.2f}x", flush=True)
        # the not-modified fast path
        version = describe(stub).versions["policy_40MiB"]
        for _ in range(10):
            assert fetch_parameters(stub, "policy_40MiB", min_version=version + 1).not_modified
            raw_ping(sock)
        nm, ping, desc = [], [], []
        for _ in range(reps_fast):
            t0 = time.perf_counter()
            got = fetch_parameters(stub, "policy_40MiB", min_version=version + 1)
            t1 = time.perf_counter()
            raw_ping(sock)
            t2 = time.perf_counter()
            describe(stub)
            t3 = time.perf_counter()
            assert got.not_modified
            nm.append(t1 - t0)
            ping.append(t2 - t1)
            desc.append(t3 - t2)
        results["not_modified"] = {"grpc_not_modified_s": summary(nm), "raw_tcp_round_trip_s": summary(ping),
                                   "grpc_describe_unary_s": summary(desc),
                                   "grpc_not_modified_over_raw_round_trip": med(nm) / med(ping)}
        print(f"  not modified: gRPC {med(nm) * 1e6:.0f} us, raw round trip {med(ping) * 1e6:.0f} us, "
              f"unary Describe {med(desc) * 1e6:.0f} us", flush=True)
    finally:
        stop.set()
        if sock is not None:
            sock.close()
        for ch in (channel, channel_cold, channel_before):
            if ch is not None:
                ch.close()
        for pr in procs:
            pr.join(timeout=10)
            if pr.is_alive():
                pr.terminate()
                pr.join(timeout=5)

    doc = {
        "benchmark": "parameter_fetch", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": {"sizes_bytes": SIZES, "dtype": "float32", "chunk_bytes": CHUNK_BYTES,
                    "fetch_checksum": FETCH_CHECKSUM, "raw_write_bytes": WRITE,
                    "reps": reps, "reps_fast_path": reps_fast, "host": "127.0.0.1"},
        "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(), "results": results,
        "notes": [
            "MB = 1e6 bytes. Seconds are per whole fetch, client side, medians over repetitions after 2 warm-ups.",
            "grpc_fetch: services.client.fetch_parameters over one persistent channel to an AgentService in a "
            "spawned process: the current codec (CRC32C; each byte copied once into its chunk on the server and "
            "once into a fresh tensor on the client), the set encoded once per version (EncodedSets cache).",
            "grpc_fetch_uncached: the same, from a server with encoded_cache=0, so every fetch is encoded afresh "
            "(the cost of a version's first fetch, which is what a referee pays for a freshly published policy).",
            "grpc_fetch_before: the codec of commit 59b7407 (the baseline commit's services/wire.py: SHA-256 on both ends, "
            "about five copies) on its own server process; the four variants alternate in every repetition.",
            "raw TCP: persistent connection, 8-byte request, the server sendall()s the bytes in 1 MiB writes, the "
            "client recv_into()s one preallocated bytearray. Same number of bytes, nothing else.",
            "codec_in_process_s / codec_before_in_process_s: the current / before codec steps in this process "
            "without sockets (chunk_parameters, protobuf "
            "SerializeToString and ParseFromString of every chunk, assemble_parameters) and one plain copy of the "
            "payload (bytes_copy) for scale.",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out} ({doc['total_wall_s']:.0f} s, load {doc['loadavg_end']})")


if __name__ == "__main__":
    main()
