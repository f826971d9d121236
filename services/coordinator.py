"""The coordinator, ``meta-mapg`` mode: Algorithm 1 across live processes.

Each iteration it pushes a meta-batch of training personas to the persona agents, then
unrolls the library's own ``meta_objective`` with a :class:`RemoteEvaluator`: every chain
step is played by the referee (with the parameters the agents published) and scored with
the coordinator's differentiable replica. Before each step it checks that every agent's
published parameters equal the replica's (the agents learned on their own from the
broadcast); a mismatch aborts the iteration. It then applies the meta-update (the library's
``MetaLearner``) and pushes the new initial policy, learning rates and critic to the
meta-agent."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from league.config import ExperimentConfig
from league.evaluators import SampledEvaluator
from league.learner import MetaLearner
from league.meta import Critic, meta_objective
from league.methods import make_method
from league.policies.base import Params
from league.rollout import Batch, Episodes, score
from league.setting import build_setting
from services import server as srv
from services.client import describe, fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.metrics import RpcMetrics, process_registry
from services.pki import Credentials
from services.wire import decode_tensor

log = logging.getLogger("league.coordinator")

SUPPORTED = ("meta-mapg", "meta-pg", "no-own-learning")


class ReplicaMismatch(RuntimeError):
    """An agent published parameters that differ from the coordinator's replica of its update."""


@dataclass
class CoordinatorConfig:
    """Where the coordinator finds the league's processes."""

    referee: str
    """host:port of the referee."""
    meta_agent: str
    """Agent id of the meta-agent process."""
    personas: list[str]
    """Agent ids of the persona processes; their number is the meta-batch size."""
    tolerance: float = 1e-5
    """Largest absolute difference allowed between a published update and the replica's."""
    timeout: float = 60.0
    """Seconds to wait for an RPC."""
    credentials: Credentials | None = None
    """The coordinator's mutual-TLS credentials (role ``coordinator``); None: plaintext (``--insecure``)."""


class RemoteEvaluator(SampledEvaluator):
    """A sampled evaluator whose episodes come from the referee: ``observe`` checks the
    agents' published parameters against the replica, has the referee play the chain step,
    and scores the episodes with the replica's (differentiable) parameters."""

    def __init__(self, base: SampledEvaluator, coordinator: "Coordinator", chain_ids: list[str],
                 base_versions: list[int]) -> None:
        super().__init__(base.game, base.policies, base.n_episodes, base.horizon, base.gamma, base.generator,
                         base.dtype, base.use_baseline)
        self.coordinator = coordinator
        self.chain_ids = chain_ids
        self.base_versions = base_versions  # [seat 0 version, persona versions...] of kind "policy"
        self.step = 0
        self.length = coordinator.experiment.chain.length

    def _seats(self, b: int) -> list[str]:
        return [self.coordinator.cfg.meta_agent, self.coordinator.cfg.personas[b]]

    def observe(self, params: Sequence[Params]) -> Batch:
        l, c = self.step, self.coordinator
        if l > 0:
            c.verify_replica(self.chain_ids, l, params)
        matches = []
        for b, chain in enumerate(self.chain_ids):
            seats = self._seats(b)
            kinds = ["policy"] * 2 if l == 0 else [f"policy@{chain}"] * 2
            versions = [self.base_versions[0], self.base_versions[1 + b]] if l == 0 else [l, l]
            matches.append(referee_pb2.MatchSpec(
                match_id=f"{chain}.{l}", chain_id=chain, step=l, last_step=l == self.length,
                seats=[referee_pb2.PinnedSeat(agent_id=a, kind=k, version=v) for a, k, v in zip(seats, kinds, versions)]))
        reply = c.referee.PlayMatches(referee_pb2.PlayMatchesRequest(
            matches=matches, episodes=self.n_episodes, horizon=self.horizon,
            rng_state=self.generator.get_state().numpy().tobytes()), timeout=c.cfg.timeout)
        self.generator.set_state(torch.frombuffer(bytearray(reply.rng_state), dtype=torch.uint8))
        episodes = Episodes(*(torch.stack([decode_tensor(getattr(batch, f)) for batch in reply.batches])
                              for f in ("obs", "actions", "rewards")))
        self.step += 1
        return score(self.policies, params, episodes)


