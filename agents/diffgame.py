"""An agent process of a differentiable-game league (docs/meva.md, "League mode").

It holds its game parameters and its update rule and serves them over the Agent service
(the project's parameter wire, versions and compare-and-set), with these kinds:

- ``x``: its parameters ``{"x": [1, d]}``; version ``1 + rounds played``.
- ``joint``: the joint point of its current match, pushed by the round driver (``league
  coordinator --mode diffgame``): ``{"joint": [1, n, d], "seat": [1], "round": [1]}``. A push
  makes the agent step at once with its rule (``league.meva.league.seat_update``, the
  embedded run's code) and publish the next ``x`` before the push returns.
- ``trajectory``: its optimisation trajectory, the last ``history`` rounds it played:
  ``before [R, n, d]`` (the joint points), ``after [R, d]`` (its own next parameters),
  ``seat [R]``, ``round [R]``; the ``meva`` coordinator reads it to train the model.
- ``meva-model`` (MeVa agents): the meta-value model's weights, pushed by the ``meva``
  coordinator; version ``v`` is trained on ``v - 1`` rounds, and round ``r`` is played with
  version ``r + 1``. When that version has not arrived within ``model_wait`` seconds (the
  coordinator is down or behind) the agent keeps its last model, logs one line, counts it in
  ``league_meva_model_fetch_failures_total`` and shows the version it uses in
  ``league_meva_model_version``.

Every call these processes make is one the access table already allows (the coordinators
read and push agents' parameters); no agent calls anyone."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch
from prometheus_client import Counter, Gauge

from agents.params import ParameterStore
from agents.service import AgentService, add_agent_service
from league.meva.league import (DiffLeagueConfig, initial_x, load_diff_league, load_model_params, model_params,
                                seat_update)
from league.meva.train import make_meta_value_model
from services import server as srv
from services.durable import write_json_atomic
from services.metrics import RpcMetrics, process_registry
from services.pki import Credentials
from services.wire import WireError

log = logging.getLogger("league.diffagent")

MODEL_KIND = "meva-model"
"""The kind under which the ``meva`` coordinator pushes the meta-value model."""


@dataclass
class DiffAgentConfig:
    """Where a differentiable-game agent serves and how long it waits for a model."""

    host: str = "127.0.0.1"
    """Interface of the gRPC and metrics servers."""
    port: int = 0
    """gRPC port (0: any free port)."""
    metrics_port: int = 0
    """Prometheus /metrics port (0: any free port)."""
    model_wait: float = 30.0
    """Seconds a MeVa agent waits for the round's model version before it steps with its last one."""
    history: int = 1024
    """Rounds of its trajectory the agent keeps serving (kind ``trajectory``)."""
    credentials: Credentials | None = None
    """Mutual-TLS credentials (role ``agent``); None: plaintext (``--insecure``)."""


class DiffAgentMetrics:
    """Prometheus metrics of a differentiable-game agent, labelled ``agent_id``."""

    def __init__(self, agent_id: str, game: str, rule: str) -> None:
        self.registry = process_registry("agent", {"agent_id": agent_id, "env": game, "role": "learner",
                                                   "policy": "differentiable", "rule": rule})
        labels, self.values = ["agent_id"], (agent_id,)
        self.rpc = RpcMetrics(self.registry)
        self.updates = Counter("league_agent_updates", "Learning updates applied", labels, registry=self.registry)
        self.version = Gauge("league_agent_policy_version", "Version of the agent's parameters (kind x)", labels,
                             registry=self.registry)
        self.value = Gauge("league_agent_game_value", "The agent's exact value at its last match's joint point",
                           labels, registry=self.registry)
        self.model_failures = Counter("league_meva_model_fetch_failures",
                                      "Rounds a MeVa agent stepped with an older model because the round's "
                                      "version did not arrive in time", labels, registry=self.registry)
        self.model_version = Gauge("league_meva_model_version", "Version of the meta-value model the agent used "
                                   "in its last step", labels, registry=self.registry)
        for metric in (self.updates, self.model_failures):
            metric.labels(*self.values)

    def observe_fetch(self, seconds: float) -> None:  # the AgentService's hook; not histogrammed here
        pass


