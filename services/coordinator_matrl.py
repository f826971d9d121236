"""The coordinator's ``matrl`` mode: MATRL rounds across agent processes, sampled (Algorithm 1,
tabular policies, rule ``matrl``) or deep (Algorithm 2, PPO trust-region steps, rule
``ppo-matrl``); the ``--experiment`` TOML's ``kind`` picks one of :data:`EXPERIMENT_KINDS`.

``league coordinator --mode matrl --agents A,B[,C,D...] --experiment MATRL.toml`` seats the
agents in groups of the game's ``n`` (consecutive, in the order given); each iteration is one
round of every group, one group after another:

1. the coordinator pushes each agent kind ``matrl-trust`` (the trust-region step's ``kl_coef`` and
   ``trust_steps``); ``PlayMatches``: the referee plays the group's current ``policy`` versions (pinned) with the
   coordinator's random stream and broadcasts the episodes (match ``matrl.r<round>.g<group>``,
   no chain, ``step`` = the round);
2. every agent (rule ``matrl`` or ``ppo-matrl``, ``agents/matrl.py``) takes its trust-region step from the
   broadcast and publishes kind ``predicted`` at version = the round; the coordinator fetches
   each agent's current and predicted parameters;
3. it builds the meta-game from the round's episodes and solves it
   (``league.matrl.sampled.round_metagame``, ``nash_weights``), and pushes each agent kind
   ``matrl-mixture``: its Nash weight and its peers' mixture (their per-step log importance
   weight on the round's episodes, ``peer_log_ratios``), with the best response's step size and
   clip; every agent prepares its response (nothing committed or published) and publishes kind
   ``matrl-prepared`` at version = the round, which the coordinator waits for from every agent;
4. only then it records the decision (every agent of the group owes round ``r``'s commit,
   :class:`OwedCommit`; the round counts as completed), saves it to ``--state``
   (:meth:`MatrlMode.persist`: a coordinator killed from here on restarts knowing it, settles the
   owed commits and resumes at the iteration's next group) and pushes each agent kind
   ``matrl-commit`` (the round); every agent
   commits, checkpoints and publishes ``policy`` version ``v + 1``, which the coordinator waits
   for; each agent that publishes it has settled its commit.

A deep config's ``variant`` (``league.matrl.deep.VARIANTS``: ``il``, ``il_pp``, ``matrl_no_br``,
``matrl``) runs through its declaration :data:`league.matrl.variant_protocol.PROTOCOLS`: whether
step 3 builds the meta-game (else every weight is 1) and whether the agents answer with a best
response or with the parameters interpolated by their weight (pushed in ``matrl-trust``).

The numbers are those of the embedded ``league.matrl.sampled.run_sampled_matrl`` (or
``league.matrl.deep.run_deep_matrl``) of the same config and seed (the same functions on the
same episodes). A group whose round fails (an agent
not a member, unreachable, or not publishing within ``--timeout``) has that round **voided**:
counted in ``league_matrl_rounds_voided_total``, logged in one line, its agents keep their
current policies (and their learner-local state: ``agents.matrl``), the coordinator's episode
stream is rolled back to before the round (a voided round draws nothing), and the other groups
go on; the group is tried again next round. So a run with voided rounds is the embedded run of
its completed rounds: a round that fails before its commit phase (step 4) leaves every agent of
the group as it was (prepared responses are dropped at the next broadcast).

A round that reached its commit phase is decided and stands: a commit push that fails (the
agent died after it prepared) or a ``policy`` ``v + 1`` that does not come leaves the commit
owed by that agent (logged, ``league_matrl_commits_outstanding``, kept in :meth:`MatrlMode.state_dict`).
Before the group's next round the coordinator re-sends each owed commit to the agent's current
address (a restarted agent holds the round prepared from its ``<id>.prepared.pt``:
``agents.matrl``) and waits for ``policy`` ``v + 1`` as for any publication; while the agent is
absent or does not publish within ``--timeout``, each round of the group is voided and its log
line says which round the agent owes.

"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import grpc
import torch
from prometheus_client import Counter, Gauge, Histogram

from agents.matrl import (COMMIT, MIXTURE, PREDICTED, PREPARED, TRUST, mixture_message, ppo_trust_message,
                          round_message, trust_message)
from agents.policy_factory import policy_from_description, seat_spaces
from league.config import ConfigError, build, read_table
from league.envs import make_env
from league.games import make_game
from league.matrl.deep import VARIANTS, DeepMATRLConfig
from league.matrl.sampled import SampledMATRLConfig, nash_weights, peer_log_ratios, round_metagame, score_round
from league.matrl.variant_protocol import PROTOCOLS, VariantProtocol
from league.nash.metagame import corner_choices
from league.policies.base import Params, Policy
from services import server as srv
from services.batches import episodes_of, read_batches
from services.client import AgentClient, describe, fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2_grpc, referee_pb2, referee_pb2_grpc

if TYPE_CHECKING:
    from services.coordinator import CoordinatorConfig

log = logging.getLogger("league.coordinator")


class RoundVoided(RuntimeError):
    """A group's round could not complete; its agents keep their current policies."""


