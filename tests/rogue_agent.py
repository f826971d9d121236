"""A rogue agent process for the fault tests: a real Agent gRPC server that joins a league
as a frozen tabular learner with valid parameters, then serves parameters of the wrong
shape (``--mode shape``) or holding NaN (``--mode nan``). It keeps heartbeating and, when
the referee drops it, tries to join again; it prints one JSON line per event.

    python -m tests.rogue_agent --join HOST:PORT --id rogue --mode nan --ready-file F
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import grpc
import torch

from agents.params import ParameterStore
from agents.service import SERVICE_NAME, AgentService
from services import server as srv
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc


def say(**event) -> None:
    print(json.dumps(event), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--join", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--mode", choices=["shape", "nan"], required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--seconds", type=float, default=120.0, help="exit after this long")
    args = p.parse_args()
    torch.set_num_threads(1)
    store = ParameterStore({"policy": {"logits": torch.zeros(1, 5, 2)}, "lr": {"lr": torch.tensor([[0.5]])}})
    desc = {"agent_id": args.id, "env": "ipd", "obs_dim": 5, "n_actions": 2, "policy_class": "tabular",
            "policy_config": {}, "learning_rule": "frozen", "rule_config": {}, "capabilities": []}
    server = srv.make_server()
    agent_pb2_grpc.add_AgentServicer_to_server(AgentService(store, desc), server)
    srv.add_health_and_reflection(server, [SERVICE_NAME])
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    referee = referee_pb2_grpc.RefereeStub(srv.channel(args.join))
    join = referee_pb2.JoinRequest(agent_id=args.id, address=f"127.0.0.1:{port}", protocol_version=1, role="learner")
    referee.Join(join, timeout=20)
    say(event="joined")
    # now turn rogue: the referee checked the policy at join; what it fetches next is bad
    bad = {"logits": torch.zeros(1, 7, 3)} if args.mode == "shape" else {"logits": torch.full((1, 5, 2), float("nan"))}
    store.set("policy", bad)
    Path(args.ready_file).write_text(json.dumps({"address": f"127.0.0.1:{port}", "mode": args.mode}))
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        try:
            referee.Heartbeat(referee_pb2.HeartbeatRequest(agent_id=args.id), timeout=5)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                say(event="dropped")
                try:
                    referee.Join(join, timeout=20)
                    say(event="joined")
                except grpc.RpcError as join_err:
                    say(event="refused", code=join_err.code().name, details=join_err.details())
            else:
                say(event="heartbeat_failed", code=err.code().name)
    server.stop(grace=0)


if __name__ == "__main__":
    main()