class DiffGameAgent:
    """One agent of a differentiable-game league: ``start()`` serves; it learns on pushes."""

    def __init__(self, league: DiffLeagueConfig, agent_id: str, cfg: DiffAgentConfig) -> None:
        torch.set_num_threads(1)
        self.league, self.cfg = league, cfg
        self.spec = league.spec(agent_id)
        self.game = league.make_game()
        n, d = self.game.n_players, self.game.dim
        self.metrics = DiffAgentMetrics(agent_id, league.game, self.spec.rule)
        self.store = ParameterStore()
        self.store.set("x", {"x": initial_x(self.spec, self.game)})
        self.store.set("joint", {"joint": torch.zeros(1, n, d), "seat": torch.zeros(1, dtype=torch.int64),
                                 "round": torch.full((1,), -1, dtype=torch.int64)})
        self.store.set("trajectory", {"before": torch.zeros(0, n, d), "after": torch.zeros(0, d),
                                      "seat": torch.zeros(0, dtype=torch.int64),
                                      "round": torch.zeros(0, dtype=torch.int64)})
        self.model = None
        self.model_version = 0
        if self.spec.rule == "meva":  # version 1: the seeded initial model, the same as the coordinator's
            self.model = make_meta_value_model(self.game, league.meva)
            self.store.set(MODEL_KIND, model_params(self.model))
            self.model_version = 1
        self._step_lock = threading.Lock()
        self.server: grpc.Server | None = None
        self.metrics.version.labels(*self.metrics.values).set(1)

    def description(self) -> dict:
        return {"agent_id": self.spec.id, "env": self.league.game, "n_players": self.game.n_players,
                "obs_dim": 0, "n_actions": 0, "policy_class": "differentiable", "learning_rule": self.spec.rule,
                "rule_config": {k: v for k, v in vars(self.spec).items() if k != "id"},
                "capabilities": ["differentiable_game"]}

    # -- learning ------------------------------------------------------------------------
    def _model_for(self, round_: int):
        """The model for round ``round_``: version ``round_ + 1`` if it arrives within
        ``model_wait`` seconds, else the last one (logged and counted)."""
        want = round_ + 1
        if not self.store.wait_for_version(MODEL_KIND, want, self.cfg.model_wait):
            have = self.store.version(MODEL_KIND)
            self.metrics.model_failures.labels(*self.metrics.values).inc()
            log.warning("%s: model version %d of round %d did not arrive within %gs (the meva coordinator is down "
                        "or behind): stepping with model version %d", self.spec.id, want, round_,
                        self.cfg.model_wait, have)
        version, params = self.store.snapshot(MODEL_KIND)
        if version != self.model_version:
            load_model_params(self.model, params)
            self.model_version = version
        self.metrics.model_version.labels(*self.metrics.values).set(version)
        return self.model

    def step(self) -> None:
        """Step from the pushed joint point and publish ``x`` and the trajectory's new row."""
        with self._step_lock:
            _, pushed = self.store.snapshot("joint")
            joint, seat, round_ = pushed["joint"], int(pushed["seat"][0]), int(pushed["round"][0])
            if not 0 <= seat < self.game.n_players:
                raise ValueError(f"seat {seat} outside the game's {self.game.n_players} seats")
            model = self._model_for(round_) if self.spec.rule == "meva" else None
            new = seat_update(self.spec, self.game, joint, seat, model, self.league.meva.formulation)
            _, traj = self.store.snapshot("trajectory")
            row = {"before": joint, "after": new, "seat": pushed["seat"], "round": pushed["round"]}
            self.store.set("trajectory", {k: torch.cat([traj[k], row[k]])[-self.cfg.history:] for k in row})
            version = self.store.set("x", {"x": new})
            m = self.metrics
            m.updates.labels(*m.values).inc()
            m.version.labels(*m.values).set(version)
            with torch.no_grad():
                m.value.labels(*m.values).set(float(self.game.values(joint)[0, seat]))

    def check_push(self, kind: str, params) -> None:
        """A pushed ``joint`` holds a finite joint point of this game, a seat of it and a round
        >= 0 (anything else is refused with INVALID_ARGUMENT before it is applied)."""
        if kind != "joint":
            return
        n, d = self.game.n_players, self.game.dim
        if set(params) != {"joint", "seat", "round"}:
            raise WireError(f"a joint push holds joint, seat and round, got {sorted(params)}")
        joint, seat, round_ = params["joint"], params["seat"], params["round"]
        if tuple(joint.shape) != (1, n, d) or not joint.is_floating_point() or not bool(torch.isfinite(joint).all()):
            raise WireError(f"joint must be a finite float [1, {n}, {d}], got {joint.dtype} {tuple(joint.shape)}")
        if seat.numel() != 1 or round_.numel() != 1 or seat.is_floating_point() or round_.is_floating_point():
            raise WireError("seat and round must be one integer each")
        if not 0 <= int(seat.flatten()[0]) < n or int(round_.flatten()[0]) < 0:
            raise WireError(f"seat {int(seat.flatten()[0])} is not one of the game's {n} seats, or round "
                            f"{int(round_.flatten()[0])} < 0")

    def _on_push(self, kind: str, version: int) -> None:
        if kind == "joint":
            self.step()

    # -- serving -------------------------------------------------------------------------
    def start(self) -> tuple[int, int]:
        """Serve gRPC and /metrics; return (grpc port, metrics port)."""
        self.server = srv.make_server(interceptors=[self.metrics.rpc, *srv.access_control(
            self.cfg.credentials, self.metrics.registry)])
        add_agent_service(
            AgentService(self.store, self.description(), metrics=self.metrics, on_push=self._on_push,
                         check_push=self.check_push), self.server)
        self.health = srv.add_health_and_reflection(self.server, ["league.v1.Agent"])
        self.port = srv.bind(self.server, self.cfg.host, self.cfg.port, self.cfg.credentials)
        self.server.start()
        self._http, self.metrics_port = srv.serve_metrics(self.metrics.registry, self.cfg.host, self.cfg.metrics_port)
        return self.port, self.metrics_port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=0.5)
        http = getattr(self, "_http", None)
        if http is not None:
            http.shutdown()


def run_diff_agent(config: str, agent_id: str, cfg: DiffAgentConfig, ready_file: str | None) -> int:
    """The process: serve until SIGTERM/SIGINT."""
    agent = DiffGameAgent(load_diff_league(config), agent_id, cfg)
    agent.start()
    info = {"agent_id": agent_id, "address": f"{cfg.host}:{agent.port}",
            "metrics": f"http://{cfg.host}:{agent.metrics_port}/metrics", "pid": os.getpid()}
    if ready_file:
        write_json_atomic(Path(ready_file), info)
    print(json.dumps({"agent": info}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
    return 0
