"""Capacity of the referee's Subscribe streams (issue 12): a real ``league referee`` process
with 200 idle streams open (100 members x the per-agent cap of 2) keeps answering Status
within a bound, keeps playing rounds, and its thread count stays under a bound that does
not grow with the streams (on ``grpc.aio`` an open stream is a task, not a thread).

The members are real agent gRPC servers in this process: two frozen learners that the
referee pairs every round, and 100 personas that no round seats (there is no meta-agent),
whose streams therefore stay idle.

The event loop that serves the streams must never wait for the league's lock: a unary
handler (in the thread pool) may abort while it holds that lock, and an abort waits for the
loop to send the status; a loop waiting for the lock would deadlock the referee."""

from __future__ import annotations

import statistics
import time

import grpc
import pytest
import torch

from agents.params import ParameterStore
from agents.service import AgentService
from services import limits
from services import server as srv
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.league_config import RefereeConfig
from services.processes import referee_server
from services.referee import Referee
from tests.league_procs import spawn, stop, threads, wait_json, wait_until

pytestmark = pytest.mark.timeout(180)

IDLE_MEMBERS = 100
STREAMS = IDLE_MEMBERS * limits.MAX_STREAMS_PER_AGENT  # 200
THREAD_BOUND = 64
"""Threads the referee may hold with every stream open: its fixed pools (unary RPCs 16,
fetches 8), the event loop, gRPC's and torch's own, the metrics server, the lease timer.
The thread-per-stream server this replaced needed one more thread per open stream."""
THREAD_GROWTH = 8
"""Threads the 200 streams may add (pool threads first used meanwhile), whatever their number."""
STATUS_BOUND = 1.0
"""Seconds within which every Status call must answer while the streams are open."""
WINDOW = 5.0
"""Seconds of rounds and Status calls measured with the streams open."""
TIMEOUT = 15.0

LEAGUE = """
name = "streams"
[referee]
env = "ipd"
trajectories = 2
horizon = 3
rounds = 0
seed = 0
lease_seconds = 600.0
fetch_timeout = 10.0
"""


def agent_server(agent_id: str, seed: int):
    """A real, frozen tabular IPD agent server on 127.0.0.1; returns (server, address)."""
    store = ParameterStore({"policy": {"logits": torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(seed))}})
    desc = {"agent_id": agent_id, "env": "ipd", "obs_dim": 5, "n_actions": 2, "policy_class": "tabular",
            "policy_config": {}, "learning_rule": "frozen", "rule_config": {}, "capabilities": []}
    server = srv.make_server(max_workers=2)
    agent_pb2_grpc.add_AgentServicer_to_server(AgentService(store, desc), server)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def referee(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streams")
    (tmp / "league.toml").write_text(LEAGUE)
    proc = spawn(["referee", str(tmp / "league.toml"), "--ready-file", str(tmp / "referee.json"), "--wait-for", "0",
                  "--insecure"], tmp / "referee.log")
    servers, channels = [], []
    try:
        address = wait_json(tmp / "referee.json", proc, 60)["address"]
        ch = srv.channel(address)
        channels.append(ch)
        stub = referee_pb2_grpc.RefereeStub(ch)
        members = [("learner0", "learner"), ("learner1", "learner")] + [(f"idle{i}", "persona")
                                                                        for i in range(IDLE_MEMBERS)]
        for i, (agent_id, role) in enumerate(members):
            server, agent_address = agent_server(agent_id, i)
            servers.append(server)
            stub.Join(referee_pb2.JoinRequest(agent_id=agent_id, address=agent_address, protocol_version=1, role=role),
                      timeout=TIMEOUT)
        yield proc, address, stub, channels, tmp
    finally:
        for ch in channels:
            ch.close()
        stop([proc])
        for server in servers:
            server.stop(None)


@pytest.mark.slow  # ~30 s: a referee process and 102 joins
def test_idle_streams_hold_no_thread_and_freeze_nothing(referee):
    proc, address, stub, channels, tmp = referee
    start = stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT).round
    wait_until(lambda: stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT).round >= start + 3, 60,
               "three rounds before the streams open")
    before = threads(proc.pid)

    streams = []
    for i in range(IDLE_MEMBERS):  # one channel per member, as each agent process has its own
        ch = srv.channel(address)
        channels.append(ch)
        member_stub = referee_pb2_grpc.RefereeStub(ch)
        streams += [member_stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=f"idle{i}"))
                    for _ in range(limits.MAX_STREAMS_PER_AGENT)]
    assert len(streams) == STREAMS
    try:
        # every stream is open on the referee: each idle member's next stream is over its cap
        # (an accepted extra stream would wait idle until its deadline instead)
        def all_open() -> bool:
            for i in range(IDLE_MEMBERS):
                extra = referee_pb2_grpc.RefereeStub(channels[1 + i]).Subscribe(
                    referee_pb2.SubscribeRequest(agent_id=f"idle{i}"), timeout=2.0)
                try:
                    next(extra)
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        continue
                return False
            return True

        wait_until(all_open, 60, f"all {STREAMS} streams to be open")
        assert all(s.running() for s in streams), "an idle stream ended"

        first = stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT).round
        latencies = []
        end = time.monotonic() + WINDOW
        while time.monotonic() < end:
            t0 = time.perf_counter()
            stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.05)
        last = stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT)
        during = threads(proc.pid)
        print(f"{STREAMS} idle streams: referee threads {before} before, {during} with the streams; "
              f"Status median {statistics.median(latencies) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms "
              f"over {len(latencies)} calls; rounds {first} -> {last.round} in {WINDOW:.0f} s")
        assert len(last.members) == IDLE_MEMBERS + 2
        assert max(latencies) < STATUS_BOUND, f"Status took {max(latencies):.2f}s with {STREAMS} streams open"
        assert last.round >= first + 3, f"rounds stalled with {STREAMS} streams open: {first} -> {last.round}"
        assert during <= THREAD_BOUND, f"the referee holds {during} threads with {STREAMS} streams open"
        assert during - before <= THREAD_GROWTH, f"{STREAMS} streams added {during - before} threads"
    finally:
        for s in streams:
            s.cancel()
    # the cancelled streams are gone: a member may subscribe again (its stream is accepted and
    # waits, idle, until the client's deadline, instead of being refused as over the cap)
    def can_subscribe() -> bool:
        again = referee_pb2_grpc.RefereeStub(channels[1]).Subscribe(referee_pb2.SubscribeRequest(agent_id="idle0"),
                                                                    timeout=1.0)
        try:
            next(again)
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        return False

    wait_until(can_subscribe, 20, "idle0 to subscribe again after its streams were cancelled")


