"""The agent process: serves its parameters, plays where the referee puts it, and learns
from the trajectory batches the referee broadcasts, publishing a new version after each.

Kinds it serves: ``policy`` (its base parameters), ``lr`` (inner learning rate per chain
step) and, while a Markov chain against a peer is running, ``policy@<chain>`` (the
parameters adapted within that chain; version ``l`` holds ``phi_l``)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from agents.inbox import RoundInbox
from agents.matrl import COORDINATED_RULES
from agents.params import ParameterStore
from agents.policy_factory import initial_state, make_policy
from agents.service import AgentService, add_agent_service
from league.evaluators import SampledEvaluator
from league.envs.base import flat_dim
from league.policies import LSTMValue
from league.rollout import Episodes
from league.updates import make_update_rule, seat_step
from services import server as srv
from services.batches import episodes_of, read_batches
from services.client import Unreachable, connect
from services.gen.league.v1 import referee_pb2, referee_pb2_grpc
from services.league_config import AgentSpec, league_env, policy_class, policy_config, seats_of
from services.metrics import RpcMetrics, process_registry
from services.pki import Credentials
from services.spaces import space_to_json
from services.wire import WireError


@dataclass
class AgentRuntimeConfig:
    """Where an agent process runs and whom it talks to."""

    referee: str
    """host:port of the referee to join."""
    env: str = "ipd"
    """Environment (must match the referee's): a registered name or ``module:factory``."""
    n_players: int = 2
    """Seats of the game (must match the referee's ``n_players``)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """The environment's factory arguments (must match the referee's ``env_kwargs``)."""
    horizon: int = 50
    """Steps per episode (the referee's ``horizon``; it does not change a seat's spaces)."""
    gamma: float = 0.96
    """Discount of the agent's learning objective."""
    chain_length: int = 3
    """Learning rates kept per chain step."""
    population_seed: int = 0
    """Persona population that a ``persona:`` init indexes into."""
    checkpoint_dir: str = "runs/league/agents"
    """Where the agent checkpoints after every update and resumes from on restart."""
    host: str = "127.0.0.1"
    """Interface of the agent's gRPC and metrics servers."""
    port: int = 0
    """gRPC port (0: any free port)."""
    metrics_port: int = 0
    """Prometheus /metrics port (0: any free port)."""
    advertise: str = ""
    """Host name the referee and Prometheus should dial (default: host); ports are the bound ones."""
    heartbeat_seconds: float = 1.0
    """Seconds between heartbeats."""
    join_wait: float = 60.0
    """Seconds to keep retrying a referee that does not answer before giving up."""
    credentials: Credentials | None = None
    """The agent's mutual-TLS credentials (its certificate names role ``agent`` and its id);
    None: plaintext, for ``--insecure`` local experiments."""
    peer_access: str = "direct"
    """Who may read this agent's parameters (``services.auth.PEER_ACCESS``): ``direct`` (the
    referee and the coordinator) or ``inferred`` (opponent modeling: the referee only)."""
    round_wait_seconds: float = 1.0
    """Longest wait, from a round's first batch, for the rest of the round's batches that seat
    this agent (``agents.inbox``); then it learns what has arrived. Far above the milliseconds
    between a round's batches, far below the referee's fetch timeout."""


log = logging.getLogger("league.agent")


class JoinRefused(RuntimeError):
    """The referee refused (or could not be asked for) this agent's join; a one-line reason."""