class Coordinator:
    """Runs meta-training iterations against the league; ``iterate()`` is one of them."""

    def __init__(self, experiment: ExperimentConfig, method: str, seed: int, cfg: CoordinatorConfig) -> None:
        if method not in SUPPORTED:
            raise ValueError(f"the coordinator runs {', '.join(SUPPORTED)}; {method!r} needs look-ahead "
                             "rollouts that only the embedded path provides")
        torch.set_num_threads(1)
        self.experiment, self.cfg = experiment, cfg
        self.setting = build_setting(experiment)
        if self.setting.n_peers != 1 or len(cfg.personas) < 1:
            raise ValueError("meta-mapg mode needs a two-player game and at least one persona agent")
        self.method = make_method(method, experiment.agent.lookahead, experiment.train.estimator)
        self.method_name = method
        # the same random stream, drawn in the same order, as league.experiment.train_one
        self.generator = torch.Generator().manual_seed(seed)
        g = self.generator
        L, dtype = experiment.chain.length, self.setting.dtype
        policy = self.setting.meta_policy.init_params(g)
        lr = torch.full((1, L), experiment.agent.inner_lr, dtype=dtype)
        critic = Critic(self.setting.value_net, self.setting.value_net.init_params(g), experiment.chain.gamma,
                        experiment.train.gae_lambda)
        self.learner = MetaLearner(policy, lr, self.method.learn_lr, critic, experiment.train.outer, g)
        self.evaluator = self.setting.evaluator(g)
        self.channel = srv.channel(cfg.referee, cfg.credentials)
        self.referee = referee_pb2_grpc.RefereeStub(self.channel)
        self.stubs: dict[str, agent_pb2_grpc.AgentStub] = {}
        self.iteration = 0
        self.metrics = CoordinatorMetrics(experiment.game.name, method)

    # -- agents --------------------------------------------------------------------------
    def _stub(self, agent_id: str) -> agent_pb2_grpc.AgentStub:
        if agent_id not in self.stubs:
            status = self.referee.Status(referee_pb2.StatusRequest(), timeout=self.cfg.timeout)
            members = {m.agent_id: m.address for m in status.members}
            if agent_id not in members:
                raise RuntimeError(f"{agent_id} is not a member of the league at {self.cfg.referee}")
            self.stubs[agent_id] = agent_pb2_grpc.AgentStub(srv.channel(members[agent_id], self.cfg.credentials))
        return self.stubs[agent_id]

    def _version(self, agent_id: str, kind: str) -> int:
        return describe(self._stub(agent_id), timeout=self.cfg.timeout).versions.get(kind, 0)

    def _push(self, agent_id: str, kind: str, params: Params) -> int:
        stub = self._stub(agent_id)
        return push_parameters(stub, kind, {k: v.detach() for k, v in params.items()},
                               self._version(agent_id, kind), timeout=self.cfg.timeout)

    def wait_for_members(self, timeout: float = 120.0) -> None:
        needed = {self.cfg.meta_agent, *self.cfg.personas}
        deadline = time.monotonic() + timeout
        while True:
            status = self.referee.Status(referee_pb2.StatusRequest(), timeout=self.cfg.timeout)
            missing = needed - {m.agent_id for m in status.members}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents {sorted(missing)} did not join within {timeout}s")
            time.sleep(0.1)

    def verify_replica(self, chain_ids: list[str], step: int, params: Sequence[Params]) -> None:
        """Every seat's published ``policy@chain`` at version ``step`` equals the replica's."""
        for b, chain in enumerate(chain_ids):
            for seat, agent in enumerate([self.cfg.meta_agent, self.cfg.personas[b]]):
                got = fetch_parameters(self._stub(agent), f"policy@{chain}", min_version=step,
                                       timeout=self.cfg.timeout + 5.0, wait_seconds=self.cfg.timeout)
                if got.params is None:
                    raise ReplicaMismatch(f"{agent} did not publish step {step} of chain {chain} "
                                          f"within {self.cfg.timeout}s")
                for name, replica in params[seat].items():
                    diff = float((got.params[name] - replica[b:b + 1].detach()).abs().max())
                    if diff > self.cfg.tolerance:
                        raise ReplicaMismatch(
                            f"{agent}'s published step-{step} update of chain {chain} differs from the coordinator's "
                            f"replica in {name!r} by {diff:.3g} (> {self.cfg.tolerance}): its learning rule or "
                            "learning rate is not the one the coordinator replicates; round aborted")

    # -- Algorithm 1 ---------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        """One meta-training iteration through the league."""
        t0 = time.perf_counter()
        cfg, B = self.experiment, len(self.cfg.personas)
        if cfg.train.meta_batch != B:
            raise ValueError(f"train.meta_batch is {cfg.train.meta_batch} but {B} persona agents are configured")
        train = self.setting.personas.train
        idx = torch.randint(train.shape[0], (B,), generator=self.generator)
        peers = self.setting.peer_params(train[idx])
        # the league's personas and meta-agent start this iteration's chains from these
        versions = [self._push(self.cfg.meta_agent, "policy", self.learner.policy)]
        self._push(self.cfg.meta_agent, "lr", {"lr": self.learner.lr})
        versions += [self._push(agent, "policy", {"logits": peers[0]["logits"][b:b + 1]})
                     for b, agent in enumerate(self.cfg.personas)]
        self.iteration += 1
        chain_ids = [f"it{self.iteration}.{b}" for b in range(B)]
        evaluator = RemoteEvaluator(self.evaluator, self, chain_ids, versions)
        result = meta_objective(self.method, evaluator, self.learner.policy, self.learner.lr, peers,
                                self.setting.peer_lrs(B), cfg.chain.length, self.learner.critic,
                                cfg.train.entropy_weight, cfg.train.include_initial, cfg.train.per_step)
        stats = self.learner.step(result)
        self._push(self.cfg.meta_agent, "policy", self.learner.policy)
        self._push(self.cfg.meta_agent, "lr", {"lr": self.learner.lr})
        self._push(self.cfg.meta_agent, "value", self.learner.critic.params)
        stats["seconds"] = time.perf_counter() - t0
        self.metrics.record(self.iteration, stats, self.learner.lr)
        return stats