def test_the_event_loop_never_waits_for_the_league_lock():
    """While the league's lock is held (as by a Heartbeat aborting NOT_FOUND inside it), a
    Subscribe opens and registers, and health (served on the loop) answers at once."""
    referee = Referee(RefereeConfig(env="ipd", rounds=0))
    server, _ = referee_server(referee, unary_workers=2, slow_workers=2)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    try:
        with srv.channel(f"127.0.0.1:{port}") as ch:
            with referee.lock:
                stream = referee_pb2_grpc.RefereeStub(ch).Subscribe(referee_pb2.SubscribeRequest(agent_id="newcomer"),
                                                                   timeout=TIMEOUT)
                wait_until(lambda: len(referee.subscribers) == 1, 5, "the stream to register under the held lock")
                check = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="league.v1.Referee"),
                                                             timeout=2.0)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
            stream.cancel()
            wait_until(lambda: not referee.subscribers, 5, "the cancelled stream to be removed")
    finally:
        referee.stop()
        server.stop(None)


def test_a_burst_of_slow_joins_does_not_queue_status():
    """Joins that wait on a silent agent (it accepts TCP and never answers) fill the slow
    pool for a lease; Status and Heartbeat still answer at once from their own pool."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    lease = 3.0
    referee = Referee(RefereeConfig(env="ipd", rounds=0, lease_seconds=lease))
    server, _ = referee_server(referee, unary_workers=2, slow_workers=2)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        with srv.channel(f"127.0.0.1:{port}") as ch, ThreadPoolExecutor(4) as callers:
            stub = referee_pb2_grpc.RefereeStub(ch)
            joins = [callers.submit(stub.Join, referee_pb2.JoinRequest(
                agent_id=f"silent{i}", address=f"127.0.0.1:{silent.getsockname()[1]}", protocol_version=1,
                role="learner"), timeout=4 * lease) for i in range(4)]
            time.sleep(0.5)  # the joins hold both slow threads, two more wait for them
            assert not any(j.done() for j in joins)
            t0 = time.perf_counter()
            stub.Status(referee_pb2.StatusRequest(), timeout=TIMEOUT)
            with pytest.raises(grpc.RpcError) as e:
                stub.Heartbeat(referee_pb2.HeartbeatRequest(agent_id="silent0"), timeout=TIMEOUT)
            waited = time.perf_counter() - t0
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert waited < 0.5 * lease, f"Status and Heartbeat waited {waited:.2f}s behind the joins"
            for j in joins:
                with pytest.raises(grpc.RpcError) as e:
                    j.result()
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        silent.close()
        referee.stop()
        server.stop(None)
