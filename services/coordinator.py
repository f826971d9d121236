"""The coordinator process: a small loop that drives one coordinator mode.

A mode (:class:`CoordinatorMode`) is one family's centralized training across live
processes; modes are registered in :data:`MODES` by name (``--mode``). The loop is::

    mode = MODES[name](experiment, method, seed, cfg)
    mode.wait_for_members()
    for _ in range(iterations):
        stats = mode.iterate()

``meta-mapg`` mode (:class:`MetaMapgMode`) is Algorithm 1 across processes, for any number
of players: each chain seats the meta-agent and ``n - 1`` persona processes (chain ``b`` the
``b``-th ``n - 1`` of ``--personas``, in seat order). Each iteration
it pushes a meta-batch of training personas to the persona agents, then runs the library's
own meta-training step (:class:`league.meta_training.MetaTraining`, the same object the
embedded ``train_one`` drives) with a :class:`RemoteEvaluator`: every chain step is played
by the referee (with the parameters the agents published) and scored with the
coordinator's differentiable replica. Before each step it checks that every agent's
published parameters equal the replica's (the agents learned on their own from the
broadcast); a mismatch aborts the iteration. It then pushes the new initial policy,
learning rates and critic to the meta-agent.

``opponent-modeling`` mode (:class:`OpponentModelingMode`) is the same loop with the method
``meta-mapg-om``: the meta-gradient flows through peer parameters inferred from the
referee's episodes, and no persona's parameters are ever read (docs/security.md,
``peer_access = "inferred"``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from league.config import ExperimentConfig
from league.evaluators import SampledEvaluator
from league.meta_training import MetaTraining
from league.policies.base import Params
from league.rollout import Episodes
from services import server as srv
from services.client import AgentClient, describe, fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.metrics import RpcMetrics, process_registry
from services.durable import write_json_atomic
from services.pki import Credentials
from services.batches import episodes_of, read_batches
from services.coordinator_meva import DiffGameRoundsMode, MevaMode

log = logging.getLogger("league.coordinator")



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
    """Agent ids of the persona processes, ``n - 1`` per chain of an ``n``-player game (their
    number is ``(n - 1) x meta_batch``): chain ``b`` seats ``personas[b*(n-1) : (b+1)*(n-1)]``
    at seats ``1..n-1`` in that order (the referee's default persona grouping)."""
    tolerance: float = 1e-5
    """Largest absolute difference allowed between a published update and the replica's."""
    timeout: float = 60.0
    """Seconds to wait for an RPC."""
    credentials: Credentials | None = None
    """The coordinator's mutual-TLS credentials (role ``coordinator``); None: plaintext (``--insecure``)."""
    agents: dict[str, str] = field(default_factory=dict)
    """Agent id -> ``host:port``, in seat order (``--agents ID[=HOST:PORT],...``). Mode ``matrl``
    trains every seat: consecutive groups of the game's ``n`` ids play together, reached
    through the referee (the address is ""). Modes ``diffgame`` and ``meva`` dial the agents of
    a differentiable-game league, which join no referee, at their addresses."""


class RemoteEvaluator(SampledEvaluator):
    """A sampled evaluator whose episodes come from the referee: ``play`` checks the agents'
    published parameters against the replica, then has the referee play the chain step with
    them; ``observe`` (inherited) scores the episodes with the replica's (differentiable)
    parameters."""

    def __init__(self, base: SampledEvaluator, coordinator: "MetaMapgMode", chain_ids: list[str],
                 base_versions: dict[str, int]) -> None:
        super().__init__(base.game, base.policies, base.n_episodes, base.horizon, base.gamma, base.generator,
                         base.dtype, base.use_baseline, base.env)
        self.coordinator = coordinator
        self.chain_ids = chain_ids
        self.base_versions = base_versions  # agent id -> its version of kind "policy" this iteration
        self.step = 0
        self.length = coordinator.experiment.chain.length

    def play(self, params: Sequence[Params]) -> Episodes:
        l, c = self.step, self.coordinator
        if l > 0:
            c.verify_replica(self.chain_ids, l, params)
        matches = []
        for b, chain in enumerate(self.chain_ids):
            seats = c.seats(b)
            kinds = ["policy" if l == 0 else f"policy@{chain}"] * len(seats)
            versions = [self.base_versions[a] for a in seats] if l == 0 else [l] * len(seats)
            matches.append(referee_pb2.MatchSpec(
                match_id=f"{chain}.{l}", chain_id=chain, step=l, last_step=l == self.length,
                seats=[referee_pb2.PinnedSeat(agent_id=a, kind=k, version=v) for a, k, v in zip(seats, kinds, versions)]))
        replies = list(c.referee.PlayMatches(referee_pb2.PlayMatchesRequest(
            matches=matches, episodes=self.n_episodes, horizon=self.horizon,
            rng_state=self.generator.get_state().numpy().tobytes()), timeout=c.cfg.timeout))
        self.generator.set_state(torch.frombuffer(bytearray(replies[-1].rng_state), dtype=torch.uint8))
        played = [episodes_of(batch) for batch in read_batches(b for reply in replies for b in reply.batches)]
        self.step += 1
        return Episodes.cat(played)


class CoordinatorMode(Protocol):
    """One family's centralized training across the league's processes."""

    name: str
    methods: tuple[str, ...]
    """The training methods (``league.methods.METHODS`` names) the mode runs; the first is
    the default of ``league coordinator --mode NAME``."""
    iteration: int
    metrics: "CoordinatorMetrics"

    def wait_for_members(self, timeout: float = 120.0) -> None:
        """Block until every agent the mode drives has joined the league."""

    def iterate(self) -> dict[str, float]:
        """One training iteration through the league; returns its statistics."""

    def result(self) -> dict[str, Any]:
        """What the mode has learned so far, JSON-ready (written to ``--results``)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the next ``iterate()`` depends on (``torch.save``-able), saved to
        ``--state`` after every completed iteration."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output: the next ``iterate()`` is the one that
        followed it (or finishes the iteration it was saved in, by :attr:`persist`)."""

    persist: Callable[[], None]
    """Save ``--state`` now, mid-iteration, with the history so far (set by ``run_coordinator``;
    a no-op without ``--state``): a mode calls it where a restart must not replay what it did,
    e.g. ``matrl`` once a round is decided, before its first commit push. A mode that never calls
    it is saved after every completed iteration only."""


class MetaMapgMode:
    """Meta-MAPG-family meta-training (Algorithm 1) through the league; ``iterate()`` is one
    iteration."""

    name = "meta-mapg"
    methods: tuple[str, ...] = ("meta-mapg", "meta-pg", "no-own-learning")
    """The methods this mode runs (LOLA-DiCE needs look-ahead rollouts only the embedded path
    has; opponent modeling has its own mode)."""
    reads_peers = True
    """Whether the replica check reads the persona agents' published updates (centralized
    training); the meta-agent's own are always checked."""

    def __init__(self, experiment: ExperimentConfig, method: str, seed: int, cfg: CoordinatorConfig) -> None:
        if method not in self.methods:
            others = {m: name for name, mode in MODES.items() for m in mode.methods if name != self.name}
            hint = (f"; {method!r} runs in mode {others[method]!r} (--mode {others[method]})" if method in others
                    else "")
            raise ValueError(f"coordinator mode {self.name!r} runs {', '.join(self.methods)}{hint}")
        if not cfg.meta_agent:
            raise ValueError(f"coordinator mode {self.name!r} needs --meta (the meta-agent's id)")
        if experiment.train.micro_batch:
            raise ValueError("train.micro_batch is for embedded training; the coordinator plays a meta-batch's "
                             "chains at once (set it to 0)")
        if torch.device(experiment.device).type != "cpu":
            raise ValueError(f"device = {experiment.device!r} is for embedded training (`league train`); the league's "
                             "processes exchange CPU tensors (set device = \"cpu\")")
        if not cfg.referee or not cfg.meta_agent:
            raise ValueError(f"coordinator mode {self.name!r} needs --join (the referee) and --meta")
        torch.set_num_threads(1)
        self.experiment, self.cfg = experiment, cfg
        # the same object, drawing the same random stream in the same order, as league.experiment.train_one
        self.training = MetaTraining.build(experiment, method, seed)
        self.setting, self.learner = self.training.setting, self.training.learner
        n_peers = self.setting.n_peers
        if not cfg.personas or len(cfg.personas) % n_peers:
            raise ValueError(f"{experiment.game.name} for {n_peers + 1} players seats {n_peers} persona(s) per chain: "
                             f"--personas must list a multiple of {n_peers} agents, got {len(cfg.personas)}")
        if len(set(cfg.personas)) != len(cfg.personas) or cfg.meta_agent in cfg.personas:
            raise ValueError("--personas must name distinct agents, none of them the meta-agent")
        self.method_name = method
        self.channel = srv.channel(cfg.referee, cfg.credentials)
        self.referee = referee_pb2_grpc.RefereeStub(self.channel)
        self.stubs: dict[str, agent_pb2_grpc.AgentStub] = {}
        self.iteration = 0
        self.resumes = 0  # times this run was restarted from its --state file
        self.metrics = CoordinatorMetrics(experiment.game.name, method)

    # -- agents --------------------------------------------------------------------------
    def _stub(self, agent_id: str) -> agent_pb2_grpc.AgentStub:
        if agent_id not in self.stubs:
            status = self.referee.Status(referee_pb2.StatusRequest(), timeout=self.cfg.timeout)
            members = {m.agent_id: m.address for m in status.members}
            if agent_id not in members:
                raise RuntimeError(f"{agent_id} is not a member of the league at {self.cfg.referee}")
            self.stubs[agent_id] = AgentClient(srv.channel(members[agent_id], self.cfg.credentials))
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

    def seats(self, b: int) -> list[str]:
        """The agents of chain ``b`` in seat order: the meta-agent, then its ``n - 1`` personas."""
        n_peers = self.setting.n_peers
        return [self.cfg.meta_agent, *self.cfg.personas[b * n_peers:(b + 1) * n_peers]]

    def verify_replica(self, chain_ids: list[str], step: int, params: Sequence[Params]) -> None:
        """Every checked seat's published ``policy@chain`` at version ``step`` equals the
        replica's: the meta-agent's always, the personas' only when the mode reads peers."""
        for b, chain in enumerate(chain_ids):
            seats = self.seats(b) if self.reads_peers else self.seats(b)[:1]
            for seat, agent in enumerate(seats):
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
        B = len(self.cfg.personas) // self.setting.n_peers
        if self.experiment.train.meta_batch != B:
            raise ValueError(f"train.meta_batch is {self.experiment.train.meta_batch} but {len(self.cfg.personas)} "
                             f"persona agents seat {B} chains of {self.setting.n_peers}")
        peers = self.training.sample_peers()
        # the league's personas and meta-agent start this iteration's chains from these
        versions = {self.cfg.meta_agent: self._push(self.cfg.meta_agent, "policy", self.learner.policy)}
        self._push(self.cfg.meta_agent, "lr", {"lr": self.learner.lr})
        for b in range(B):
            for seat, agent in enumerate(self.seats(b)[1:]):  # peer seat m of chain b: peers.params[m] row b
                row = {name: value[b:b + 1] for name, value in peers.params[seat].items()}  # any policy class
                versions[agent] = self._push(agent, "policy", row)
        self.iteration += 1
        # a resumed run names its chains afresh: the agents may still hold policy@<chain> of
        # the killed attempt, and the referee voids that attempt's unfinished chains
        attempt = f"-r{self.resumes}" if self.resumes else ""
        chain_ids = [f"it{self.iteration}{attempt}.{b}" for b in range(B)]
        evaluator = RemoteEvaluator(self.training.evaluator, self, chain_ids, versions)
        stats = self.training.iterate(evaluator, peers)
        self._push(self.cfg.meta_agent, "policy", self.learner.policy)
        self._push(self.cfg.meta_agent, "lr", {"lr": self.learner.lr})
        self._push(self.cfg.meta_agent, "value", self.learner.critic.params)
        stats["seconds"] = time.perf_counter() - t0
        self.metrics.record(self.iteration, stats, self.learner.lr)
        return stats

    def result(self) -> dict[str, Any]:
        return {"policy": {k: v.detach().tolist() for k, v in self.learner.policy.items()},
                "lr": self.learner.lr.detach().tolist()}

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "resumes": self.resumes, "training": self.training.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.training.load_state_dict(state["training"])
        self.iteration = state["iteration"]
        self.resumes = state["resumes"] + 1
        if self.iteration:
            self.metrics.iterations.inc(self.iteration)


class OpponentModelingMode(MetaMapgMode):
    """Meta-MAPG with opponent modeling (Algorithms 3 and 4) through the league: the
    meta-agent's meta-gradient is computed from peer parameters *inferred* from the actions
    the referee returns (``league.opponent_model.InferredPeers``, the same code as embedded
    ``meta-mapg-om``), and the mode never reads a persona's parameters: the replica check reads
    the meta-agent only. In a league whose ``peer_access`` is ``inferred`` the persona agents
    refuse such reads anyway (docs/security.md).

    Like the embedded run, the mode still draws each iteration's personas from the training
    population and pushes them (it plays the environment's part: which peers the meta-agent
    meets), and it steps its own copy of them to measure the model's error from outside the
    meta-gradient; neither copy enters the gradient (``tests/test_opponent_model.py``)."""

    name = "opponent-modeling"
    methods = ("meta-mapg-om",)
    reads_peers = False


#: Coordinator modes by name; each entry builds a mode from (experiment, method, seed, config).
MODES: dict[str, type[CoordinatorMode]] = {
    "meta-mapg": MetaMapgMode,
    "opponent-modeling": OpponentModelingMode,
    "diffgame": DiffGameRoundsMode,
    "meva": MevaMode,
}


from services.coordinator_matrl import MatrlMode  # noqa: E402 - it builds this module's CoordinatorMetrics

MODES["matrl"] = MatrlMode


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
        self.om_error = Gauge("league_opponent_model_error", "Opponent modeling: mean total-variation distance "
                              "between the peers' true and inferred action probabilities at each chain step of the "
                              "last iteration (fit: the step's maximum-likelihood fit; predicted: the replicated "
                              "update of the previous fit, which the meta-gradient uses)", ["step", "model"],
                              registry=self.registry)
        self.seconds = Histogram("league_coordinator_iteration_seconds", "Wall time of one meta-training iteration",
                                 registry=self.registry,
                                 buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000))

    def record(self, iteration: int, stats: dict[str, float], lr: torch.Tensor) -> None:
        self.iterations.inc()
        self.objective.set(stats["objective"])
        self.seconds.observe(stats["seconds"])
        for l, value in enumerate(lr.detach().flatten().tolist()):
            self.lr.labels(str(l)).set(value)
        for model in ("fit", "predicted"):
            for key, value in stats.items():
                if key.startswith(f"om_{model}_error_step"):
                    self.om_error.labels(key.rsplit("step", 1)[1], model).set(value)