class AgentMetrics:
    """The agent's Prometheus metrics, labelled ``agent_id``; its env, role, policy class and
    rule are constant labels of ``league_info``."""

    def __init__(self, spec: AgentSpec, env: str) -> None:
        self.registry = process_registry("agent", {"agent_id": spec.id, "env": env, "role": spec.role,
                                                   "policy": spec.policy, "rule": spec.rule})
        labels = ["agent_id"]
        self.values = (spec.id,)
        self.rpc = RpcMetrics(self.registry)
        self.episodes = Counter("league_agent_episodes", "Episodes this agent learned from", labels, registry=self.registry)
        self.updates = Counter("league_agent_updates", "Learning updates applied", labels, registry=self.registry)
        self.ret = Gauge("league_agent_mean_step_reward", "Mean per-step reward of the agent's last trajectory batch",
                         labels, registry=self.registry)
        self.version = Gauge("league_agent_policy_version", "Version of the agent's base policy", labels,
                             registry=self.registry)
        self.lr = Gauge("league_agent_learning_rate", "Mean inner learning rate over chain steps", labels,
                        registry=self.registry)
        self.last_update = Gauge("league_agent_last_update_timestamp_seconds", "Unix time of the last update",
                                 labels, registry=self.registry)
        self.learn_batches = Histogram("league_agent_learn_batches", "Broadcast batches taken in one learning "
                                       "step (a round's batches that seat this agent, learned together)", labels,
                                       registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.fetch = Histogram("league_agent_parameter_fetch_seconds", "Time serving one parameter fetch",
                               labels, registry=self.registry,
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

        for metric in (self.episodes, self.updates, self.fetch, self.learn_batches):
            metric.labels(*self.values)  # present (at 0) before the first observation

    def observe_fetch(self, seconds: float) -> None:
        self.fetch.labels(*self.values).observe(seconds)


class AgentProcess:
    """One agent: ``start()`` serves and joins, ``run()`` learns until ``stop()``."""

    def __init__(self, spec: AgentSpec, cfg: AgentRuntimeConfig) -> None:
        torch.set_num_threads(1)
        self.spec, self.cfg = spec, cfg
        self.env = league_env(cfg.env, cfg.env_kwargs, cfg.n_players, cfg.horizon)
        """The league's environment, as the referee builds it: the agent reads its seat's spaces."""
        self.seat = seats_of(spec.role, self.env.n_agents)[0]
        """The seat whose spaces the agent's policy is sized for (a meta-agent 0, a persona 1,
        a learner 0); the referee admits it only if they fit every seat its role may take."""
        self.observation_space = self.env.observation_spaces[self.seat]
        self.action_space = self.env.action_spaces[self.seat]
        self.policy = make_policy(spec, self.env, self.seat)
        self.rule = make_update_rule(spec.rule)
        self.evaluator = SampledEvaluator(None, [], 0, 0, cfg.gamma, torch.Generator(), env=self.env)
        self.metrics = AgentMetrics(spec, cfg.env)
        self.checkpoint = Path(cfg.checkpoint_dir) / f"{spec.id}.pt"
        self.store = ParameterStore()
        self._learner_state: dict[str, Any] | None = None
        """The checkpoint's learner-local state of a coordinated rule, until the rule takes it."""
        self._restore_or_init()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.server: grpc.Server | None = None
        coordinated = COORDINATED_RULES.get(spec.rule)
        self.coordinated = coordinated(self) if coordinated is not None else None
        """A rule whose rounds a coordinator drives (``agents.matrl``): it takes the broadcast
        batches and the coordinator's pushes instead of ``seat_step``."""
        if self.coordinated is not None:
            self.coordinated.load_state_dict(self._learner_state)  # a restarted agent resumes its critic, ...
        self._learner_state = None

    # -- state ---------------------------------------------------------------------------
    def _restore_or_init(self) -> None:
        if self.checkpoint.exists():
            state = torch.load(self.checkpoint, weights_only=False)
            if state.get("agent_id") != self.spec.id:
                raise ValueError(f"{self.checkpoint} belongs to agent {state.get('agent_id')!r}, not {self.spec.id!r}")
            for kind in state["kinds"]:
                version, params = state["kinds"][kind]
                self.store.restore(kind, version, params)
            self._learner_state = state.get("learner")
            self.resumed = True
        else:
            policy, lr = initial_state(self.spec, self.policy, self.env, self.cfg.population_seed,
                                       self.cfg.chain_length, self.cfg.env)
            self.store.set("policy", policy)
            self.store.set("lr", {"lr": lr})
            if self.spec.role == "meta":  # the coordinator's critic, served for inspection
                value_net = LSTMValue(obs_dim=flat_dim(self.observation_space), hidden=self.spec.hidden)
                self.store.set("value", value_net.init_params(torch.Generator().manual_seed(0)))
            self.resumed = False
        self.metrics.version.labels(*self.metrics.values).set(self.store.version("policy"))
        self.metrics.lr.labels(*self.metrics.values).set(float(self.store.snapshot("lr")[1]["lr"].mean()))

    def save(self, publishing: dict[str, tuple[int, dict[str, torch.Tensor]]] | None = None) -> None:
        """Checkpoint base policy, learning rates and the other kinds atomically (write, then
        rename), with a coordinated rule's learner-local state (``learner``: its critic, ...,
        as its last completed round left them). ``publishing``: ``kind -> (version, params)``
        written in place of the store's, for a caller that persists an update before it
        publishes it."""
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        kinds = [k for k in self.store.kinds() if not k.startswith("policy@")]
        state = {"agent_id": self.spec.id, "kinds": {k: self.store.get(k) for k in kinds}}
        state["kinds"].update(publishing or {})
        coordinated = getattr(self, "coordinated", None)  # None while the constructor runs
        if coordinated is not None:
            state["learner"] = coordinated.state_dict()
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)

    def description(self) -> dict:
        return {"agent_id": self.spec.id, "env": self.cfg.env, "n_players": self.env.n_agents,
                "env_kwargs_json": json.dumps(self.cfg.env_kwargs, sort_keys=True),
                "observation_space_json": space_to_json(self.observation_space),
                "action_space_json": space_to_json(self.action_space),
                "obs_dim": flat_dim(self.observation_space), "n_actions": int(getattr(self.action_space, "n", 0)),
                "policy_class": policy_class(self.spec), "policy_config": policy_config(self.spec),
                "learning_rule": self.spec.rule,
                "rule_config": {"gamma": self.cfg.gamma, "lr": self.store.snapshot("lr")[1]["lr"].flatten().tolist(),
                                "baseline": "linear_feature", "objective": "dice"},
                "capabilities": ["chains", "policy_gradient"]}

    # -- learning ------------------------------------------------------------------------
    def learn_many(self, batches: list[referee_pb2.TrajectoryBatch]) -> None:
        """Updates from several broadcast batches. Batches of different chains at the same
        step are learned in one batched step (chains as the tensor dimension: the same
        numbers as one step per chain, at a fraction of the cost)."""
        groups: dict[tuple, list[tuple]] = {}
        for batch in batches:
            item = self._prepare(batch)
            if item is not None:
                chain, step, seat = item[0], batch.step, item[2]
                groups.setdefault((bool(chain), step, seat) if chain else ("", id(batch)), []).append(item)
        for items in groups.values():
            self._update(items)

    def _prepare(self, batch: referee_pb2.TrajectoryBatch):
        seats = [s.agent_id for s in batch.seats]
        if self.spec.id not in seats:
            return None
        seat = seats.index(self.spec.id)
        episodes = episodes_of(batch)  # score reads this seat's own observations and actions
        m = self.metrics
        m.episodes.labels(*m.values).inc(episodes.shape[1])
        m.ret.labels(*m.values).set(float(episodes.rewards[..., seat].mean()))
        if not self.rule.learns:
            return None
        chain = batch.chain_id
        source = "policy" if not chain or batch.step == 0 else f"policy@{chain}"
        target = f"policy@{chain}" if chain else "policy"
        return chain, batch, seat, source, target, episodes

    def _update(self, items: list[tuple]) -> None:
        if self.coordinated is not None:
            return self.coordinated.observe(items)
        m = self.metrics
        with self._lock:
            live = []
            for chain, batch, seat, source, target, episodes in items:
                try:
                    version, params = self.store.snapshot(source)
                except KeyError:
                    continue  # a chain this process never saw (it restarted mid-chain): voided by the referee
                if version != batch.seats[seat].behaviour_version:
                    continue  # stale batch: the parameters moved on since it was played
                if chain and batch.last_step:  # phi_L played: nothing learns phi_{L+1}, the chain is over
                    self.store.discard(target)
                    continue
                live.append((chain, batch, seat, target, episodes, params))
            if not live:
                return
            seat, step = live[0][2], live[0][1].step
            lr_all = self.store.snapshot("lr")[1]["lr"]
            lr = lr_all[:, min(step, lr_all.shape[1] - 1)].expand(len(live))
            params = {k: torch.cat([item[5][k] for item in live]) for k in live[0][5]}
            episodes = Episodes.cat([item[4] for item in live])  # every field: per-seat data and dones too
            new = seat_step(self.rule, self.evaluator, self.policy, params, episodes, seat, lr)
            for b, (_, _, _, target, _, _) in enumerate(live):
                self.store.set(target, {k: v[b:b + 1] for k, v in new.items()})
            if not live[0][0]:
                m.version.labels(*m.values).set(self.store.version("policy"))
                self.save()
        m.updates.labels(*m.values).inc(len(live))
        m.last_update.labels(*m.values).set(time.time())

    # -- processes and sockets -----------------------------------------------------------
    def start(self) -> tuple[int, int]:
        """Serve gRPC and /metrics; return (grpc port, metrics port)."""
        self.server = srv.make_server(interceptors=[
            self.metrics.rpc, *srv.access_control(self.cfg.credentials, self.metrics.registry, self.cfg.peer_access)])
        service = AgentService(self.store, self.description(), metrics=self.metrics, on_push=self._on_push,
                               peer_access=self.cfg.peer_access)
        add_agent_service(service, self.server)
        self.health = srv.add_health_and_reflection(self.server, ["league.v1.Agent"])
        self.port = srv.bind(self.server, self.cfg.host, self.cfg.port, self.cfg.credentials)
        self.server.start()
        self._http, self.metrics_port = srv.serve_metrics(self.metrics.registry, self.cfg.host, self.cfg.metrics_port)
        return self.port, self.metrics_port

    def _on_push(self, kind: str, version: int) -> None:
        m = self.metrics
        if kind == "policy":
            m.version.labels(*m.values).set(version)
        if kind == "lr":
            m.lr.labels(*m.values).set(float(self.store.snapshot("lr")[1]["lr"].mean()))
        m.last_update.labels(*m.values).set(time.time())
        with self._lock:
            saved = self.coordinated is not None and self.coordinated.on_push(kind)
            if not saved:  # a committed MATRL round wrote the checkpoint already, the push's kind in it
                self.save()

    def advertised_host(self) -> str:
        return self.cfg.advertise or self.cfg.host

    def address(self) -> str:
        return f"{self.advertised_host()}:{self.port}"

    def _join(self, stub: referee_pb2_grpc.RefereeStub) -> float:
        reply = stub.Join(referee_pb2.JoinRequest(
            agent_id=self.spec.id, address=self.address(), protocol_version=srv.PROTOCOL_VERSION,
            role=self.spec.role, metrics_address=f"{self.advertised_host()}:{self.metrics_port}"), timeout=20)
        log.info("%s joined the league at %s (lease %.1fs)", self.spec.id, self.cfg.referee, reply.lease_seconds)
        return reply.lease_seconds

    def _heartbeat(self, stub: referee_pb2_grpc.RefereeStub) -> None:
        failing = False
        while not self._stop.wait(self.cfg.heartbeat_seconds):
            try:
                stub.Heartbeat(referee_pb2.HeartbeatRequest(agent_id=self.spec.id), timeout=5)
                if failing:
                    log.info("heartbeats reach the referee at %s again", self.cfg.referee)
                failing = False
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:  # the referee dropped us: join again
                    log.warning("the referee dropped %s (lease expired): joining again", self.spec.id)
                    try:
                        self._join(stub)
                    except grpc.RpcError as join_err:
                        log.warning("join again failed: %s %s", join_err.code().name, join_err.details())
                elif not failing and not self._stop.is_set():
                    log.warning("heartbeat to the referee at %s failed: %s", self.cfg.referee, err.code().name)
                    failing = True

    def run(self) -> None:
        """Join the referee and learn from its broadcast until stopped or the league ends.

        Raises client.Unreachable when no referee answers within ``join_wait`` and JoinRefused
        when the referee refuses the join (both one-line messages)."""
        channel = connect(self.cfg.referee, self.cfg.join_wait, credentials=self.cfg.credentials)
        stub = referee_pb2_grpc.RefereeStub(channel)
        stream = stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=self.spec.id))
        try:
            self._join(stub)
        except grpc.RpcError as err:
            stream.cancel()
            self.stop()
            raise JoinRefused(f"the referee at {self.cfg.referee} refused {self.spec.id}: {err.code().name}: "
                              f"{(err.details() or '').splitlines()[0] if err.details() else ''}") from None
        threading.Thread(target=self._heartbeat, args=(stub,), daemon=True).start()
        self._stream = stream
        inbox = RoundInbox(self.spec.id, self.cfg.round_wait_seconds)
        learner = threading.Thread(target=self._learn_loop, args=(inbox,), daemon=True)
        learner.start()
        try:
            while not self._stop.is_set():
                try:
                    for batch in read_batches(stream):  # a chunked batch arrives whole and checked
                        if self._stop.is_set():
                            break
                        inbox.put(batch)
                    log.info("the referee at %s ended the broadcast: the league is over", self.cfg.referee)
                    break
                except WireError as err:  # a broken chunked batch: drop the stream, subscribe again
                    log.warning("malformed batch on the broadcast (%s): subscribing again", err)
                    stream.cancel()
                    self._stop.wait(0.5)
                    stream = self._stream = stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=self.spec.id))
                    continue
                except grpc.RpcError as err:
                    if self._stop.is_set():  # our own cancel
                        break
                    if err.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
                                      grpc.StatusCode.ABORTED):  # cut off (behind, or dropped): subscribe again
                        log.warning("broadcast cut off (%s: %s): subscribing again", err.code().name, err.details())
                        self._stop.wait(0.5)
                        stream = self._stream = stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=self.spec.id))
                        continue
                    log.warning("lost the referee at %s (%s): reconnecting for up to %gs", self.cfg.referee,
                                err.code().name, self.cfg.join_wait)
                    stream = self._stream = self._reconnect(stub)
        finally:
            inbox.put(None)
            learner.join(timeout=30)
            self.stop()
            try:
                stub.Leave(referee_pb2.LeaveRequest(agent_id=self.spec.id), timeout=2)
            except grpc.RpcError:
                pass

    def _reconnect(self, stub: referee_pb2_grpc.RefereeStub):
        """Subscribe and join again once the referee is back (a restarted referee resumes the
        league), retrying with backoff for ``join_wait`` seconds; then Unreachable."""
        start, delay, said = time.monotonic(), 0.25, -10.0
        while not self._stop.is_set():
            stream = stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=self.spec.id))
            try:
                self._join(stub)
                log.info("reconnected to the referee at %s", self.cfg.referee)
                return stream
            except grpc.RpcError as err:
                stream.cancel()
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise JoinRefused(f"the referee at {self.cfg.referee} refused {self.spec.id}: {err.code().name}: "
                                      f"{(err.details() or '').splitlines()[0] if err.details() else ''}") from None
            waited = time.monotonic() - start
            if waited > self.cfg.join_wait:
                raise Unreachable(f"lost the referee at {self.cfg.referee}; it did not come back within "
                                  f"{self.cfg.join_wait:g}s")
            if waited - said >= 10.0:
                log.warning("waiting for the referee at %s", self.cfg.referee)
                said = waited
            self._stop.wait(delay)
            delay = min(2 * delay, 5.0)
        return stub.Subscribe(referee_pb2.SubscribeRequest(agent_id=self.spec.id))

    def _learn_loop(self, inbox: RoundInbox) -> None:
        """Learn round by round: the batches of a round that seat this agent are taken
        together (``RoundInbox.take``), so its chains are learned as one batched step."""
        while True:
            batches, done = inbox.take()
            if batches:
                m = self.metrics
                m.learn_batches.labels(*m.values).observe(len(batches))
                try:
                    self.learn_many(batches)
                except Exception:  # noqa: BLE001 - a batch it cannot learn from must not end its learning
                    log.exception("%s could not learn from %d batches", self.spec.id, len(batches))
            if done:
                return

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.cancel()
        if self.server is not None:
            self.server.stop(grace=0.5)
        http = getattr(self, "_http", None)
        if http is not None:
            http.shutdown()
