"""The referee process: league membership (join, heartbeat lease, leave), matchmaking,
batched rollouts with parameters pinned per round, and the trajectory broadcast.

A match seats ``n`` agents, the game's ``n_agents``. A round plays, in one batched rollout
per policy signature:
- one step of every Markov chain between a ``meta`` agent (seat 0) and a group of ``n - 1``
  ``persona`` agents (seats 1..n-1; chain step ``l`` pins every seat's ``policy@<chain>`` at
  version ``l``; step 0 pins base ``policy``), restarting a finished chain from the seats'
  base policies. A meta-agent's persona groups are the league config's ``teams`` led by it,
  else its live personas in league order, ``n - 1`` at a time (an incomplete last group sits
  out);
- one match for each fixed ``teams`` entry of learners, and one for each group of ``n`` of
  the remaining ``learner`` agents, grouped at random every round (the ``len % n`` left over
  sit the round out).
It never computes a gradient: agents learn from the broadcast and publish new versions,
which the next round waits for.

Faults are normal: every request is validated against ``services.limits`` (one-line
contract status codes); a join is refused unless the agent's description fits this league
and its served policy has the right structure and finite values; fetched parameters are
checked the same way before use, and any failure inside a match voids that match only
(logged with the agent's name, counted in ``aborted``). Leases expire on their own timer,
and fetches poll within the seat's lease, so a stopped agent delays a round by at most
about one lease."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable, Sequence

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from agents.policy_factory import policy_from_description
from league.envs.base import Environment
from league.policies.base import Params, Policy
from league.rollout import play, reset_seed
from services import batches as wire_batches
from services import limits, referee_state
from services import server as srv
from services.client import DEFAULT_MAX_FETCH_BYTES, AgentClient, describe, fetch_parameters
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.league_config import RefereeConfig, league_env, seats_of
from services.spaces import describe_space, same_space, space_from_json
from services.auth import peer_identity
from services.metrics import RpcMetrics, process_registry
from services.pki import Credentials
from services.wire import WireError, check_finite, check_structure, nbytes, wire_dtype

log = logging.getLogger("league.referee")

ROLES = ("meta", "persona", "learner")
STREAM_POLL_SECONDS = 1.0
"""How often an idle Subscribe stream wakes to check its id's membership and the referee's stop."""
LEARNING_RULES = ("pg", "frozen", "matrl", "ppo-matrl")


class SeatFailure(Exception):
    """A seat of a match could not be pinned; ``rogue`` when the agent served invalid parameters."""

    def __init__(self, agent_id: str, reason: str, rogue: bool = False) -> None:
        super().__init__(f"{agent_id}: {reason}")
        self.agent_id, self.rogue = agent_id, rogue


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
    expected: Params | None = None  # the structure every fetched parameter set must have
    wait_update: bool = True  # False after a missed update: the next match takes the current version
    holder: str = ""  # fingerprint of the certificate it joined with ("" on a plaintext league)


def _first_line(text: str | None, limit: int = 200) -> str:
    """The first line of a (possibly hostile, multi-line or huge) message, bounded."""
    return (text or "").split("\n", 1)[0][:limit]


def _flat_sizes(obs_space, act_space) -> tuple[int, int]:
    """A seat's ``(obs_dim, n_actions)`` as a description states them: the flat observation
    size and the number of discrete actions (0 for a ``Box`` action space)."""
    from league.envs.base import flat_dim

    return flat_dim(obs_space), int(getattr(act_space, "n", 0))


def _set_bytes(params: Params) -> int:
    """Wire size of a parameter set of this structure (the most a fetch of it may carry)."""
    return sum(nbytes(wire_dtype(t.dtype), list(t.shape)) for t in params.values())


@dataclass
class Chain:
    """A running Markov chain between a meta-agent (seat 0) and its personas (seats 1..n-1)."""

    chain_id: str
    meta: str
    personas: tuple[str, ...]
    step: int = 0
    count: int = 0  # chains completed by this seating

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.meta, self.personas

    def curve(self) -> dict:
        """The summary record of this chain; ``persona`` is kept for two seats, as before n seats."""
        record = {"chain": self.chain_id, "meta": self.meta, "personas": list(self.personas), "rewards": []}
        if len(self.personas) == 1:
            record["persona"] = self.personas[0]
        return record


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


def round_batches(matches: Sequence[Match]) -> dict[str, int]:
    """Per agent, how many of ``matches`` (a round's played matches) seat it: the count each
    batch header states for its seats (``Seat.round_batches``)."""
    return dict(collections.Counter(agent for match in matches for agent in match.seats))


class Referee(referee_pb2_grpc.RefereeServicer):
    """Membership, matchmaking and the broadcast; ``play_round`` is one round."""

    def __init__(self, cfg: RefereeConfig, config_order: list[str] | None = None,
                 state_file: Path | None = None, credentials: Credentials | None = None,
                 teams: Sequence[Sequence[str]] = ()) -> None:
        """``state_file``: where the league's durable state is saved after every round and
        membership change; a referee started on an existing file resumes from it.
        ``credentials``: the referee's mutual-TLS credentials, with which it dials agents
        (None: plaintext, ``--insecure``). ``teams``: fixed seatings (agent ids in seat order,
        see ``LeagueConfig.teams``)."""
        torch.set_num_threads(1)
        self.cfg = cfg
        self.credentials = credentials
        self.env = league_env(cfg.env, cfg.env_kwargs, cfg.n_players, cfg.horizon)
        """The league's environment (``league_env``), built once; every match is played on it
        (or on ``_env_for(H)`` for a PlayMatches horizon of its own)."""
        self._envs: dict[int, Environment] = {cfg.horizon: self.env}
        self._play_lock = threading.Lock()  # an environment steps one batch at a time
        self.teams = [tuple(t) for t in teams]
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.metrics = RefereeMetrics(cfg.env)
        self.members: dict[str, Member] = {}
        self.chains: dict[tuple[str, tuple[str, ...]], Chain] = {}
        self.coordinator_chains: dict[tuple[str, ...], tuple[str, int]] = {}  # seats -> open (chain id, step)
        # open Subscribe streams: key -> (agent id, "" for all batches; a thread-safe deliver(batch))
        self.subscribers: dict[int, tuple[str, Callable[[referee_pb2.TrajectoryBatch], None]]] = {}
        # guards subscribers and _overflowed. The event loop takes only this lock, never
        # self.lock: a unary handler may abort (which waits for the loop) while holding self.lock
        self.streams_lock = threading.Lock()
        self.lock = threading.RLock()
        self.round = 0
        self.aborted = 0
        self.config_order = {a: i for i, a in enumerate(config_order or [])}
        self._next_order = len(self.config_order)
        self._chain_counter = 0
        self.chain_curves: list[dict] = []  # per completed chain: meta rewards per step
        self.stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8)
        self._overflowed: set[int] = set()  # subscriptions cut off for falling behind
        self.records: dict[str, dict] = {}  # stats of members that left (or were members before a restart)
        self.state_file = state_file
        self._save_lock = threading.Lock()
        self.resumed = False
        if state_file is not None:
            state = referee_state.load(state_file)
            if state is not None:
                self._restore(state)
        threading.Thread(target=self._lease_timer, name="lease-timer", daemon=True).start()

    # -- durable state -------------------------------------------------------------------
    def _member_record(self, m: Member) -> dict:
        return {"role": m.role, "address": m.address, "policy_version": m.policy_version, "episodes": m.episodes,
                "matches": m.matches, "returns": m.returns[-100:], "order": m.order}

    def member_records(self) -> dict[str, dict]:
        """Every agent's record, live or not, in league order."""
        with self.lock:
            records = {**self.records, **{a: self._member_record(m) for a, m in self.members.items()}}
        return dict(sorted(records.items(), key=lambda kv: kv[1]["order"]))

    def save_state(self) -> None:
        """Persist round, results, chains and member records (atomically; no-op without a file)."""
        if self.state_file is None:
            return
        with self._save_lock:  # saves in order; the league's lock is held only for the snapshot
            with self.lock:
                state = json.loads(json.dumps({
                    "round": self.round, "aborted": self.aborted, "chain_curves": self.chain_curves,
                    "chain_counter": self._chain_counter, "next_order": self._next_order,
                    "chains": [[c.chain_id, c.meta, list(c.personas), c.count, c.step] for c in self.chains.values()],
                    "members": self.member_records(), "generator": referee_state.encode_generator(self.generator)}))
            referee_state.save(self.state_file, state)

    def _restore(self, state: dict) -> None:
        """Resume from a saved state. Agents join again (their stats are carried over). A chain
        that was running (some of its steps played, not the last) cannot go on: the agents may
        have learned from a step whose result was never saved. It is voided and counted (one
        aborted match, its curve record marked ``interrupted``) and a new chain takes its place
        in the pair's chain budget at the next round. The restored state is saved at once, so
        a second crash before the next round counts nothing twice."""
        self.round, self.aborted = state["round"], state["aborted"]
        self.chain_curves = state["chain_curves"]
        self._chain_counter, self._next_order = state["chain_counter"], state["next_order"]
        done = self.cfg.chain_length + 1
        self.chains, interrupted = {}, []
        for cid, meta, personas, count, *rest in state["chains"]:
            personas = (personas,) if isinstance(personas, str) else tuple(personas)  # a str: saved before n seats
            step = rest[0] if rest else done  # a file without steps: every chain taken as done
            if 0 < step < done:
                interrupted.append(cid)
                self.aborted += 1
                for record in (c for c in self.chain_curves if c["chain"] == cid):
                    record["interrupted"] = True
                count -= 1  # the replacement is this group's chain number `count` again
            chain = Chain(cid, meta, personas, step=done, count=count)
            self.chains[chain.key] = chain
        self.records = state["members"]
        self.generator = referee_state.decode_generator(state["generator"])
        self.metrics.rounds.inc(self.round)
        self.metrics.aborted.inc(self.aborted)
        self.resumed = True
        log.info("resumed from %s at round %d (%d member records, %d chain curves); interrupted chains voided: %s",
                 self.state_file, self.round, len(self.records), len(self.chain_curves),
                 ", ".join(interrupted) or "none")
        self.save_state()

    # -- membership ----------------------------------------------------------------------
    def Join(self, request, context):
        """Admit an agent: request fields bounded, id not held by a live member, description
        and served policy fitting this league; else a contract code and nothing applied."""
        who = peer_identity(context)
        holder = who.fingerprint if who is not None else ""
        try:
            self._check_join(request, holder)
        except WireError as err:
            srv.abort(context, err)
        lease = self.cfg.lease_seconds
        channel = srv.channel(request.address, self.credentials)
        stub = AgentClient(channel)
        try:
            desc = describe(stub, timeout=min(10.0, lease))
            policy, expected = self._admit(request.agent_id, desc, request.role)
            got = fetch_parameters(stub, "policy", timeout=min(10.0, lease), max_bytes=_set_bytes(expected))
            if got.params is None:
                raise WireError("the agent answered 'not modified' for its base policy")
            check_structure(f"{request.agent_id}'s policy", expected, got.params)
            check_finite(got.params, f"{request.agent_id}'s policy")
        except grpc.RpcError as err:
            channel.close()
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"cannot reach agent {request.agent_id} at {request.address}: {err.code().name}")
        except WireError as err:
            channel.close()
            log.warning("refused join of %s at %s: %s", request.agent_id, request.address, err)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"join of {request.agent_id} refused: {err}")
        with self.lock:
            try:
                self._check_join(request, holder)  # again: another join may have taken the id meanwhile
            except WireError as err:
                channel.close()
                srv.abort(context, err)
            old = self.members.get(request.agent_id)
            if (old is not None and old.address == request.address and old.role == request.role
                    and old.policy_class == desc.policy_class and old.holder == holder):
                # the same agent joining again (a retry, or after a referee restart): keep its
                # member, so fetches in flight on its channel are not cut
                old.expires = time.monotonic() + lease
                old.metrics_address, old.learns = request.metrics_address, desc.learning_rule != "frozen"
                old.policy_version, old.wait_update = desc.versions.get("policy", 0), False
                channel.close()
                return referee_pb2.JoinResponse(lease_seconds=lease, round=self.round)
            self.members.pop(request.agent_id, None)
            if old is not None:
                old.channel.close()
            record = self._member_record(old) if old is not None else self.records.pop(request.agent_id, None)
            order = self.config_order.get(request.agent_id)
            if order is None:
                order = record["order"] if record is not None else self._next_order
                self._next_order += 1
            member = Member(
                request.agent_id, request.address, request.role, policy, desc.policy_class, stub, channel, order,
                time.monotonic() + lease, policy_version=desc.versions.get("policy", 0),
                learns=desc.learning_rule != "frozen", metrics_address=request.metrics_address, expected=expected,
                holder=holder)
            if record is not None:  # a member joining again keeps its record and plays its current version next
                member.episodes, member.matches, member.returns = record["episodes"], record["matches"], record["returns"]
                member.wait_update = False
            self.members[request.agent_id] = member
            self._gauge_members()
        self.save_state()
        log.info("%s joined as %s from %s (%s)", request.agent_id, request.role, request.address, desc.policy_class)
        return referee_pb2.JoinResponse(lease_seconds=lease, round=self.round)

    def _check_join(self, request, holder: str = "") -> None:
        """Bounded fields, a known role, and an id that no live member holds at another
        address or with another certificate (``holder``: the joining caller's certificate
        fingerprint; the access table already made sure the certificate's id is this id)."""
        if request.protocol_version not in (0, srv.PROTOCOL_VERSION):
            raise WireError(f"protocol version mismatch: agent speaks {request.protocol_version}, "
                            f"referee speaks {srv.PROTOCOL_VERSION}", grpc.StatusCode.FAILED_PRECONDITION)
        limits.check_id(request.agent_id)
        limits.check_address(request.address)
        if request.metrics_address:
            limits.check_address(request.metrics_address, "metrics_address")
        if request.role not in ROLES:
            raise WireError(f"unknown role {limits._shown(request.role)}: meta, persona or learner")
        with self.lock:
            held = self.members.get(request.agent_id)
            if (held is not None and (held.address != request.address or held.holder != holder)
                    and held.expires > time.monotonic()):
                other = "another certificate" if held.holder != holder else held.address
                raise WireError(f"agent id {request.agent_id!r} is held by a live member at {other} "
                                f"(lease {held.expires - time.monotonic():.1f}s left): choose another id or wait "
                                "for that lease to expire", grpc.StatusCode.ALREADY_EXISTS)
            if held is None and len(self.members) >= limits.MAX_MEMBERS:
                raise WireError(f"the league is full ({limits.MAX_MEMBERS} members)",
                                grpc.StatusCode.RESOURCE_EXHAUSTED)

    def _check_spaces(self, desc, role: str):
        """The described seat's observation and action spaces, checked against every seat of
        the environment that ``role`` may take (``seats_of``); WireError naming the misfit.
        Also the flat sizes ``obs_dim``/``n_actions`` the description carries."""
        env = self.env
        try:  # bounded: a hostile description must not cost more than a config
            env_kwargs = (json.loads(desc.env_kwargs_json or "{}")
                          if len(desc.env_kwargs_json) <= limits.MAX_CONFIG_JSON_CHARS else None)
        except (ValueError, RecursionError):
            env_kwargs = None
        if env_kwargs != self.cfg.env_kwargs:
            raise WireError(f"agent builds {self.cfg.env} with env_kwargs {limits._shown(desc.env_kwargs_json or '{}')}, "
                            f"this league with {json.dumps(self.cfg.env_kwargs, sort_keys=True)}")
        seats = seats_of(role, env.n_agents)
        if not desc.observation_space_json and not desc.action_space_json:
            # a description from before spaces were described: its flat sizes must be the seat's
            obs_space, act_space = env.observation_spaces[seats[0]], env.action_spaces[seats[0]]
            sizes = _flat_sizes(obs_space, act_space)
            if (desc.obs_dim, desc.n_actions) != sizes:
                raise WireError(f"agent declares obs_dim {desc.obs_dim} and {desc.n_actions} actions; {self.cfg.env} "
                                f"has obs_dim {sizes[0]} and {sizes[1]} actions")
        else:
            spaces = []
            for what, text in (("observation", desc.observation_space_json), ("action", desc.action_space_json)):
                try:
                    spaces.append(space_from_json(text))
                except ValueError as err:
                    raise WireError(f"bad {what} space: {str(err).splitlines()[0]}") from None
            obs_space, act_space = spaces
            sizes = _flat_sizes(obs_space, act_space)
            if (desc.obs_dim, desc.n_actions) != sizes:
                raise WireError(f"agent declares obs_dim {desc.obs_dim} and {desc.n_actions} actions, its spaces have "
                                f"obs_dim {sizes[0]} and {sizes[1]} actions")
        for seat in seats:
            for what, mine, theirs in (("observation", env.observation_spaces[seat], obs_space),
                                       ("action", env.action_spaces[seat], act_space)):
                if not same_space(mine, theirs):
                    raise WireError(f"its {what} space {describe_space(theirs)} does not fit seat {seat} "
                                    f"({env.agents[seat]}) of {self.cfg.env}, whose {what} space is "
                                    f"{describe_space(mine)}")
        return obs_space, act_space

    def _env_for(self, horizon: int) -> Environment:
        """The league's environment for episodes of ``horizon`` steps (a PlayMatches may ask
        for another horizon than the config's); built once per horizon."""
        if horizon not in self._envs:
            self._envs[horizon] = league_env(self.cfg.env, self.cfg.env_kwargs, self.cfg.n_players, horizon)
        return self._envs[horizon]

    def _admit(self, agent_id: str, desc, role: str = "learner") -> tuple[Policy, Params]:
        """The policy a described agent plays and the structure of its parameters; WireError
        when the description does not fit this league (another environment or env_kwargs,
        spaces that do not fit a seat its ``role`` may take, an unknown policy class or a
        config the class does not take)."""
        env = self.env
        if desc.agent_id != agent_id:
            raise WireError(f"the agent at that address says it is {limits._shown(desc.agent_id)}")
        if desc.env != self.cfg.env:
            raise WireError(f"agent plays {limits._shown(desc.env)}, this league {self.cfg.env!r}")
        if (desc.n_players or 2) != env.n_agents:
            raise WireError(f"agent plays {self.cfg.env} for {desc.n_players or 2} players, this league for "
                            f"{env.n_agents}")
        obs_space, act_space = self._check_spaces(desc, role)
        if desc.learning_rule not in LEARNING_RULES:
            raise WireError(f"unknown learning rule {limits._shown(desc.learning_rule)}: {', '.join(LEARNING_RULES)}")
        if "policy" not in desc.versions:
            raise WireError("the agent serves no 'policy' kind")
        config = desc.policy_config_json
        if len(config) > limits.MAX_CONFIG_JSON_CHARS:
            raise WireError(f"policy config has {len(config)} characters, the limit is {limits.MAX_CONFIG_JSON_CHARS}")
        try:
            parsed = json.loads(config or "{}")
            if not isinstance(parsed, dict):
                raise ValueError("the policy config is not a JSON object")
            policy = policy_from_description(desc.policy_class, config, obs_space, act_space)
        except (ValueError, TypeError, RecursionError) as err:  # json.JSONDecodeError is a ValueError
            raise WireError(f"bad policy description: {str(err).splitlines()[0]}") from None
        return policy, policy.init_params(torch.Generator().manual_seed(0))

    def Heartbeat(self, request, context):
        try:
            limits.check_id(request.agent_id)
        except WireError as err:
            srv.abort(context, err)
        with self.lock:
            member = self.members.get(request.agent_id)
            if member is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.agent_id} is not a member: join first")
            member.expires = time.monotonic() + self.cfg.lease_seconds
        return referee_pb2.HeartbeatResponse(lease_seconds=self.cfg.lease_seconds, round=self.round)

    def Leave(self, request, context):
        try:
            limits.check_id(request.agent_id)
        except WireError as err:
            srv.abort(context, err)
        if not self._drop(request.agent_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.agent_id} is not a member")
        log.info("%s left", request.agent_id)
        return referee_pb2.LeaveResponse()

    def _drop(self, agent_id: str, member: Member | None = None) -> bool:
        """Remove a member (only ``member`` itself when given, not a successor under its id);
        True if one was removed."""
        with self.lock:
            current = self.members.get(agent_id)
            if current is None or (member is not None and current is not member):
                return False
            del self.members[agent_id]
            self.records[agent_id] = self._member_record(current)
            if current.channel is not None:
                current.channel.close()
            for key in [k for k in self.chains if agent_id == k[0] or agent_id in k[1]]:
                del self.chains[key]
            self._gauge_members()
        return True

    def _gauge_members(self) -> None:
        for role in ("meta", "persona", "learner"):
            self.metrics.members.labels(role).set(
                sum(m.role == role for m in self.members.values()))

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            expired = [m for m in self.members.values() if m.expires < now]
        for m in expired:
            if self._drop(m.agent_id, m):
                log.warning("%s missed its lease (%.1fs): dropped from the league", m.agent_id, self.cfg.lease_seconds)

    def _lease_timer(self) -> None:
        """Expire leases on a timer of their own, so a stalled round cannot keep a dead member."""
        interval = max(0.05, min(1.0, self.cfg.lease_seconds / 4))
        while not self.stopped.wait(interval):
            self._expire()

    def _live(self, member: Member) -> bool:
        with self.lock:
            return self.members.get(member.agent_id) is member

    def service_discovery(self) -> bytes:
        """Prometheus HTTP service discovery: every member's /metrics target, by role."""
        import json

        with self.lock:
            members = [m for m in self.members.values() if m.metrics_address]
        groups = [{"targets": [m.metrics_address], "labels": {"agent_id": m.agent_id, "role": m.role}}
                  for m in sorted(members, key=lambda m: m.order)]
        return json.dumps(groups).encode()

    # -- broadcast -----------------------------------------------------------------------
    async def Subscribe(self, request, context) -> AsyncIterator[referee_pb2.TrajectoryBatch]:
        """Stream the batches in which ``agent_id`` plays (every batch for an empty id); open
        streams are capped per id and a subscriber that falls too far behind is cut off.

        An async generator: on the referee's ``grpc.aio`` server an open stream is a task
        waiting on its ``asyncio.Queue``, which the round loop fills from its own thread
        (``loop.call_soon_threadsafe``); it holds no thread."""
        agent = request.agent_id
        try:
            if agent:
                limits.check_id(agent)
        except WireError as err:
            await context.abort(err.code, str(err))
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=limits.SUBSCRIBER_BACKLOG)
        key = id(q)
        refusal = ""
        with self.streams_lock:
            streams = [a for a, _ in self.subscribers.values()]
            cap = limits.MAX_STREAMS_PER_AGENT if agent else limits.MAX_ANONYMOUS_STREAMS
            pending = sum(bool(a) and a not in self.members for a in streams)
            if streams.count(agent) >= cap:
                refusal = f"{cap} Subscribe streams are already open for agent id {agent!r}"
            elif len(streams) >= limits.MAX_STREAMS or (agent and agent not in self.members
                                                         and pending >= limits.MAX_PENDING_STREAMS):
                refusal = "too many open Subscribe streams: try again later"
            else:
                self.subscribers[key] = (agent, lambda batch: loop.call_soon_threadsafe(self._enqueue, key, q, batch))
        if refusal:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        last_member = time.monotonic()
        try:
            while not self.stopped.is_set():
                if agent:
                    if agent in self.members:
                        last_member = time.monotonic()
                    elif time.monotonic() - last_member > limits.STREAM_JOIN_GRACE:
                        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                            f"{agent} is not a member: join, then subscribe again")
                if key in self._overflowed:
                    log.warning("subscriber %s fell %d batches behind: stream cut off", agent or "(all)",
                                limits.SUBSCRIBER_BACKLOG)
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"fell {limits.SUBSCRIBER_BACKLOG} batches behind: subscribe again")
                try:
                    item = await asyncio.wait_for(q.get(), timeout=STREAM_POLL_SECONDS)
                except asyncio.TimeoutError:
                    continue
                for message in item:  # one batch: a whole message, or its parts in order
                    yield message
        finally:  # also when the client cancels (CancelledError at the await) or the server stops
            with self.streams_lock:
                self.subscribers.pop(key, None)
                self._overflowed.discard(key)

    def _enqueue(self, key: int, q: asyncio.Queue, messages: list[referee_pb2.TrajectoryBatch]) -> None:
        """On the stream's event loop: queue a batch (its messages: whole, or its parts), or
        mark a subscriber that fell SUBSCRIBER_BACKLOG batches behind (its stream ends at its
        next message)."""
        try:
            q.put_nowait(messages)
        except asyncio.QueueFull:
            self._overflowed.add(key)

    def _broadcast(self, messages: list[referee_pb2.TrajectoryBatch]) -> None:
        """Hand a batch (its messages: whole, or its parts) to every subscriber of one of its
        seats (and to anonymous ones); each subscriber's ``deliver`` is thread-safe and
        returns at once."""
        seats = {s.agent_id for s in messages[0].seats}
        with self.streams_lock:
            targets = [deliver for agent, deliver in self.subscribers.values() if not agent or agent in seats]
        for deliver in targets:
            try:
                deliver(messages)
            except RuntimeError:  # the stream's event loop has closed: the server is stopping
                pass

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
                                        protocol_version=srv.PROTOCOL_VERSION, env=self.cfg.env,
                                        n_players=self.env.n_agents,
                                        env_kwargs_json=json.dumps(self.cfg.env_kwargs, sort_keys=True))

    # -- matchmaking ---------------------------------------------------------------------
    def persona_groups(self, meta: str, personas: list[str]) -> list[tuple[str, ...]]:
        """The persona seats of ``meta``'s chains: the teams it leads whose personas are all
        live, else (no team names it) ``personas`` (live, in league order) cut into
        consecutive groups of ``n - 1``, an incomplete last group left out."""
        live = set(personas)
        led = [team[1:] for team in self.teams if team[0] == meta]
        if led:
            return [group for group in led if live.issuperset(group)]
        size = self.env.n_agents - 1
        return [tuple(personas[i:i + size]) for i in range(0, len(personas) - size + 1, size)]

    def learner_groups(self, learners: list[str]) -> list[tuple[str, ...]]:
        """This round's learner seatings: the learner teams whose members are all live, then
        the other learners in groups of ``n`` drawn at random (one ``randperm`` of the
        referee's stream; with two seats exactly the pairs drawn before n seats)."""
        live = set(learners)
        fixed = [team for team in self.teams if live.issuperset(team)]
        teamed = {a for team in self.teams for a in team}
        free = [a for a in learners if a not in teamed]
        n = self.env.n_agents
        if len(free) < n:
            return fixed
        perm = torch.randperm(len(free), generator=self.generator).tolist()
        return fixed + [tuple(free[i] for i in perm[g:g + n]) for g in range(0, len(perm) - n + 1, n)]

    def schedule(self) -> list[Match]:
        """This round's matches: a step of every chain, then the learner groups."""
        with self.lock:
            members = sorted(self.members.values(), key=lambda m: m.order)
            by_id = {m.agent_id: m for m in members}
            metas = [m.agent_id for m in members if m.role == "meta"]
            personas = [m.agent_id for m in members if m.role == "persona"]
            learners = [m.agent_id for m in members if m.role == "learner"]
            matches = []
            for meta in metas if self.cfg.chains_by == "referee" else []:
                for group in self.persona_groups(meta, personas):
                    chain = self.chains.get((meta, group))
                    if chain is None or chain.step > self.cfg.chain_length:
                        done = chain.count + 1 if chain is not None else 0
                        if self.cfg.chains and done >= self.cfg.chains:
                            continue
                        self._chain_counter += 1
                        chain = Chain(f"c{self._chain_counter}", meta, group, count=done)
                        self.chains[chain.key] = chain
                    l = chain.step
                    seats = [meta, *group]
                    kinds = ["policy" if l == 0 else f"policy@{chain.chain_id}"] * len(seats)
                    mins = [0 if l == 0 else l] * len(seats)
                    matches.append(Match(f"{chain.chain_id}.{l}", seats, kinds, mins,
                                         chain, l, chain.chain_id, l == self.cfg.chain_length))
            for group in self.learner_groups(learners):
                seated = [by_id[a] for a in group]
                matches.append(Match(f"r{self.round}." + "-".join(group), list(group), ["policy"] * len(group),
                                     # a learner that played waits for the update it learns from that match,
                                     # so every match is played at a version fixed by the schedule alone
                                     [p.policy_version + 1 if p.learns and p.matches and p.wait_update else 0
                                      for p in seated]))
            return matches

    def _fetch_exact(self, member: Member, kind: str, version: int) -> tuple[int, Params]:
        got_version, params = self._fetch(member, kind, version)
        if got_version != version:
            raise SeatFailure(member.agent_id, f"holds {kind} version {got_version}, the match pins {version}")
        return got_version, params

    def _fetch(self, member: Member, kind: str, min_version: int) -> tuple[int, Params]:
        """Wait until the seat publishes ``kind`` at ``min_version`` or later, pull it and check
        it (names, shapes, dtypes, finite). Each long poll lasts at most half a lease plus half
        a lease of slack, and polling stops when the member's lease expires or the fetch
        timeout passes: an agent that stops answering costs at most about one lease."""
        who = member.agent_id
        deadline = time.monotonic() + self.cfg.fetch_timeout
        poll = max(0.25, self.cfg.lease_seconds / 2)
        max_bytes = _set_bytes(member.expected) if member.expected is not None else DEFAULT_MAX_FETCH_BYTES
        while True:  # long polls: the agent answers as soon as it publishes the version
            if not self._live(member):
                raise SeatFailure(who, "is no longer a member (lease expired or left)")
            wait = max(min(deadline - time.monotonic(), poll), 0.0)
            t0 = time.perf_counter()
            try:
                got = fetch_parameters(member.stub, kind, min_version=min_version, timeout=wait + poll,
                                       wait_seconds=wait, max_bytes=max_bytes)
            except grpc.RpcError as err:
                raise SeatFailure(who, f"fetch of {kind} failed: {err.code().name} {_first_line(err.details())}")
            except WireError as err:
                raise SeatFailure(who, f"served a malformed {kind} stream: {err}", rogue=True)
            self.metrics.fetch.labels(member.role).observe(time.perf_counter() - t0)
            if got.params is not None:
                if member.expected is not None:
                    try:
                        check_structure(f"{kind} v{got.version}", member.expected, got.params)
                        check_finite(got.params, f"{kind} v{got.version}")
                    except WireError as err:
                        raise SeatFailure(who, f"served invalid parameters: {err}", rogue=True)
                return got.version, got.params
            if time.monotonic() >= deadline:
                if kind == "policy" and min_version > 0:
                    member.wait_update = False  # it missed an update: play its current version next time
                raise SeatFailure(who, f"did not publish {kind} version {min_version} within {self.cfg.fetch_timeout}s")

    def _pin(self, matches: list[Match], members: dict[str, Member]) -> dict[str, list[tuple[int, Params]]]:
        """Pull every seat's parameters in parallel; a match with a failed seat is voided, and
        a member that served invalid parameters is dropped (it must join again, and a join
        checks what it serves)."""
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
                        raise SeatFailure(agent, "is not a member")
                    got.append(job.result())
                pinned[match.match_id] = got
            except SeatFailure as err:
                log.warning("round %d: voided match %s: %s", self.round, match.match_id, err)
                self._void(match, members)
                if err.rogue and self._drop(err.agent_id, members.get(err.agent_id)):
                    log.warning("%s dropped from the league: it served invalid parameters", err.agent_id)
            except Exception as err:  # noqa: BLE001 - a fault inside one match voids that match only
                log.warning("round %d: voided match %s (seats %s): %s: %s", self.round, match.match_id,
                            ", ".join(match.seats), type(err).__name__, _first_line(str(err)))
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
        counts = round_batches(played)
        for group in groups.values():
            self._play_safely(group, members, pinned, self.generator, counts)
        self.round += 1
        self.metrics.rounds.inc()
        self.save_state()
        return len(played)

    def PlayMatches(self, request, context):
        """Play the requested matches in one batched rollout (the coordinator's chain steps);
        the reply streams the batches (chunked when large), the generator state last."""
        try:
            matches, members, K, H, generator = self._check_play(request)
        except WireError as err:
            srv.abort(context, err)
        self._close_abandoned_chains(matches)
        aborted_before = self.aborted
        pinned = self._pin(matches, members)
        if len(pinned) != len(matches):
            context.abort(grpc.StatusCode.ABORTED, f"{self.aborted - aborted_before} of {len(matches)} matches "
                          "voided: a seat was unreachable or not at its pinned version (see the referee log)")
        try:
            batches = self._play_group(matches, members, pinned, generator, K, H)
        except Exception as err:  # noqa: BLE001 - the requested step failed; the referee goes on
            log.warning("PlayMatches voided (seats %s): %s: %s", ", ".join(sorted({a for m in matches for a in m.seats})),
                        type(err).__name__, _first_line(str(err)))
            for m in matches:
                self._void(m, members)
            context.abort(grpc.StatusCode.ABORTED, f"rollout failed: {type(err).__name__}: {_first_line(str(err))}")
        state = bytes(generator.get_state().numpy().tobytes()) if request.rng_state else b""
        yield from wire_batches.response_messages(batches, state)

    def _close_abandoned_chains(self, matches: list[Match]) -> None:
        """A coordinator's chain that a new chain replaces on the same seats before its last
        step (the coordinator died mid-iteration and was restarted) is voided and counted:
        one aborted match per abandoned chain, the step it never played."""
        with self.lock:
            for m in matches:
                if not m.chain_id:
                    continue
                seats = tuple(m.seats)
                open_chain = self.coordinator_chains.get(seats)
                if open_chain is not None and open_chain[0] != m.chain_id:
                    self.aborted += 1
                    self.metrics.aborted.inc()
                    log.warning("voided chain %s (seats %s): abandoned after step %d; chain %s replaces it",
                                open_chain[0], ", ".join(seats), open_chain[1], m.chain_id)
                if m.last_step:
                    self.coordinator_chains.pop(seats, None)
                else:
                    self.coordinator_chains[seats] = (m.chain_id, m.step)

    def _check_play(self, request):
        """Validated matches of a PlayMatches request, the members they seat, K, H and the
        generator to sample with; WireError (nothing played) on any bad field."""
        n = len(request.matches)
        if not n:
            raise WireError("no matches requested")
        limits.check_at_most(n, limits.MAX_MATCHES, "number of matches")
        K = limits.check_at_most(request.episodes, limits.MAX_EPISODES, "episodes") or self.cfg.trajectories
        H = limits.check_at_most(request.horizon, limits.MAX_HORIZON, "horizon") or self.cfg.horizon
        env = self._env_for(H)
        size = K * env.max_steps * wire_batches.env_step_bytes(env)
        if size > wire_batches.MAX_BATCH_BYTES or n * size > wire_batches.MAX_PLAY_BYTES:
            raise WireError(f"{n} matches x {K} episodes x {H} steps make {size}-byte trajectory batches, over the "
                            f"{wire_batches.MAX_BATCH_BYTES}-byte limit of a batch or the "
                            f"{wire_batches.MAX_PLAY_BYTES}-byte limit of a reply: request fewer",
                            grpc.StatusCode.RESOURCE_EXHAUSTED)
        with self.lock:
            members = dict(self.members)
        matches, ids = [], set()
        for spec in request.matches:
            limits.check_id(spec.match_id, "match_id")
            if spec.match_id in ids:
                raise WireError(f"match_id {spec.match_id!r} appears twice")
            ids.add(spec.match_id)
            if spec.chain_id:
                limits.check_id(spec.chain_id, "chain_id")
            limits.check_at_most(spec.step, limits.MAX_STEP, "step")
            if len(spec.seats) != env.n_agents:
                raise WireError(f"match {spec.match_id} has {len(spec.seats)} seats, {self.cfg.env} has {env.n_agents}")
            for seat in spec.seats:
                limits.check_id(seat.agent_id, "seat agent_id")
                limits.check_kind(seat.kind)
                if seat.agent_id not in members:
                    raise WireError(f"{seat.agent_id} is not a member of the league", grpc.StatusCode.FAILED_PRECONDITION)
            matches.append(Match(spec.match_id, [s.agent_id for s in spec.seats], [s.kind for s in spec.seats],
                                 [s.version for s in spec.seats], step=spec.step, chain_id=spec.chain_id,
                                 last_step=spec.last_step, exact=True))
        signatures = {tuple(members[a].policy_class for a in m.seats) for m in matches}
        if len(signatures) != 1:
            raise WireError(f"matches mix policy classes {sorted(signatures)}")
        generator = self.generator
        if request.rng_state:
            limits.check_at_most(len(request.rng_state), limits.MAX_RNG_STATE_BYTES, "rng_state bytes")
            generator = torch.Generator()
            try:
                generator.set_state(torch.frombuffer(bytearray(request.rng_state), dtype=torch.uint8))
            except (RuntimeError, ValueError) as err:
                raise WireError(f"rng_state is not a torch generator state: {_first_line(str(err), 120)}") from None
        return matches, members, K, H, generator

    def _void(self, match: Match, members: dict[str, Member]) -> None:
        with self.lock:
            self.aborted += 1
            if match.chain is not None:
                self.chains.pop(match.chain.key, None)
        self.metrics.aborted.inc()

    def _play_safely(self, group: list[Match], members: dict[str, Member], pinned, generator: torch.Generator,
                     counts: dict[str, int] | None = None) -> None:
        """``_play_group``, but a failure voids only the failing matches (each match of a failed
        group is retried alone) and the round goes on."""
        try:
            self._play_group(group, members, pinned, generator, counts=counts)
        except Exception as err:  # noqa: BLE001 - a fault inside a match voids that match only
            if len(group) > 1:
                for match in group:
                    self._play_safely([match], members, pinned, generator, counts)
                return
            match = group[0]
            log.warning("round %d: voided match %s (seats %s): rollout failed: %s: %s", self.round, match.match_id,
                        ", ".join(match.seats), type(err).__name__, _first_line(str(err)))
            self._void(match, members)

    def _play_group(self, group: list[Match], members: dict[str, Member], pinned, generator: torch.Generator,
                    K: int | None = None, H: int | None = None,
                    counts: dict[str, int] | None = None) -> list[referee_pb2.TrajectoryBatch]:
        """One batched rollout of matches sharing a policy signature; broadcast and record
        each. Returns every batch's wire messages, in match order. ``counts``: per agent, the
        batches of this round that seat it (``round_batches``; each header states its seats'
        counts, so an agent learns them together); None states none."""
        counts = counts or {}
        n_seats = len(group[0].seats)
        policies = [members[group[0].seats[s]].policy for s in range(n_seats)]
        params = [{k: torch.cat([pinned[m.match_id][s][1][k] for m in group]) for k in pinned[group[0].match_id][s][1]}
                  for s in range(n_seats)]
        K, H = K or self.cfg.trajectories, H or self.cfg.horizon
        # the environment's own per-seat observations, actions and dones (the same random
        # stream as league.rollout.sample_episodes / play_episodes, which the embedded chain plays)
        with self._play_lock:
            env = self._env_for(H)
            traj = play(env, policies, params, len(group), K, generator, seed=reset_seed(env, generator))
        self.metrics.steps.inc(len(group) * K * traj.rewards.shape[2])
        messages = []
        for b, match in enumerate(group):
            header = referee_pb2.TrajectoryBatch(
                match_id=match.match_id, round=self.round, env=self.cfg.env,
                seats=[referee_pb2.Seat(agent_id=a, behaviour_version=pinned[match.match_id][s][0],
                                        round_batches=counts.get(a, 0)) for s, a in enumerate(match.seats)],
                step=match.step, chain_id=match.chain_id, last_step=match.last_step)
            tensors = wire_batches.batch_tensors([o[b] for o in traj.obs], [a[b] for a in traj.actions],
                                                 traj.rewards[b], traj.dones[b])
            batch = wire_batches.encode_batch(header, tensors)
            self._record(match, members, pinned, traj.rewards[b])
            self._broadcast(batch)
            messages.extend(batch)
        return messages

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
                    member.wait_update = True
                labels = (agent, member.role)
                self.metrics.episodes.labels(*labels).inc(rewards.shape[0])
                self.metrics.returns.labels(*labels).set(r)
                self.metrics.version.labels(*labels).set(pinned[match.match_id][s][0])
            if match.chain is not None:
                chain = match.chain
                if chain.step == 0:
                    self.chain_curves.append(chain.curve())
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
            try:
                played = self.play_round()
            except Exception:  # noqa: BLE001 - log it and go on: one bad round must not end the league
                log.exception("round %d failed", self.round)
                played = 0
            if played == 0:
                self.stopped.wait(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