@dataclass(frozen=True)
class OwedCommit:
    """A commit the coordinator decided (every agent of the group prepared the round) that the
    agent has not acknowledged yet (its push failed, or ``policy`` ``v + 1`` did not come):
    re-sent before the group's next round."""

    round: int
    """The decided round (the commit's ``round``)."""
    version: int
    """The ``policy`` version the round was played at: the commit publishes ``version + 1``."""


@dataclass
class IterationProgress:
    """How far the current iteration got, saved with each decision (:meth:`MatrlMode.persist`)
    so that a restarted coordinator resumes at the iteration's next group instead of replaying
    groups whose rounds were decided."""

    groups_done: int = 0
    """Groups of the iteration whose round was decided or voided, in group order."""
    played: int = 0
    """Of them, decided: their records are the last ``played`` entries of the history."""
    voided: int = 0
    """Of them, voided."""


@dataclass(frozen=True)
class RoundSettings:
    """What the ``matrl`` mode reads of an experiment config, whatever its kind: the agents'
    rule, the environment, the round's shape and the coordinator's own settings."""

    rule: str
    """The agents' update rule (``league.updates.UPDATE_RULES``)."""
    env: Any
    """The environment (or iterated matrix game) the referee plays: its seats' spaces size the
    agents' policies."""
    episodes: int
    """K: episodes per round per group."""
    horizon: int
    """H: steps per episode (the referee's ``PlayMatches`` horizon)."""
    gamma: float
    """Discount of the meta-game's returns."""
    solvers: list[str]
    """Nash solvers for this group size (``solvers_for``)."""
    nash_eps: float
    """Largest pure-deviation gain of a verified profile."""
    br_lr: float
    """The best response's step size (pushed in ``matrl-mixture``)."""
    clip: float
    """The peers' importance-weight clip of the best response (pushed in ``matrl-mixture``)."""
    trust: Callable[[int], dict[str, torch.Tensor]]
    """``trust(seed)``: the ``matrl-trust`` settings pushed to every agent before its round."""
    policy: tuple[str, dict[str, Any]] | None = None
    """The policy class and arguments every agent must have for the embedded run of the config
    to be the league's (None: the agents' own)."""
    protocol: VariantProtocol = PROTOCOLS["matrl"]
    """Meta-game or ``w = 1``, best response or interpolation (the deep config's variant)."""


def _sampled_settings(cfg: SampledMATRLConfig) -> RoundSettings:
    game = make_game(cfg.env, n_players=cfg.n_players)
    return RoundSettings("matrl", game, cfg.trajectories, cfg.horizon, cfg.gamma, cfg.solvers_for(game.n_agents),
                         cfg.nash_eps, cfg.br_lr, cfg.clip, lambda seed: trust_message(cfg.kl_coef, cfg.trust_steps))


def _deep_settings(cfg: DeepMATRLConfig) -> RoundSettings:
    env = make_env(cfg.env, n_players=cfg.n_players, **cfg.env_kwargs)
    return RoundSettings("ppo-matrl", env, cfg.episodes, env.max_steps, cfg.ppo.gamma, cfg.solvers_for(env.n_agents),
                         cfg.nash_eps, cfg.br_lr, cfg.br_clip,
                         lambda seed: ppo_trust_message(cfg.ppo, seed, cfg.br_steps, PROTOCOLS[cfg.variant].response),
                         (cfg.policy, {"hidden": cfg.ppo.hidden, **cfg.policy_kwargs}), PROTOCOLS[cfg.variant])