class CoordinatorMetrics:
    """The coordinator's Prometheus metrics; env and method are constant labels of ``league_info``."""

    def __init__(self, env: str, method: str = "") -> None:
        self.registry = process_registry("coordinator", {"env": env, "method": method})
        self.env = env
        self.rpc = RpcMetrics(self.registry)
        self.iterations = Counter("league_coordinator_iterations", "Meta-training iterations completed",
                                  registry=self.registry)
        self.objective = Gauge("league_meta_objective", "Mean meta-objective of the last iteration",
                               registry=self.registry)
        self.lr = Gauge("league_meta_learning_rate", "The meta-agent's learned inner learning rate per chain step",
                        ["step"], registry=self.registry)
        self.seconds = Histogram("league_coordinator_iteration_seconds", "Wall time of one meta-training iteration",
                                 registry=self.registry,
                                 buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000))

    def record(self, iteration: int, stats: dict[str, float], lr: torch.Tensor) -> None:
        self.iterations.inc()
        self.objective.set(stats["objective"])
        self.seconds.observe(stats["seconds"])
        for l, value in enumerate(lr.detach().flatten().tolist()):
            self.lr.labels(str(l)).set(value)


def run_coordinator(experiment: ExperimentConfig, method: str, seed: int, cfg: CoordinatorConfig, iterations: int,
                    host: str, port: int, metrics_port: int, results: str | None, ready_file: str | None,
                    linger: float = 0.0) -> int:
    """The coordinator process: serve Status, health and /metrics; run the iterations."""
    import json
    import os
    from pathlib import Path

    from services.gen.league.v1 import coordinator_pb2, coordinator_pb2_grpc

    coordinator = Coordinator(experiment, method, seed, cfg)
    state = {"state": "waiting", "objective": float("nan")}

    class Service(coordinator_pb2_grpc.CoordinatorServicer):
        def Status(self, request, context):
            return coordinator_pb2.CoordinatorStatus(
                mode="meta-mapg", iteration=coordinator.iteration, iterations=iterations,
                last_objective=state["objective"], state=state["state"])

    server = srv.make_server(interceptors=[coordinator.metrics.rpc,
                                           *srv.access_control(cfg.credentials, coordinator.metrics.registry)])
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(Service(), server)
    health = srv.add_health_and_reflection(server, ["league.v1.Coordinator"])
    bound = srv.bind(server, host, port, cfg.credentials)
    server.start()
    http, mport = srv.serve_metrics(coordinator.metrics.registry, host, metrics_port)
    info = {"address": f"{host}:{bound}", "metrics": f"http://{host}:{mport}/metrics", "pid": os.getpid()}
    if ready_file:
        Path(ready_file).write_text(json.dumps(info))
    print(json.dumps({"coordinator": info}), flush=True)
    history = []

    def write_results() -> None:
        if results:
            Path(results).write_text(json.dumps({
                "method": method, "seed": seed, "iterations": history, "state": state["state"],
                "policy": {k: v.detach().tolist() for k, v in coordinator.learner.policy.items()},
                "lr": coordinator.learner.lr.detach().tolist()}))

    try:
        coordinator.wait_for_members()
        state["state"] = "training"
        for _ in range(iterations):
            stats = coordinator.iterate()
            state["objective"] = stats["objective"]
            history.append({"iteration": coordinator.iteration, **stats})
            log.info("iteration %d: %s", coordinator.iteration, stats)
        state["state"] = "done"
        write_results()
        time.sleep(linger)  # keep /metrics up for a last scrape
    except (ReplicaMismatch, grpc.RpcError, TimeoutError, ValueError) as err:
        state["state"] = f"aborted: {err}"
        log.error("coordinator stopped: %s", err)
        write_results()
        raise
    finally:
        health.enter_graceful_shutdown()
        server.stop(grace=1.0).wait()
        http.shutdown()
    return 0
