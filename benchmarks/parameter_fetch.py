"""Benchmark: fetching a float32 policy from a real agent parameter server over gRPC on
127.0.0.1, against a raw loopback TCP baseline moving the same bytes.

* **gRPC fetch**: an ``AgentService`` over a ``ParameterStore`` (the agent process's
  server: ``services.server.make_server``, the league's message limits, 1 MiB chunks,
  registered with ``add_agent_service``) runs in a separately spawned process; the
  benchmark process fetches with ``services.client.fetch_parameters`` and an
  ``AgentClient`` (a one-chunk set as a unary call, a larger one as a stream; CRC32C
  checked over the received bytes, one copy into fresh tensors) over one persistent
  channel. Policies of 1 MiB and 40 MiB (one float32 tensor each). Four servers, each in
  its own process: today's (a version encoded once, then sent from ``EncodedSets`` as
  cached wire bytes), today's with that cache off (every fetch encoded afresh), and the
  whole fetch path of the PREVIOUS and of the BASELINE commit (their trees exported with
  git archive; their clients: that commit's ``assemble_parameters`` over the generated
  stub).
* **raw TCP**: a plain socket server in another spawned process. Per fetch the client
  sends an 8-byte length on a persistent connection and the server answers with that many
  bytes in 1 MiB ``sendall`` writes; the client ``recv_into``s them into one buffer. No
  gRPC, no protobuf, no hashing, no tensors.
* **not-modified fast path**: ``fetch_parameters(..., min_version=current + 1)``, answered
  by one empty chunk; compared with a raw 8-byte request / 1-byte answer round trip and a
  unary gRPC ``Describe`` call.

The methods alternate within every repetition so all see the same load. Besides wall
time per fetch it records CPU time per fetch (client process plus serving process), which
the machine's load distorts less. The script also times, in-process and without sockets,
the codec work of each version to show where the time goes.

    python benchmarks/parameter_fetch.py                 # full run, writes benchmarks/parameter_fetch.json
    python benchmarks/parameter_fetch.py --quick --out /tmp/q.json
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import multiprocessing as mp
import os
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
PREVIOUS = "af8e700"  # the fetch path before the wire-bytes rewrite (messages serialised per fetch)


@functools.lru_cache(maxsize=1)
def wire_before():
    """``services/wire.py`` of the BASELINE commit (exported with git archive), loaded as its own
    module next to today's: the codec before the rewrite, for side-by-side timing."""
    spec = importlib.util.spec_from_file_location("wire_before", export_commit(BASELINE) / "services" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_before"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_params(nbytes: int, seed: int):
    import torch

    return {"weight": torch.randn(nbytes // 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)}


# ----------------------------------------------------------------------------- servers (child processes)

def serve_agent(sizes: dict, ready, stop, commit: str | None = None, encoded_cache: int = 8) -> None:
    """An agent's parameter server: today's (``add_agent_service``, chunks sent as cached
    wire bytes; ``encoded_cache=0`` encodes every fetch afresh, a version's first fetch), or
    with ``commit`` that commit's tree (its own agents/ and services/, imported from the
    exported tree, registered as it was: the generated ``add_AgentServicer_to_server``)."""
    if commit is not None:
        sys.path.insert(0, str(export_commit(commit)))
    import torch

    from agents import service as agent_service
    from agents.params import ParameterStore
    from services import server as srv
    from services.gen.league.v1 import agent_pb2_grpc

    torch.set_num_threads(1)
    store = ParameterStore()
    for i, (kind, nbytes) in enumerate(sizes.items()):
        store.set(kind, make_params(nbytes, i))
    server = srv.make_server()
    description = {"agent_id": "bench", "env": "ipd"}
    if commit is not None:
        agent_pb2_grpc.add_AgentServicer_to_server(agent_service.AgentService(store, description), server)
    else:
        service = agent_service.AgentService(store, description, encoded_cache=encoded_cache)
        agent_service.add_agent_service(service, server)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    ready.put(port)
    stop.wait(600)
    server.stop(0).wait()


BARE_METHOD = "/bench.Bare/Get"


def serve_bare_grpc(max_bytes: int, ready, stop) -> None:
    """gRPC with nothing of ours: a unary method of a server built like the agents'
    (``services.server.make_server``, the same options) that answers an 8-byte length with
    that many bytes of a prebuilt payload, passed through as bytes (no protobuf message, no
    checksum, no tensors). Its time is the floor a one-message fetch can reach over gRPC."""
    import grpc

    from services import server as srv

    payload = bytes(bytearray(range(256)) * (max_bytes // 256 + 1))[:max_bytes]
    get = grpc.unary_unary_rpc_method_handler(lambda request, context: payload[:int.from_bytes(request, "little")])
    server = srv.make_server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bare", {"Get": get}),))
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


@functools.lru_cache(maxsize=1)
def wire_previous():
    """``services/wire.py`` of the PREVIOUS commit, loaded as its own module."""
    spec = importlib.util.spec_from_file_location("wire_previous", export_commit(PREVIOUS) / "services" / "wire.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_previous"] = module
    spec.loader.exec_module(module)
    return module


def fetch_before(stub, kind: str, max_bytes: int = 256 * MiB, wire=wire_before):
    """``services.client.fetch_parameters`` with the codec of the baseline commit (``wire``:
    of another commit), over the generated stub (chunks parsed as messages)."""
    from services.gen.league.v1 import agent_pb2

    assemble_parameters = wire().assemble_parameters

    call = stub.GetParameters(agent_pb2.GetParametersRequest(kind=kind), timeout=30)
    try:
        return assemble_parameters(call, max_bytes)
    except BaseException:
        call.cancel()
        raise


def codec_costs(nbytes: int, reps: int, codec: str = "now") -> dict:
    """The codec work of one fetch, in this process, no sockets: medians in seconds.

    ``now``: what today's server does once per version (``encode_parameter_set`` with CRC32C:
    the chunks' wire bytes; a fetch only sends the cached bytes) and what the client does per fetch
    (``assemble_wire``: payloads read in place from the received bytes). ``previous`` /
    ``before``: the PREVIOUS / BASELINE commit's codec as its fetch ran it, every step per
    fetch (chunk, serialise, parse, assemble)."""
    from services.gen.league.v1 import tensor_pb2

    params = make_params(nbytes, 0)
    raw = params["weight"].numpy().tobytes()
    out: dict[str, list[float]] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        value = fn()
        out.setdefault(name, []).append(time.perf_counter() - t0)
        return value

    for _ in range(reps):
        if codec == "now":
            from services.wire import FETCH_CHECKSUM, assemble_wire, encode_parameter_set

            chunks = wire = timed("encode_parameter_set_once_per_version",
                                  lambda: encode_parameter_set("policy", 1, params, checksum=FETCH_CHECKSUM))
            got = timed("assemble_wire", lambda: assemble_wire(wire, 1 << 30))
        else:
            module = wire_previous() if codec == "previous" else wire_before()
            kwargs = {"checksum": "crc32c"} if codec == "previous" else {}
            chunks = timed("chunk_parameters", lambda: list(module.chunk_parameters("policy", 1, params, **kwargs)))
            wire = timed("serialize", lambda: [c.SerializeToString() for c in chunks])
            parsed = timed("parse", lambda: [tensor_pb2.ParameterChunk.FromString(w) for w in wire])
            got = timed("assemble_parameters", lambda: module.assemble_parameters(iter(parsed), 1 << 30))
        assert got.params["weight"].numel() == nbytes // 4
        timed("bytes_copy", lambda: bytearray(raw))  # one plain copy of the whole payload, for scale
        del chunks, wire, got
    res = {k: med(v) for k, v in out.items()}
    per_fetch = ("assemble_wire",) if codec == "now" else ("chunk_parameters", "serialize", "parse",
                                                           "assemble_parameters")
    res["codec_per_fetch"] = sum(res[k] for k in per_fetch)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a ~20 s smoke run)")
    p.add_argument("--reps-small", type=int, default=None, help="1 MiB transfers per method (default 200; 10 quick)")
    p.add_argument("--reps-large", type=int, default=None, help="40 MiB transfers per method (default 20; 3 quick)")
    p.add_argument("--reps-fast", type=int, default=None, help="fast-path calls per method (default 400; 50 quick)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "parameter_fetch.json"))
    args = p.parse_args()
    reps = {"policy_1MiB": args.reps_small or (10 if args.quick else 200),
            "policy_40MiB": args.reps_large or (3 if args.quick else 20)}
    reps_fast = args.reps_fast or (50 if args.quick else 400)

    import grpc
    import torch

    from services import server as srv
    from services.client import AgentClient, describe, fetch_parameters
    from services.gen.league.v1 import agent_pb2_grpc
    from services.server import MAX_MESSAGE_BYTES
    from services.wire import CHUNK_BYTES, FETCH_CHECKSUM

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    info = machine_info()
    load_start = loadavg()
    print(f"parameter fetch benchmark: sizes {SIZES}, reps {reps}, fast path {reps_fast}, load {load_start}",
          flush=True)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    # variant -> serve_agent's keyword arguments; every variant gets its own server process
    servers = {"grpc_fetch": {}, "grpc_fetch_uncached": {"encoded_cache": 0},
               "grpc_fetch_previous": {"commit": PREVIOUS}, "grpc_fetch_before": {"commit": BASELINE}}
    queues = {name: ctx.Queue() for name in servers}
    q_raw = ctx.Queue()
    procs = {name: ctx.Process(target=serve_agent, args=(SIZES, queues[name], stop), kwargs=kw, daemon=True)
             for name, kw in servers.items()}
    procs["raw_tcp"] = ctx.Process(target=serve_raw, args=(max(SIZES.values()), q_raw, stop), daemon=True)
    q_bare = ctx.Queue()
    bare_max = max(n for n in SIZES.values() if n <= MAX_MESSAGE_BYTES - 4096)  # one message
    procs["grpc_bare_unary"] = ctx.Process(target=serve_bare_grpc, args=(bare_max, q_bare, stop), daemon=True)
    for pr in procs.values():
        pr.start()
    channels, sock = [], None
    try:
        stubs = {}
        for name in servers:
            ch = srv.channel(f"127.0.0.1:{queues[name].get(timeout=120)}")
            channels.append(ch)
            grpc.channel_ready_future(ch).result(timeout=30)
            stubs[name] = AgentClient(ch) if name in ("grpc_fetch", "grpc_fetch_uncached") else (
                agent_pb2_grpc.AgentStub(ch))
        bare_channel = srv.channel(f"127.0.0.1:{q_bare.get(timeout=120)}")
        channels.append(bare_channel)
        grpc.channel_ready_future(bare_channel).result(timeout=30)
        bare = bare_channel.unary_unary(BARE_METHOD, request_serializer=None, response_deserializer=None)
        sock = socket.create_connection(("127.0.0.1", q_raw.get(timeout=120)), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        results = {}
        for kind, nbytes in SIZES.items():
            fetches = {
                "grpc_fetch": lambda: fetch_parameters(stubs["grpc_fetch"], kind).params,
                "raw_tcp": lambda: raw_fetch(sock, nbytes),
                "grpc_fetch_previous": lambda: fetch_before(stubs["grpc_fetch_previous"], kind,
                                                            wire=wire_previous).params,
                "grpc_fetch_before": lambda: fetch_before(stubs["grpc_fetch_before"], kind).params,
                "grpc_fetch_uncached": lambda: fetch_parameters(stubs["grpc_fetch_uncached"], kind).params,
            }
            if nbytes <= bare_max:
                fetches["grpc_bare_unary"] = lambda: bare(nbytes.to_bytes(8, "little"), timeout=60)
            expected = make_params(nbytes, list(SIZES).index(kind))["weight"]
            for _ in range(2):  # warm-up (and check the bytes that arrive)
                for name, fetch in fetches.items():
                    got = fetch()
                    if name in ("raw_tcp", "grpc_bare_unary"):
                        assert len(got) == nbytes
                    else:
                        assert torch.equal(got["weight"], expected) and got["weight"].is_contiguous(), name
            times: dict[str, list[float]] = {name: [] for name in fetches}
            client_cpu = dict.fromkeys(fetches, 0.0)
            server_cpu = {name: process_cpu_seconds(procs[name].pid) for name in fetches}
            for _ in range(reps[kind]):  # the variants alternate within every repetition
                for name, fetch in fetches.items():
                    c0, t0 = time.process_time(), time.perf_counter()
                    got = fetch()
                    t1, c1 = time.perf_counter(), time.process_time()
                    times[name].append(t1 - t0)
                    client_cpu[name] += c1 - c0
                    assert got is not None
                    del got
            cpu = {}
            for name in fetches:  # a server is idle while the others are fetched from
                server = (process_cpu_seconds(procs[name].pid) - server_cpu[name]) / reps[kind]
                cpu[name] = {"client": client_cpu[name] / reps[kind], "server": server,
                             "total": client_cpu[name] / reps[kind] + server}
            rm = med(times["raw_tcp"])
            res = {"bytes": nbytes}
            for name, xs in times.items():
                res[f"{name}_s"] = summary(xs)
                res[f"{name}_MB_per_s"] = nbytes / med(xs) / 1e6
                if name != "raw_tcp":
                    res[f"{name}_over_raw_time"] = med(xs) / rm
            res["cpu_per_fetch_s"] = cpu
            res["cpu_over_raw"] = {name: cpu[name]["total"] / cpu["raw_tcp"]["total"] for name in fetches
                                   if name != "raw_tcp"}
            if "grpc_bare_unary_s" in res:
                res["grpc_fetch_over_bare_grpc_time"] = med(times["grpc_fetch"]) / med(times["grpc_bare_unary"])
            res["grpc_fetch_MB_per_s_best"] = nbytes / min(times["grpc_fetch"]) / 1e6
            res["raw_tcp_MB_per_s_best"] = nbytes / min(times["raw_tcp"]) / 1e6
            codec_reps = max(3, min(reps[kind], 10))
            for codec in ("now", "previous", "before"):
                res[f"codec_{codec}_in_process_s"] = codec_costs(nbytes, codec_reps, codec)
            results[kind] = res
            print(f"  {kind}: raw TCP {rm * 1e3:.2f} ms; " + ", ".join(
                f"{name} {med(times[name]) * 1e3:.2f} ms ({med(times[name]) / rm:.2f}x raw)"
                for name in fetches if name != "raw_tcp"), flush=True)
            print("    CPU per fetch (client + server): " + ", ".join(
                f"{name} {cpu[name]['total'] * 1e3:.2f} ms" for name in fetches), flush=True)
        # the not-modified fast path
        stub = stubs["grpc_fetch"]
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
        for ch in channels:
            ch.close()
        for pr in procs.values():
            pr.join(timeout=10)
            if pr.is_alive():
                pr.terminate()
                pr.join(timeout=5)

    doc = {
        "benchmark": "parameter_fetch", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "setting": {"sizes_bytes": SIZES, "dtype": "float32", "chunk_bytes": CHUNK_BYTES,
                    "fetch_checksum": FETCH_CHECKSUM, "raw_write_bytes": WRITE,
                    "reps": reps, "reps_fast_path": reps_fast, "host": "127.0.0.1",
                    "previous_commit": PREVIOUS, "before_commit": BASELINE},
        "machine": info, "loadavg_start": load_start, "loadavg_end": loadavg(), "results": results,
        "notes": [
            "MB = 1e6 bytes. Seconds are per whole fetch, client side, medians over repetitions after 2 warm-ups; "
            "the methods alternate within every repetition, so all see the same load.",
            "grpc_fetch: services.client.fetch_parameters with an AgentClient over one persistent channel to an "
            "AgentService registered with add_agent_service in a spawned process: each version's chunks are "
            "encoded (CRC32C) and serialised once and sent as cached wire bytes; the client reads each payload in "
            "place from the received bytes (assemble_wire), checks the CRC32C there and copies it once into a "
            "fresh tensor.",
            "grpc_fetch_uncached: the same, from a server with encoded_cache=0, so every fetch is encoded and "
            "serialised afresh (the cost of a version's first fetch).",
            f"grpc_fetch_previous: the fetch path of commit {PREVIOUS} (its agents/ and services/ on the server, "
            "from the exported tree: chunk messages cached, serialised by gRPC per fetch; its services/wire.py "
            "assemble_parameters on the client over the generated stub: protobuf parse, payload read, copy).",
            f"grpc_fetch_before: the fetch path of commit {BASELINE} (its agents/ and services/ on the server, from "
            "the exported tree; its services/wire.py on the client: SHA-256 on both ends, about five copies).",
            "raw TCP: persistent connection, 8-byte request, the server sendall()s the bytes in 1 MiB writes, the "
            "client recv_into()s one preallocated bytearray. Same number of bytes, nothing else.",
            "grpc_bare_unary (sizes that fit one message): gRPC alone, the floor of a one-message fetch: a "
            "unary call to a server built as the agents' are (services.server.make_server, same options, spawned "
            "process) answering with that many prebuilt bytes, no protobuf, no checksum, no tensor; "
            "grpc_fetch_over_bare_grpc_time is what our codec and checks add on top of gRPC.",
            "cpu_per_fetch_s: CPU seconds per fetch, client process (time.process_time around each fetch, all "
            "its threads) plus the serving process (/proc/<pid>/stat over the whole block divided by the "
            "repetitions; 10 ms ticks; each server is idle while the others are fetched from). Less sensitive to "
            "the machine's load than wall time; cpu_over_raw divides by the raw TCP pair's CPU.",
            "codec_*_in_process_s: the codec steps of each version in this process without sockets, and one plain "
            "copy of the payload (bytes_copy) for scale; codec_per_fetch sums the steps a fetch pays (today only "
            "assemble_wire: encoding and serialising happen once per version).",
        ],
        "total_wall_s": time.perf_counter() - t_start,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out} ({doc['total_wall_s']:.0f} s, load {doc['loadavg_end']})")


if __name__ == "__main__":
    main()