def state_writer(path: Path, expect: dict[str, Any], coordinator: CoordinatorMode,
                 history: list[dict[str, Any]]) -> Callable[[], None]:
    """A function that saves ``coordinator``'s state and ``history`` (the completed iterations'
    statistics, read when called) to ``path`` atomically, with ``expect`` (mode, method, seed)
    for :func:`services.coordinator_state.load` to check: ``run_coordinator``'s
    :attr:`CoordinatorMode.persist`."""
    from services import coordinator_state

    def persist() -> None:
        coordinator_state.save(path, {**expect, "history": history, "mode_state": coordinator.state_dict()})

    return persist


def run_coordinator(experiment: ExperimentConfig, method: str, seed: int, cfg: CoordinatorConfig, iterations: int,
                    host: str, port: int, metrics_port: int, results: str | None, ready_file: str | None,
                    linger: float = 0.0, mode: str = "meta-mapg", state_file: str | None = None,
                    pace: float = 0.0) -> int:
    """The coordinator process: serve Status, health and /metrics; drive ``mode`` until
    ``iterations`` iterations are done, each started at least ``pace`` seconds after the last.

    With ``state_file`` the run is resumable: after every completed iteration the mode's
    state (:meth:`CoordinatorMode.state_dict`) and the per-iteration history are saved there
    atomically (:mod:`services.coordinator_state`), and whenever the mode calls
    :attr:`CoordinatorMode.persist` mid-iteration; a coordinator started on an existing
    file continues where it was saved, so a run killed at any moment and restarted
    with the same arguments ends with the uninterrupted run's numbers."""
    import json
    import os

    from services import coordinator_state
    from services.gen.league.v1 import coordinator_pb2, coordinator_pb2_grpc

    if mode not in MODES:
        raise ValueError(f"unknown coordinator mode {mode!r}; known: {', '.join(MODES)}")
    coordinator = MODES[mode](experiment, method, seed, cfg)
    state = {"state": "waiting", "objective": float("nan")}
    history: list[dict[str, Any]] = []
    expect = {"mode": mode, "method": method, "seed": seed}
    saved = coordinator_state.load(Path(state_file), expect) if state_file else None
    coordinator.persist = state_writer(Path(state_file), expect, coordinator, history) if state_file else lambda: None
    if saved is not None:
        coordinator.load_state_dict(saved["mode_state"])
        history[:] = saved["history"]  # in place: the state writer holds this list
        if history:
            state["objective"] = history[-1]["objective"]
        log.info("resumed from %s at iteration %d of %d", state_file, coordinator.iteration, iterations)

    class Service(coordinator_pb2_grpc.CoordinatorServicer):
        def Status(self, request, context):
            return coordinator_pb2.CoordinatorStatus(
                mode=coordinator.name, iteration=coordinator.iteration, iterations=iterations,
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

    def write_results() -> None:
        if results:
            write_json_atomic(results, {  # whole or absent: tests and scripts poll for it
                "mode": coordinator.name, "method": method, "seed": seed, "iterations": history,
                "state": state["state"], **coordinator.result()}, indent=None)

    try:
        coordinator.wait_for_members()
        state["state"] = "training"
        training_since = time.monotonic()
        while coordinator.iteration < iterations:
            started = time.monotonic()
            stats = coordinator.iterate()
            state["objective"] = stats["objective"]
            # started_s: when the iteration began, in seconds since this process began training
            history.append({"iteration": coordinator.iteration, "started_s": started - training_since, **stats})
            coordinator.persist()
            write_results()
            log.info("iteration %d: %s", coordinator.iteration, stats)
            if coordinator.iteration < iterations:
                time.sleep(max(0.0, pace - (time.monotonic() - started)))
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
