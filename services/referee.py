"""The referee process: league membership (join, heartbeat lease, leave), matchmaking,
batched rollouts with parameters pinned per round, and the trajectory broadcast.

A round plays, in one batched rollout per policy signature:
- one step of every Markov chain between a ``meta`` agent and a ``persona`` agent (chain
  step ``l`` pins the meta-agent's ``policy@<chain>`` at version ``l``; step 0 pins base
  ``policy``), restarting a finished chain from the seats' base policies;
- one match between each pair of ``learner`` agents, paired at random every round.
It never computes a gradient: agents learn from the broadcast and publish new versions,
which the next round waits for."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from agents.policy_factory import game_for, policy_from_description
from league.policies.base import Params, Policy
from league.rollout import sample_episodes
from services import server as srv
from services.client import describe, fetch_parameters
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.league_config import RefereeConfig
from services.metrics import RpcMetrics, process_registry
from services.wire import encode_tensor

log = logging.getLogger("league.referee")


@dataclass
class Member:
    agent_id: str
    address: str
    role: str
    policy: Policy
    policy_class: str
    stub: agent_pb2_grpc.AgentStub
    channel: grpc.Channel
    order: int
    expires: float
    policy_version: int = 0
    learns: bool = True  # publishes a new version after each of its matches
    metrics_address: str = ""
    episodes: int = 0
    matches: int = 0
    returns: list[float] = field(default_factory=list)


@dataclass
class Chain:
    """A running Markov chain between a meta-agent and a persona."""

    chain_id: str
    meta: str
    persona: str
    step: int = 0
    count: int = 0  # chains completed by this pair


@dataclass
class Match:
    match_id: str
    seats: list[str]
    kinds: list[str]
    min_versions: list[int]
    chain: Chain | None = None
    step: int = 0
    chain_id: str = ""
    last_step: bool = False
    exact: bool = False  # pin exactly min_versions (coordinator requests), not "at least"


class RefereeMetrics:
    """The referee's Prometheus metrics. ``role`` is always the role of the agent a series is
    about (meta, persona, learner); the process's own facts (env, version) are in ``league_info``."""

    def __init__(self, env: str) -> None:
        self.registry = process_registry("referee", {"env": env})
        r = self.registry
        self.env = env
        self.rpc = RpcMetrics(r)
        self.rounds = Counter("league_rounds", "Rounds played", registry=r)
        self.steps = Counter("league_env_steps", "Environment steps played (all seats of a match count once)",
                             registry=r)
        self.aborted = Counter("league_aborted_matches", "Matches voided (a seat failed or timed out)", registry=r)
        self.episodes = Counter("league_episodes", "Episodes played per agent", ["agent_id", "role"], registry=r)
        self.returns = Gauge("league_mean_step_reward", "Mean per-step reward of the agent in its latest match",
                             ["agent_id", "role"], registry=r)
        self.version = Gauge("league_policy_version", "Behaviour version of the agent's latest match",
                             ["agent_id", "role"], registry=r)
        self.members = Gauge("league_members", "Agents holding a lease", ["role"], registry=r)
        self.fetch = Histogram("league_parameter_fetch_seconds", "Referee-side latency of one parameter fetch, "
                               "by the role of the agent fetched from", ["role"], registry=r,
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.curve = Gauge("league_chain_mean_step_reward", "Meta-agents' mean per-step reward at chain step l over "
                           "the latest completed round of chains (the meta-test adaptation curve)", ["step"],
                           registry=r)


class Referee(referee_pb2_grpc.RefereeServicer):
    """Membership, matchmaking and the broadcast; ``play_round`` is one round."""

    def __init__(self, cfg: RefereeConfig, config_order: list[str] | None = None) -> None:
        torch.set_num_threads(1)
        self.cfg = cfg
        self.game = game_for(cfg.env)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.metrics = RefereeMetrics(cfg.env)
        self.members: dict[str, Member] = {}
        self.chains: dict[tuple[str, str], Chain] = {}
        self.subscribers: dict[int, tuple[str, queue.Queue]] = {}
        self.lock = threading.RLock()
        self.round = 0
        self.aborted = 0
        self.config_order = {a: i for i, a in enumerate(config_order or [])}
        self._next_order = len(self.config_order)
        self._chain_counter = 0
        self.chain_curves: list[dict] = []  # per completed chain: meta rewards per step
        self.stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8)

    # -- membership ----------------------------------------------------------------------
    def Join(self, request, context):
        if request.protocol_version not in (0, srv.PROTOCOL_VERSION):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"protocol version mismatch: agent speaks {request.protocol_version}, "
                          f"referee speaks {srv.PROTOCOL_VERSION}")
        if not request.agent_id or not request.address:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "join needs agent_id and address")
        if request.role not in ("meta", "persona", "learner"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown role {request.role!r}: meta, persona or learner")
        channel = srv.channel(request.address)
        stub = agent_pb2_grpc.AgentStub(channel)
        try:
            desc = describe(stub, timeout=10)
        except grpc.RpcError as err:
            channel.close()
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"cannot reach agent {request.agent_id} at {request.address}: {err.details()}")
        if desc.env != self.cfg.env:
            channel.close()
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"agent plays {desc.env!r}, this league {self.cfg.env!r}")
        policy = policy_from_description(desc.policy_class, desc.policy_config_json, self.game)
        with self.lock:
            old = self.members.pop(request.agent_id, None)
            if old is not None:
                old.channel.close()
            order = self.config_order.get(request.agent_id)
            if order is None:
                order = old.order if old is not None else self._next_order
                self._next_order += 1
            self.members[request.agent_id] = Member(
                request.agent_id, request.address, request.role, policy, desc.policy_class, stub, channel, order,
                time.monotonic() + self.cfg.lease_seconds, policy_version=desc.versions.get("policy", 0),
                learns=desc.learning_rule != "frozen", metrics_address=request.metrics_address)
            self._gauge_members()
        return referee_pb2.JoinResponse(lease_seconds=self.cfg.lease_seconds, round=self.round)

    def Heartbeat(self, request, context):
        with self.lock:
            member = self.members.get(request.agent_id)
            if member is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.agent_id} is not a member: join first")
            member.expires = time.monotonic() + self.cfg.lease_seconds
        return referee_pb2.HeartbeatResponse(lease_seconds=self.cfg.lease_seconds, round=self.round)

    def Leave(self, request, context):
        self._drop(request.agent_id)
        return referee_pb2.LeaveResponse()

    def _drop(self, agent_id: str) -> None:
        with self.lock:
            member = self.members.pop(agent_id, None)
            if member is not None:
                member.channel.close()
            for key in [k for k in self.chains if agent_id in k]:
                del self.chains[key]
            self._gauge_members()

    def _gauge_members(self) -> None:
        for role in ("meta", "persona", "learner"):
            self.metrics.members.labels(role).set(
                sum(m.role == role for m in self.members.values()))

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            expired = [a for a, m in self.members.items() if m.expires < now]
        for a in expired:
            self._drop(a)

    def service_discovery(self) -> bytes:
        """Prometheus HTTP service discovery: every member's /metrics target, by role."""
        import json

        with self.lock:
            members = [m for m in self.members.values() if m.metrics_address]
        groups = [{"targets": [m.metrics_address], "labels": {"agent_id": m.agent_id, "role": m.role}}
                  for m in sorted(members, key=lambda m: m.order)]
        return json.dumps(groups).encode()

    # -- broadcast -----------------------------------------------------------------------
    def Subscribe(self, request, context) -> Iterator[referee_pb2.TrajectoryBatch]:
        q: queue.Queue = queue.Queue()
        key = id(q)
        with self.lock:
            self.subscribers[key] = (request.agent_id, q)
        try:
            while context.is_active() and not self.stopped.is_set():
                try:
                    item = q.get(timeout=0.25)
                except queue.Empty:
                    continue
                yield item
        finally:
            with self.lock:
                self.subscribers.pop(key, None)

    def _broadcast(self, batch: referee_pb2.TrajectoryBatch) -> None:
        seats = {s.agent_id for s in batch.seats}
        with self.lock:
            targets = [q for agent, q in self.subscribers.values() if not agent or agent in seats]
        for q in targets:
            q.put(batch)

    # -- status --------------------------------------------------------------------------
    def Status(self, request, context):
        now = time.monotonic()
        with self.lock:
            members = [referee_pb2.MemberStatus(
                agent_id=m.agent_id, address=m.address, role=m.role, policy_version=m.policy_version,
                lease_remaining_seconds=max(0.0, m.expires - now), episodes=m.episodes,
                mean_return=(sum(m.returns[-10:]) / len(m.returns[-10:])) if m.returns else 0.0, matches=m.matches)
                for m in sorted(self.members.values(), key=lambda m: m.order)]
        return referee_pb2.LeagueStatus(round=self.round, members=members, aborted_matches=self.aborted,
                                        protocol_version=srv.PROTOCOL_VERSION, env=self.cfg.env)

    # -- matchmaking ---------------------------------------------------------------------
    def schedule(self) -> list[Match]:
        """This round's matches: a step of every chain, then random learner pairs."""
        with self.lock:
            members = sorted(self.members.values(), key=lambda m: m.order)
            metas = [m for m in members if m.role == "meta"]
            personas = [m for m in members if m.role == "persona"]
            learners = [m for m in members if m.role == "learner"]
            matches = []
            for meta in metas if self.cfg.chains_by == "referee" else []:
                for persona in personas:
                    key = (meta.agent_id, persona.agent_id)
                    chain = self.chains.get(key)
                    if chain is None or chain.step > self.cfg.chain_length:
                        done = chain.count + 1 if chain is not None else 0
                        if self.cfg.chains and done >= self.cfg.chains:
                            continue
                        self._chain_counter += 1
                        chain = Chain(f"c{self._chain_counter}", meta.agent_id, persona.agent_id, count=done)
                        self.chains[key] = chain
                    l = chain.step
                    kinds = ["policy" if l == 0 else f"policy@{chain.chain_id}"] * 2
                    mins = [0 if l == 0 else l] * 2
                    matches.append(Match(f"{chain.chain_id}.{l}", [meta.agent_id, persona.agent_id], kinds, mins,
                                         chain, l, chain.chain_id, l == self.cfg.chain_length))
            if len(learners) >= 2:
                perm = torch.randperm(len(learners), generator=self.generator).tolist()
                for a, b in zip(perm[0::2], perm[1::2]):
                    pair = [learners[a], learners[b]]
                    matches.append(Match(f"r{self.round}.{pair[0].agent_id}-{pair[1].agent_id}",
                                         [p.agent_id for p in pair], ["policy", "policy"],
                                         # a learner that played waits for the update it learns from that match,
                                         # so every match is played at a version fixed by the schedule alone
                                         [p.policy_version + 1 if p.learns and p.matches else 0 for p in pair]))
            return matches

    def _fetch_exact(self, member: Member, kind: str, version: int) -> tuple[int, Params]:
        got_version, params = self._fetch(member, kind, version)
        if got_version != version:
            raise ValueError(f"{member.agent_id} holds {kind} version {got_version}, the match pins {version}")
        return got_version, params

    def _fetch(self, member: Member, kind: str, min_version: int) -> tuple[int, Params]:
        """Wait until the seat publishes ``kind`` at ``min_version`` or later, then pull it."""
        deadline = time.monotonic() + self.cfg.fetch_timeout
        while True:  # long polls: the agent answers as soon as it publishes the version
            remaining = deadline - time.monotonic()
            t0 = time.perf_counter()
            got = fetch_parameters(member.stub, kind, min_version=min_version, timeout=remaining + 5.0,
                                   wait_seconds=max(remaining, 0.0))
            self.metrics.fetch.labels(member.role).observe(time.perf_counter() - t0)
            if got.params is not None:
                return got.version, got.params
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{member.agent_id} did not publish {kind} version {min_version} "
                                   f"within {self.cfg.fetch_timeout}s")

    def _pin(self, matches: list[Match], members: dict[str, Member]) -> dict[str, list[tuple[int, Params]]]:
        """Pull every seat's parameters in parallel; a match with a failed seat is voided."""
        jobs = {}
        for match in matches:
            for seat, (agent, kind, v) in enumerate(zip(match.seats, match.kinds, match.min_versions)):
                member = members.get(agent)
                fetch = self._fetch_exact if match.exact else self._fetch
                jobs[(match.match_id, seat)] = (self._pool.submit(fetch, member, kind, v) if member is not None
                                                else None)
        pinned: dict[str, list[tuple[int, Params]]] = {}
        for match in matches:
            try:
                got = []
                for s, agent in enumerate(match.seats):
                    job = jobs[(match.match_id, s)]
                    if job is None:
                        raise KeyError(f"{agent} is not a member")
                    got.append(job.result())
                pinned[match.match_id] = got
            except (grpc.RpcError, TimeoutError, KeyError, ValueError, AttributeError) as err:
                reason = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else repr(err)
                log.warning("round %d: voided match %s (%s)", self.round, match.match_id, reason)
                self._void(match, members)
        return pinned

    def play_round(self) -> int:
        """Schedule, pin, roll out and broadcast one round; return the number of matches played."""
        self._expire()
        matches = self.schedule()
        if not matches:
            return 0
        with self.lock:
            members = dict(self.members)
        pinned = self._pin(matches, members)
        played = [m for m in matches if m.match_id in pinned]
        groups: dict[tuple[str, ...], list[Match]] = {}
        for m in played:
            groups.setdefault(tuple(members[a].policy_class for a in m.seats), []).append(m)
        for group in groups.values():
            self._play_group(group, members, pinned, self.generator)
        self.round += 1
        self.metrics.rounds.inc()
        return len(played)

    def PlayMatches(self, request, context):
        """Play the requested matches in one batched rollout (the coordinator's chain steps)."""
        if not request.matches:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no matches requested")
        with self.lock:
            members = dict(self.members)
        matches = []
        for spec in request.matches:
            for seat in spec.seats:
                if seat.agent_id not in members:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{seat.agent_id} is not a member of the league")
            matches.append(Match(spec.match_id, [s.agent_id for s in spec.seats], [s.kind for s in spec.seats],
                                 [s.version for s in spec.seats], step=spec.step, chain_id=spec.chain_id,
                                 last_step=spec.last_step, exact=True))
        signatures = {tuple(members[a].policy_class for a in m.seats) for m in matches}
        if len(signatures) != 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"matches mix policy classes {sorted(signatures)}")
        aborted_before = self.aborted
        pinned = self._pin(matches, members)
        if len(pinned) != len(matches):
            context.abort(grpc.StatusCode.ABORTED, f"{self.aborted - aborted_before} of {len(matches)} matches "
                          "voided: a seat was unreachable or not at its pinned version (see the referee log)")
        generator = self.generator
        if request.rng_state:
            generator = torch.Generator()
            generator.set_state(torch.frombuffer(bytearray(request.rng_state), dtype=torch.uint8))
        K = request.episodes or self.cfg.trajectories
        H = request.horizon or self.cfg.horizon
        batches = self._play_group(matches, members, pinned, generator, K, H)
        state = bytes(generator.get_state().numpy().tobytes()) if request.rng_state else b""
        return referee_pb2.PlayMatchesResponse(batches=batches, rng_state=state)

    def _void(self, match: Match, members: dict[str, Member]) -> None:
        with self.lock:
            self.aborted += 1
            if match.chain is not None:
                self.chains.pop((match.chain.meta, match.chain.persona), None)
        self.metrics.aborted.inc()

    def _play_group(self, group: list[Match], members: dict[str, Member], pinned, generator: torch.Generator,
                    K: int | None = None, H: int | None = None) -> list[referee_pb2.TrajectoryBatch]:
        """One batched rollout of matches sharing a policy signature; broadcast and record each."""
        n_seats = len(group[0].seats)
        policies = [members[group[0].seats[s]].policy for s in range(n_seats)]
        params = [{k: torch.cat([pinned[m.match_id][s][1][k] for m in group]) for k in pinned[group[0].match_id][s][1]}
                  for s in range(n_seats)]
        K, H = K or self.cfg.trajectories, H or self.cfg.horizon
        episodes = sample_episodes(self.game, policies, params, len(group), K, H, generator)
        self.metrics.steps.inc(len(group) * K * H)
        batches = []
        for b, match in enumerate(group):
            batch = referee_pb2.TrajectoryBatch(
                match_id=match.match_id, round=self.round, env=self.cfg.env,
                seats=[referee_pb2.Seat(agent_id=a, behaviour_version=pinned[match.match_id][s][0])
                       for s, a in enumerate(match.seats)],
                obs=encode_tensor(episodes.obs[b]), actions=encode_tensor(episodes.actions[b]),
                rewards=encode_tensor(episodes.rewards[b]),
                dones=encode_tensor(torch.zeros(K, H, dtype=torch.bool).index_fill_(1, torch.tensor([H - 1]), True)),
                step=match.step, chain_id=match.chain_id, last_step=match.last_step)
            self._record(match, members, pinned, episodes.rewards[b])
            self._broadcast(batch)
            batches.append(batch)
        return batches

    def _record(self, match: Match, members: dict[str, Member], pinned, rewards: torch.Tensor) -> None:
        with self.lock:
            for s, agent in enumerate(match.seats):
                member = members[agent]
                r = float(rewards[..., s].mean())
                member.episodes += rewards.shape[0]
                member.matches += 1
                member.returns.append(r)
                del member.returns[:-100]
                if match.kinds[s] == "policy":
                    member.policy_version = pinned[match.match_id][s][0]
                labels = (agent, member.role)
                self.metrics.episodes.labels(*labels).inc(rewards.shape[0])
                self.metrics.returns.labels(*labels).set(r)
                self.metrics.version.labels(*labels).set(pinned[match.match_id][s][0])
            if match.chain is not None:
                chain = match.chain
                if chain.step == 0:
                    self.chain_curves.append({"chain": chain.chain_id, "meta": chain.meta, "persona": chain.persona,
                                              "rewards": []})
                record = next(c for c in reversed(self.chain_curves) if c["chain"] == chain.chain_id)
                record["rewards"].append(float(rewards[..., 0].mean()))
                self.metrics.curve.labels(str(chain.step)).set(record["rewards"][-1])
                chain.step += 1

    # -- lifecycle -----------------------------------------------------------------------
    def run(self, min_members: int = 0, join_timeout: float = 120.0) -> None:
        """Wait for ``min_members``, then play rounds until ``cfg.rounds`` or ``stop()``."""
        deadline = time.monotonic() + join_timeout
        while len(self.members) < min_members and not self.stopped.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.members)} of {min_members} agents joined within {join_timeout}s")
            time.sleep(0.05)
        while not self.stopped.is_set() and (self.cfg.rounds == 0 or self.round < self.cfg.rounds):
            if self.play_round() == 0:
                time.sleep(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