def _check_sampled(cfg: SampledMATRLConfig) -> None:
    for key in ("trajectories", "horizon", "trust_steps"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1")
    if not cfg.lr or not cfg.solvers:
        raise ConfigError("lr and solvers must not be empty")


def _check_deep(cfg: DeepMATRLConfig) -> None:
    if cfg.episodes < 1 or cfg.ppo.epochs < 1 or cfg.ppo.minibatches < 1:
        raise ConfigError("episodes, ppo.epochs and ppo.minibatches must be >= 1")
    if not cfg.solvers:
        raise ConfigError("solvers must not be empty")
    if cfg.variant not in VARIANTS:
        raise ConfigError(f"variant {cfg.variant!r}: known variants are {', '.join(VARIANTS)}")


@dataclass(frozen=True)
class ExperimentKind:
    """One kind of ``--experiment`` the ``matrl`` mode runs."""

    config: type
    """The config dataclass its TOML's fields build."""
    check: Callable[[Any], None]
    """ConfigError (one line) on values the league cannot run."""
    settings: Callable[[Any], RoundSettings]
    """What the mode reads of the config."""


#: Kinds of MATRL experiment by the TOML's ``kind`` field (default ``sampled``).
EXPERIMENT_KINDS: dict[str, ExperimentKind] = {
    "sampled": ExperimentKind(SampledMATRLConfig, _check_sampled, _sampled_settings),
    "deep": ExperimentKind(DeepMATRLConfig, _check_deep, _deep_settings),
}


def _kind_of(cfg: Any) -> ExperimentKind:
    for kind in EXPERIMENT_KINDS.values():
        if type(cfg) is kind.config:
            return kind
    raise ValueError(f"mode matrl reads a MATRL config ({', '.join(k.config.__name__ for k in EXPERIMENT_KINDS.values())}), "
                     f"not {type(cfg).__name__}")


def round_settings(cfg: Any) -> RoundSettings:
    """What the ``matrl`` mode reads of a loaded experiment config of any kind."""
    return _kind_of(cfg).settings(cfg)


def load_matrl_config(path: str | None, overrides: Sequence[str] = ()) -> SampledMATRLConfig | DeepMATRLConfig:
    """A MATRL config from a TOML file of its fields and ``key=value`` overrides: ``kind``
    (``sampled``, the default, or ``deep``: :data:`EXPERIMENT_KINDS`) picks the dataclass
    (``SampledMATRLConfig`` or ``DeepMATRLConfig``). ConfigError in one line on a bad value, an
    unknown environment or seat count."""
    table = read_table(path, overrides)
    name = table.pop("kind", "sampled")
    if name not in EXPERIMENT_KINDS:
        raise ConfigError(f"kind {name!r}: known kinds are {', '.join(EXPERIMENT_KINDS)}")
    kind = EXPERIMENT_KINDS[name]
    cfg = build(kind.config, table)
    kind.check(cfg)
    try:
        kind.settings(cfg)  # an unknown environment or seat count fails here, in one line
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"env {cfg.env!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return cfg


def league_pair_mismatch(league: Any, cfg: SampledMATRLConfig | DeepMATRLConfig) -> str | None:
    """One line naming what a league config (``services.league_config.LeagueConfig``) and a
    MATRL config disagree on (game, seats, K, H, discount; every agent's rule and, for a deep
    config, policy), or None when they describe one run."""
    from services.league_config import policy_class, policy_config

    s, r = round_settings(cfg), league.referee
    mine = {"env": cfg.env, "n_players": s.env.n_agents, "trajectories": s.episodes, "horizon": s.horizon,
            "gamma": s.gamma}
    theirs = {"env": r.env, "n_players": r.n_players, "trajectories": r.trajectories, "horizon": r.horizon,
              "gamma": r.gamma}
    diff = [f"referee.{k} {theirs[k]!r} != {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
    for a in league.agents:
        if a.rule != s.rule:
            diff.append(f"agent {a.id} rule {a.rule!r} != {s.rule!r}")
        if s.policy is not None and (policy_class(a), policy_config(a)) != s.policy:
            diff.append(f"agent {a.id} policy {policy_class(a)} {policy_config(a)} != {s.policy[0]} {s.policy[1]}")
    return "; ".join(diff) or None


@dataclass
class RoundMixtures:
    """Step 3 of one group's round: what the coordinator computed and pushes."""

    weights: torch.Tensor
    """``[n]`` each seat's pushed weight (the Nash probability of its predicted policy, or 1)."""
    found: bool
    """A profile verified (always True without a meta-game)."""
    solver: str
    """The solver whose profile verified (``""``: none, or no meta-game)."""
    metagame: torch.Tensor | None
    """``[n, 2, ..., 2]`` the meta-game (None: the variant builds none)."""
    stderr: torch.Tensor | None
    """Its standard error."""
    solve_seconds: float | None
    """Wall time of the solve (None: no meta-game)."""
    messages: list[dict[str, torch.Tensor]]
    """Each seat's ``matrl-mixture``."""


def round_mixtures(m: RoundSettings, round_: int, policies: Sequence[Policy], current: Sequence[Params],
                   predicted: Sequence[Params], episodes) -> RoundMixtures:
    """Step 3 for one group (``B = 1``): the meta-game and its verified Nash weights (or every
    weight 1, as the variant's protocol says), and each seat's mixture message with its peers'
    log importance weight (zeros for an interpolating variant, which reads only its weight)."""
    n = len(policies)
    meta = se = seconds = None
    found, solver = True, ""
    needs_scores = m.protocol.metagame or m.protocol.response == "best_response"
    scores = score_round(policies, current, predicted, episodes) if needs_scores else None
    if m.protocol.metagame:
        meta, se = round_metagame(scores, episodes, m.gamma)
        t0 = time.perf_counter()
        w, found_all, names = nash_weights(meta, m.solvers, m.nash_eps)
        seconds, found, solver = time.perf_counter() - t0, bool(found_all[0]), names[0]
        meta, se = meta[0], se[0]
    else:
        w = torch.ones(1, n, dtype=episodes.rewards.dtype)  # the peers' predicted policies (deep._il_pp)
    if m.protocol.response == "best_response":
        ratios = peer_log_ratios(scores, w)
    else:
        ratios = [torch.zeros(1, *episodes.shape[1:3]) for _ in range(n)]
    messages = [mixture_message(round_, float(w[0, k]), ratios[k], m.br_lr, m.clip) for k in range(n)]
    return RoundMixtures(w[0], found, solver, meta, se, seconds, messages)


def _first_line(err: Exception) -> str:
    """A failed round's reason in one line: a gRPC status as ``CODE: details``."""
    reason = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else str(err)
    return (reason.splitlines() or [""])[0]


class MatrlMetrics:
    """The ``matrl`` mode's series, on the coordinator's registry (beside its iteration counter
    and histogram): per agent its Nash weight, per agent and meta-game corner the meta-game
    entry, the solve time, and voided rounds."""

    def __init__(self, registry) -> None:
        self.weight = Gauge("league_matrl_nash_weight", "Meta-game Nash probability of the agent's predicted "
                            "policy in its group's last completed MATRL round", ["agent_id"], registry=registry)
        self.value = Gauge("league_matrl_metagame_value", "Importance-weighted meta-game entry of the agent's group "
                           "in its last completed round: the agent's expected advantage gain when the seats marked 1 "
                           "in corner (seat 0 first) play their predicted policies", ["agent_id", "corner"],
                           registry=registry)
        self.solve = Histogram("league_matrl_solve_seconds", "Wall time of one meta-game Nash solve (all solvers "
                               "tried, each profile verified)", registry=registry,
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.voided = Counter("league_matrl_rounds_voided", "Group rounds voided (an agent absent, unreachable or "
                              "late)", registry=registry)
        self.owed = Gauge("league_matrl_commits_outstanding", "Decided MATRL commits not yet acknowledged (the agent "
                          "was unreachable during the commit phase): re-sent before its group's next round",
                          registry=registry)
        self.completed = Counter("league_matrl_rounds", "Group rounds completed", registry=registry)


class MatrlMode:
    """MATRL through the league (sampled or deep, by the experiment's kind); ``iterate()`` is
    one round of every group."""

    name = "matrl"
    methods: tuple[str, ...] = ("matrl",)
    load_experiment = staticmethod(load_matrl_config)
    """How ``league coordinator --mode matrl`` reads ``--experiment``."""

    def __init__(self, experiment: SampledMATRLConfig | DeepMATRLConfig, method: str, seed: int,
                 cfg: "CoordinatorConfig") -> None:
        from services.coordinator import CoordinatorMetrics  # the coordinator registers this mode

        if method not in self.methods:
            raise ValueError(f"coordinator mode {self.name!r} runs {', '.join(self.methods)}")
        if seed < 0:
            raise ValueError(f"--seed must be >= 0, got {seed}")
        torch.set_num_threads(1)
        self.settings = round_settings(experiment)
        self.matrl, self.cfg, self.seed = experiment, cfg, seed
        self.game = self.settings.env
        n = self.game.n_agents
        agents = list(cfg.agents)
        if not agents or len(agents) % n:
            raise ValueError(f"{experiment.env} for {n} players: --agents must list a multiple of {n} agents, "
                             f"got {len(agents)}")
        if len(set(agents)) != len(agents):
            raise ValueError("--agents must name distinct agents")
        self.groups = [agents[i:i + n] for i in range(0, len(agents), n)]
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0
        self.round = 0  # the last round number used (unique across restarts: see _first_round)
        self._numbered = False  # whether this process has looked at the agents' round numbers yet
        self.history: list[dict[str, Any]] = []
        self.final: dict[str, dict[str, list]] = {}
        self.channel = srv.channel(cfg.referee, cfg.credentials)
        self.referee = referee_pb2_grpc.RefereeStub(self.channel)
        self.stubs: dict[tuple[str, str], agent_pb2_grpc.AgentStub] = {}
        """By (agent id, address): an agent restarted under its id serves at a new address."""
        self.policies: dict[str, Policy] = {}
        self.owed: dict[str, OwedCommit] = {}
        """By agent id: a decided commit the agent has not acknowledged (``_settle`` re-sends it)."""
        self.progress = IterationProgress()
        """The current iteration's groups done (reset when it completes)."""
        self._resumed = False  # loaded from a state file: settle its owed commits before anything else
        self.metrics = CoordinatorMetrics(experiment.env, "matrl")
        self.matrl_metrics = MatrlMetrics(self.metrics.registry)

    # -- agents --------------------------------------------------------------------------
    def _members(self) -> dict[str, str]:
        status = self.referee.Status(referee_pb2.StatusRequest(), timeout=self.cfg.timeout)
        return {m.agent_id: m.address for m in status.members}

    def _stub(self, agent_id: str, members: dict[str, str]) -> agent_pb2_grpc.AgentStub:
        key = (agent_id, members[agent_id])
        if key not in self.stubs:
            self.stubs[key] = AgentClient(srv.channel(key[1], self.cfg.credentials))
        return self.stubs[key]

    def check_referee(self) -> None:
        """ValueError (one line) when the referee plays another game, seat count or environment
        arguments than the experiment's (the league config and the MATRL config are a pair)."""
        status = self.referee.Status(referee_pb2.StatusRequest(), timeout=self.cfg.timeout)
        env_kwargs = dict(getattr(self.matrl, "env_kwargs", {}))
        for key in ("max_steps", "horizon", "n_players"):  # the league sets these from its referee table
            env_kwargs.pop(key, None)
        theirs = {"env": status.env, "n_players": status.n_players or 2,
                  "env_kwargs": json.loads(status.env_kwargs_json or "{}")}
        mine = {"env": self.matrl.env, "n_players": self.game.n_agents, "env_kwargs": env_kwargs}
        diff = [f"{k} {theirs[k]!r} (referee) != {mine[k]!r} (--experiment)" for k in mine if mine[k] != theirs[k]]
        if diff:
            raise ValueError("the league and the MATRL config disagree: " + "; ".join(diff))

    def wait_for_members(self, timeout: float = 120.0) -> None:
        self.check_referee()
        needed = {a for g in self.groups for a in g}
        deadline = time.monotonic() + timeout
        while True:
            missing = needed - set(self._members())
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents {sorted(missing)} did not join within {timeout}s")
            time.sleep(0.1)

    def _fetch(self, stub: agent_pb2_grpc.AgentStub, agent: str, kind: str, version: int) -> Params:
        """``kind`` at ``version`` or later (long polls until ``--timeout``); RoundVoided if it does
        not come or comes at another version than ``version``."""
        deadline = time.monotonic() + self.cfg.timeout
        while True:
            wait = max(min(deadline - time.monotonic(), 10.0), 0.0)
            got = fetch_parameters(stub, kind, min_version=version, timeout=wait + 10.0, wait_seconds=wait)
            if got.params is not None:
                if got.version != version:
                    raise RoundVoided(f"{agent} holds {kind} version {got.version}, the round expects {version}")
                return got.params
            if time.monotonic() >= deadline:
                raise RoundVoided(f"{agent} did not publish {kind} version {version} within {self.cfg.timeout:g}s")

    def _push(self, stub: agent_pb2_grpc.AgentStub, kind: str, message: dict[str, torch.Tensor]) -> None:
        """Push ``kind`` over the agent's current version of it (compare-and-set)."""
        expected = describe(stub, timeout=self.cfg.timeout).versions.get(kind, 0)
        push_parameters(stub, kind, message, expected, timeout=self.cfg.timeout)

    # -- one round -----------------------------------------------------------------------
    def _first_round(self, members: dict[str, str]) -> int:
        """A round number above every agent's ``predicted`` version: a restarted coordinator
        never reuses one (an agent would answer with its old prediction)."""
        seen = [describe(self._stub(a, members), timeout=self.cfg.timeout).versions.get(PREDICTED, 0)
                for g in self.groups for a in g if a in members]
        return max([self.round, *seen])

    def _owes(self, agents: Sequence[str]) -> str:
        """`` (a owes round r's commit, ...)`` for the agents of ``agents`` that owe one, else ``""``."""
        owing = [f"{a} owes round {self.owed[a].round}'s commit" for a in agents if a in self.owed]
        return f" ({', '.join(owing)})" if owing else ""

    def _settle(self, seats: list[str], members: dict[str, str]) -> None:
        """Re-send each outstanding commit of the group (to the agent's current address: a
        restarted agent holds the round prepared from its ``<id>.prepared.pt``) and wait, up to
        ``--timeout``, for its ``policy`` ``v + 1``; an agent already there took the commit before
        it went away. RoundVoided (naming the round owed) if it does not come."""
        for agent in seats:
            owed = self.owed.get(agent)
            if owed is None:
                continue
            stub = self._stub(agent, members)
            try:
                if describe(stub, timeout=self.cfg.timeout).versions.get("policy", 0) != owed.version + 1:
                    self._push(stub, COMMIT, round_message(owed.round))
                params = self._fetch(stub, agent, "policy", owed.version + 1)
            except (RoundVoided, grpc.RpcError) as err:
                raise RoundVoided(f"{agent} owes round {owed.round}'s commit: {_first_line(err)}") from None
            del self.owed[agent]
            self.matrl_metrics.owed.set(len(self.owed))
            self.final[agent] = {name: t.tolist() for name, t in params.items()}
            log.info("%s took round %d's commit late (policy version %d)", agent, owed.round, owed.version + 1)

    def persist(self) -> None:
        """Save the coordinator's state now (``run_coordinator`` replaces this no-op with a writer
        of ``--state`` when it has one): called once a round is decided, before its first commit
        push, so a coordinator killed in the commit phase restarts knowing the decision."""

    def _decide(self, g: int, r: int, seats: list[str], versions: list[int], record: dict[str, Any]) -> None:
        """The decision (every agent of group ``g`` prepared round ``r``): the round counts as
        completed (its record in the history, the group done in this iteration), every agent owes
        its commit, and all of it is on disk (:meth:`persist`) before any commit is pushed."""
        for agent, v in zip(seats, versions):
            self.owed[agent] = OwedCommit(r, v)
        self.matrl_metrics.owed.set(len(self.owed))
        self.history.append(record)
        self.progress.groups_done, self.progress.played = g + 1, self.progress.played + 1
        self.persist()

    def _settle_on_resume(self, members: dict[str, str]) -> None:
        """A coordinator loaded from its state file re-sends the owed commits of every group whose
        agents are members at once (not only before the group's next round: a decision saved in
        the last iteration has no next round), logging the ones that do not get through; those
        stay owed and are re-sent before the group's next round."""
        for seats in self.groups:
            if any(a in self.owed for a in seats) and all(a in members for a in seats):
                try:
                    self._settle(seats, members)
                except (RoundVoided, grpc.RpcError) as err:
                    log.warning("after the restart: %s", _first_line(err))

    def _commit(self, g: int, r: int, seats: list[str], stubs: list, versions: list[int]) -> dict[str, Params]:
        """Phase 2, after :meth:`_decide`: the commit is pushed to every agent of the group; an
        agent's commit is settled once it publishes ``policy`` ``v + 1``. One that cannot be
        reached or does not publish keeps owing it (logged): the round stands, for it too. Returns
        the new parameters of the agents that published."""
        failed: dict[str, str] = {}
        for stub, agent in zip(stubs, seats):
            try:
                self._push(stub, COMMIT, round_message(r))
            except grpc.RpcError as err:
                failed[agent] = _first_line(err)
        new = {}
        for stub, agent, v in zip(stubs, seats, versions):
            if agent in failed:
                continue
            try:
                new[agent] = self._fetch(stub, agent, "policy", v + 1)
                del self.owed[agent]
            except (RoundVoided, grpc.RpcError) as err:
                failed[agent] = _first_line(err)
        self.matrl_metrics.owed.set(len(self.owed))
        for agent, reason in failed.items():
            log.warning("round %d of group %d: %s owes its commit (%s); the round stands and the commit is re-sent "
                        "before the group's next round", r, g, agent, reason)
        return new

    def _group_round(self, g: int, seats: list[str], members: dict[str, str]) -> None:
        """Group ``g``'s round: decided (:meth:`_decide`) and committed; RoundVoided (or a gRPC
        error) only before the decision."""
        absent = [a for a in seats if a not in members]
        if absent:
            raise RoundVoided(f"{', '.join(absent)} not a member of the league{self._owes(seats)}")
        self._settle(seats, members)
        stubs = [self._stub(a, members) for a in seats]
        descs = [describe(s, timeout=self.cfg.timeout) for s in stubs]
        m = self.settings
        for k, (a, d) in enumerate(zip(seats, descs)):
            if d.learning_rule != m.rule:
                raise RoundVoided(f"{a} learns with rule {d.learning_rule!r}, not {m.rule!r}")
            if a not in self.policies:
                self.policies[a] = policy_from_description(d.policy_class, d.policy_config_json,
                                                           *seat_spaces(self.game, k))
        policies = [self.policies[a] for a in seats]
        versions = [d.versions["policy"] for d in descs]
        r = self.round
        trust = m.trust(self.seed)
        for stub, d in zip(stubs, descs):  # this round's trust-region settings (an agent starts with the defaults)
            push_parameters(stub, TRUST, trust, d.versions.get(TRUST, 0), timeout=self.cfg.timeout)
        match = referee_pb2.MatchSpec(match_id=f"matrl.r{r}.g{g}", step=r, seats=[
            referee_pb2.PinnedSeat(agent_id=a, kind="policy", version=v) for a, v in zip(seats, versions)])
        replies = list(self.referee.PlayMatches(referee_pb2.PlayMatchesRequest(
            matches=[match], episodes=m.episodes, horizon=m.horizon,
            rng_state=self.generator.get_state().numpy().tobytes()), timeout=self.cfg.timeout))
        self.generator.set_state(torch.frombuffer(bytearray(replies[-1].rng_state), dtype=torch.uint8))
        (batch,) = list(read_batches(b for reply in replies for b in reply.batches))
        episodes = episodes_of(batch)
        current = [self._fetch(s, a, "policy", v) for s, a, v in zip(stubs, seats, versions)]
        predicted = [self._fetch(s, a, PREDICTED, r) for s, a in zip(stubs, seats)]
        out = round_mixtures(m, r, policies, current, predicted, episodes)
        if out.solve_seconds is not None:
            self.matrl_metrics.solve.observe(out.solve_seconds)
        for stub, message in zip(stubs, out.messages):  # phase 1: every agent prepares its response
            self._push(stub, MIXTURE, message)
        for stub, agent in zip(stubs, seats):
            self._fetch(stub, agent, PREPARED, r)
        record = {"round": r, "group": g, "agents": seats, "weights": out.weights.tolist(), "found": out.found,
                  "solver": out.solver,
                  "metagame": None if out.metagame is None else out.metagame.flatten().tolist(),
                  "stderr": None if out.stderr is None else out.stderr.flatten().tolist(),
                  "mean_reward": episodes.rewards.mean(dim=(0, 1, 2)).tolist()}
        self._decide(g, r, seats, versions, record)
        new = self._commit(g, r, seats, stubs, versions)
        corners = ["".join("1" if c else "0" for c in row) for row in corner_choices(len(seats)).tolist()]
        for k, agent in enumerate(seats):
            self.matrl_metrics.weight.labels(agent).set(float(out.weights[k]))
            if out.metagame is not None:
                for c, corner in enumerate(corners):
                    self.matrl_metrics.value.labels(agent, corner).set(float(out.metagame[k].flatten()[c]))
            if agent in new:  # else it owes the commit: its final parameters come when it takes it
                self.final[agent] = {name: t.tolist() for name, t in new[agent].items()}

    def iterate(self) -> dict[str, float]:
        """One round of every group (from the first group not done: a coordinator restarted from a
        decision saved mid-iteration finishes that iteration); a group whose round fails is voided
        and the others go on."""
        t0 = time.perf_counter()
        members = self._members()
        if not self._numbered:
            self.round, self._numbered = self._first_round(members), True
        if self._resumed:
            self._resumed = False
            self._settle_on_resume(members)
        progress = self.progress
        for g in range(progress.groups_done, len(self.groups)):
            seats = self.groups[g]
            self.round += 1
            stream = self.generator.get_state()
            try:
                self._group_round(g, seats, members)  # its decision is counted by _decide
                self.matrl_metrics.completed.inc()
            except (RoundVoided, grpc.RpcError) as err:
                self.generator.set_state(stream)  # a voided round draws nothing: the next round plays its episodes
                log.warning("round %d of group %d (%s) voided: %s", self.round, g, ", ".join(seats), _first_line(err))
                progress.groups_done, progress.voided = g + 1, progress.voided + 1
                self.matrl_metrics.voided.inc()
        self.iteration += 1
        records = self.history[len(self.history) - progress.played:]
        self.progress = IterationProgress()
        rewards = [x for rec in records for x in rec["mean_reward"]]
        stats = {"objective": sum(rewards) / len(rewards) if rewards else float("nan"),
                 "groups_played": float(len(records)), "groups_voided": float(progress.voided),
                 "seconds": time.perf_counter() - t0}
        self.metrics.iterations.inc()
        self.metrics.seconds.observe(stats["seconds"])
        self.metrics.objective.set(stats["objective"])
        return stats

    def result(self) -> dict[str, Any]:
        return {"rounds": self.history, "params": self.final,
                "owed_commits": {a: o.round for a, o in self.owed.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "round": self.round, "generator": self.generator.get_state(),
                "history": self.history, "final": self.final,
                "owed": {a: [o.round, o.version] for a, o in self.owed.items()},
                "progress": [self.progress.groups_done, self.progress.played, self.progress.voided]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration, self.round = state["iteration"], state["round"]
        self.generator.set_state(state["generator"])
        self.history, self.final = state["history"], state["final"]
        self.owed = {a: OwedCommit(*o) for a, o in state.get("owed", {}).items()}  # re-sent at the first iterate
        self.progress = IterationProgress(*state.get("progress", ()))  # older files: saved between iterations
        self._resumed = True
        self.matrl_metrics.owed.set(len(self.owed))
        if self.iteration:
            self.metrics.iterations.inc(self.iteration)
