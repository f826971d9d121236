"""A referee and agent servers, all real gRPC servers on 127.0.0.1 inside the test process
(for tests that need the wire but not separate processes)."""

from __future__ import annotations

from typing import Any

import torch

from agents.params import ParameterStore
from agents.service import AgentService
from services import server as srv
from services.processes import referee_server
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.league_config import RefereeConfig
from services.referee import Referee


class InProcessLeague:
    """``referee``: the real Referee behind a gRPC server; ``ref``: a stub to it; ``serve``
    starts an agent server (its store and description given) and returns its address."""

    def __init__(self, cfg: RefereeConfig) -> None:
        self.servers, self.channels = [], []
        self.referee = Referee(cfg)
        server, _ = referee_server(self.referee)  # as the referee process serves it (grpc.aio)
        port = srv.bind(server, "127.0.0.1", 0)
        server.start()
        self.servers.append(server)
        self.address = f"127.0.0.1:{port}"
        channel = srv.channel(self.address)
        self.channels.append(channel)
        self.ref = referee_pb2_grpc.RefereeStub(channel)

    def serve(self, params: dict[str, torch.Tensor], description: dict[str, Any]) -> str:
        server = srv.make_server(max_workers=4)
        agent_pb2_grpc.add_AgentServicer_to_server(AgentService(ParameterStore({"policy": params}), description),
                                                   server)
        port = srv.bind(server, "127.0.0.1", 0)
        server.start()
        self.servers.append(server)
        return f"127.0.0.1:{port}"

    def join(self, agent_id: str, address: str, role: str = "learner") -> referee_pb2.JoinResponse:
        return self.ref.Join(referee_pb2.JoinRequest(agent_id=agent_id, address=address, protocol_version=1,
                                                     role=role), timeout=20)

    def assert_join_refused(self, agent_id: str, address: str, message: str, role: str = "learner") -> None:
        """The join is refused with FAILED_PRECONDITION in one line that names ``message``, and
        the agent is not a member afterwards (nothing applied)."""
        import grpc
        import pytest

        with pytest.raises(grpc.RpcError) as err:
            self.join(agent_id, address, role=role)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = err.value.details()
        assert details.startswith(f"join of {agent_id} refused: ") and message in details, details
        assert "\n" not in details
        status = self.ref.Status(referee_pb2.StatusRequest(), timeout=10)
        assert agent_id not in {m.agent_id for m in status.members}

    def close(self) -> None:
        self.referee.stop()
        for channel in self.channels:
            channel.close()
        for server in self.servers:
            server.stop(grace=None)


def description(agent_id: str, game, policy_class: str = "tabular", **changes: Any) -> dict[str, Any]:
    """A frozen agent's description for ``game`` (fields overridden by ``changes``)."""
    return {"agent_id": agent_id, "env": "rps", "n_players": game.n_agents, "obs_dim": game.obs_dim,
            "n_actions": game.n_actions, "policy_class": policy_class, "policy_config": {}, "learning_rule": "frozen",
            "rule_config": {}, "capabilities": [], **changes}
