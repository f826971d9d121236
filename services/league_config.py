"""The configuration of a league of processes: the referee's schedule and each agent's
spec. Loaded from TOML like the experiment configs (``league.config``)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from league.config import ConfigError, build, read_table

if TYPE_CHECKING:
    from league.envs import Environment


@dataclass
class RefereeConfig:
    """Matchmaking and rollouts."""

    env: str = "ipd"
    """Environment of every match: a name in ``league.envs.ENVIRONMENTS`` (``ipd``, ``rps``,
    ``halfcheetah-2x3``, ``checkers``, ``switch``) or ``"module:factory"``, any PettingZoo
    ``ParallelEnv`` factory with ``Discrete``/``Box`` spaces (see ``league_env``)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment's factory, the ``[referee.env_kwargs]`` table
    (e.g. ``observe = "state"`` for MaMuJoCo, a PettingZoo factory's own arguments). The seat
    count and the episode length are not set here: ``n_players`` and ``horizon`` are given to
    the factory where it takes them (``n_players``; ``horizon`` or ``max_steps``)."""
    n_players: int = 2
    """Seats per match (the game's ``n_agents``): ``rps`` takes 2..4, ``ipd`` 2. A meta-agent's
    chain seats it with ``n_players - 1`` personas; learners play in random groups of this size."""
    trajectories: int = 16
    """K: episodes per match (one trajectory batch)."""
    horizon: int = 50
    """H: steps per episode (the environment's ``horizon``/``max_steps``; an environment with
    neither, e.g. a grid world, ends its episodes itself within its own ``max_steps``)."""
    gamma: float = 0.96
    """Discount of returns (reported with the trajectories; agents learn with it)."""
    chain_length: int = 3
    """L: inner steps of each meta-agent x persona chain (chains visit phi_0..phi_L)."""
    rounds: int = 8
    """Rounds to play before the league ends by itself (0: run until stopped)."""
    chains: int = 0
    """Chains per (meta-agent, persona group) before the group stops being scheduled (0: no limit)."""
    seed: int = 0
    """Seed of the referee's sampling and matchmaking stream."""
    lease_seconds: float = 5.0
    """A member not heard from for this long is dropped from matchmaking."""
    chains_by: str = "referee"
    """Who drives the meta-agent x persona chains: ``referee`` (every round, Algorithm 2)
    or ``coordinator`` (only on its PlayMatches requests, Algorithm 1)."""
    fetch_timeout: float = 30.0
    """Seconds to wait for a seat's pinned parameters before the match is voided."""


@dataclass
class AgentSpec:
    """One agent process of the league."""

    id: str = ""
    """Agent id, unique in the league; a restarted process with the same id resumes."""
    role: str = "learner"
    """``meta`` (plays chains against every persona), ``persona`` (a chain peer) or
    ``learner`` (paired across the population every round)."""
    policy: str = "tabular"
    """Policy class, a name in ``league.policies.POLICIES`` (``tabular``, ``lstm_categorical``,
    ``lstm_gaussian``, ``mlp_gaussian``, ``mlp_categorical``), sized from the seat's spaces;
    ``lstm`` is kept as another name for ``lstm_categorical`` (the Meta-MAPG LSTM)."""
    hidden: int = 64
    """Hidden units of a policy class that has them (every class but ``tabular``)."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of the policy class (its ``[agents.policy_kwargs]`` table),
    e.g. ``init_log_std = -0.5`` for a Gaussian policy or ``layers = 2`` for an MLP."""
    init: str = "uniform"
    """Initial policy: ``uniform``, ``random:SEED``, ``persona:SPLIT:INDEX`` (the config's
    persona population, e.g. ``persona:test:3``), or ``checkpoint:PATH`` (a meta-agent
    checkpoint written by ``league train``)."""
    lr: list[float] = field(default_factory=lambda: [1.0])
    """Inner learning rate per chain step (the last value repeats); a checkpoint's learned
    rates replace it."""
    rule: str = "pg"
    """Learning rule, a name in ``league.updates.UPDATE_RULES`` that an agent process can
    follow from the referee's broadcasts: ``pg`` (policy gradient with the linear feature
    baseline) or ``frozen``."""


@dataclass
class LeagueConfig:
    """A whole league: referee schedule, persona population and the agents to start."""

    name: str = "league"
    """Name shown by ``league status`` and used for the run directory."""
    population_seed: int = 0
    """Seed of the persona population that ``persona:`` inits index into."""
    peer_access: str = "direct"
    """Who may read a persona's or learner's parameters: ``direct`` (the referee, which rolls
    out, and the coordinator) or ``inferred`` (opponent modeling: the referee only; they refuse
    the coordinator, whose ``opponent-modeling`` mode never asks). A meta-agent is always
    ``direct``: the coordinator trains it and checks its published updates. See docs/security.md."""
    referee: RefereeConfig = field(default_factory=RefereeConfig)
    agents: list[AgentSpec] = field(default_factory=list)
    teams: list[list[str]] = field(default_factory=list)
    """Fixed seatings, each a list of ``referee.n_players`` distinct agent ids in seat order.
    A team led by a meta-agent is one of its chains (its personas in the listed seats); a
    team of learners plays together every round. A meta-agent named in no team gets the
    default grouping (its personas in league order, ``n_players - 1`` at a time); learners
    in no team are grouped at random every round. See docs/league.md."""


POLICY_ALIASES = {"lstm": "lstm_categorical"}
"""Older names of policy classes that league configs may still use."""


def _pop_table(table: dict, key: str, where: str) -> dict:
    """A free-form sub-table (kwargs of a factory), taken out before the typed build."""
    value = table.pop(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key} must be a table, got {value!r}")
    return value


def load_league_config(path: str | Path, overrides: Sequence[str] = ()) -> LeagueConfig:
    """Read a league TOML file and apply ``key.path=value`` overrides."""
    table = read_table(path, overrides)
    agents = table.pop("agents", [])
    if not isinstance(agents, list):
        raise ConfigError("agents must be an array of tables ([[agents]])")
    referee = table.get("referee", {})
    env_kwargs = _pop_table(referee, "env_kwargs", "referee") if isinstance(referee, dict) else {}
    cfg = build(LeagueConfig, table)
    cfg.referee.env_kwargs = env_kwargs
    cfg.agents = []
    for i, a in enumerate(agents):
        kwargs = _pop_table(a, "policy_kwargs", f"agents[{i}]") if isinstance(a, dict) else {}
        cfg.agents.append(build(AgentSpec, a, f"agents[{i}]"))
        cfg.agents[-1].policy_kwargs = kwargs
    validate_league(cfg)
    return cfg


def _factory_parameters(env: str) -> set[str]:
    """Named parameters of the factory ``make_env`` calls for ``env`` (a ``module:factory``'s
    adapter takes ``max_steps``; the factory's own arguments are its business)."""
    from league.envs import ENVIRONMENTS

    if ":" in env:
        return {"max_steps"}
    factory = ENVIRONMENTS.get(env)
    if factory is None:
        return set()
    return {name for name, p in inspect.signature(factory).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def env_arguments(env: str, env_kwargs: dict[str, Any], n_players: int, horizon: int) -> dict[str, Any]:
    """The keyword arguments ``make_env(env, ...)`` gets in a league: ``env_kwargs`` plus the
    seat count and episode length under the names the factory takes (``n_players``;
    ``horizon`` or ``max_steps``; a ``module:factory`` only ``max_steps``, of its adapter: its
    other arguments, ``n_players`` too, are the factory's own and come from ``env_kwargs``).
    ValueError when ``env_kwargs`` sets one of the names the league sets."""
    takes = _factory_parameters(env)
    given = {k: v for k, v in {"n_players": n_players, "horizon": horizon, "max_steps": horizon}.items() if k in takes}
    clash = sorted(set(env_kwargs) & set(given))
    if clash:
        raise ValueError(f"env_kwargs must not set {clash}: the league sets them from referee.n_players and "
                         "referee.horizon")
    return {**given, **env_kwargs}


def league_env(env: str, env_kwargs: dict[str, Any] | None = None, n_players: int = 2,
               horizon: int = 50) -> "Environment":
    """The one environment object of a league: ``league.envs.make_env`` of the referee's
    ``env`` and ``env_kwargs`` (see ``env_arguments``), with ``n_players`` seats. The referee
    plays it, every agent sizes its policy from its seat's spaces, and config validation
    builds it once. ValueError naming what does not fit (an unknown name, module or factory,
    a factory that is not a PettingZoo ``ParallelEnv``, unsupported spaces, the seat count)."""
    from league.envs import make_env

    try:
        built = make_env(env, **env_arguments(env, dict(env_kwargs or {}), n_players, horizon))
    except TypeError as err:  # a kwarg the factory does not take
        raise ValueError(f"env {env!r}: {str(err).splitlines()[0]}") from None
    if built.n_agents != n_players:
        raise ValueError(f"env {env!r} has {built.n_agents} seats, referee.n_players is {n_players}")
    return built


def env_of(r: RefereeConfig) -> "Environment":
    """The environment a referee config plays; ConfigError (one line) naming what does not fit."""
    try:
        return league_env(r.env, r.env_kwargs, r.n_players, r.horizon)
    except (ValueError, ImportError) as err:
        raise ConfigError(f"referee.env: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def policy_class(spec: AgentSpec) -> str:
    """The ``league.policies.POLICIES`` name of an agent's policy (aliases resolved)."""
    return POLICY_ALIASES.get(spec.policy, spec.policy)


def policy_config(spec: AgentSpec) -> dict[str, Any]:
    """The keyword arguments of an agent's policy class: ``hidden`` where the class takes it,
    then ``policy_kwargs``. This dict is the ``policy_config`` of the agent's description."""
    from league.policies import POLICIES

    takes = inspect.signature(POLICIES[policy_class(spec)]).parameters
    return {**({"hidden": spec.hidden} if "hidden" in takes else {}), **spec.policy_kwargs}


def validate_league(cfg: LeagueConfig) -> None:
    ids = [a.id for a in cfg.agents]
    if any(not i for i in ids):
        raise ConfigError("every agent needs an id")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"agent ids must be unique: {ids}")
    for a in cfg.agents:
        validate_agent(a)
    if cfg.peer_access not in ("direct", "inferred"):
        raise ConfigError(f"peer_access must be direct or inferred, not {cfg.peer_access!r}")
    r = cfg.referee
    if r.chains_by not in ("referee", "coordinator"):
        raise ConfigError(f"referee.chains_by must be referee or coordinator, not {r.chains_by!r}")
    for key in ("trajectories", "horizon", "chain_length"):
        if getattr(r, key) < 1:
            raise ConfigError(f"referee.{key} must be >= 1")
    from services.limits import MAX_EPISODES, MAX_HORIZON

    if r.trajectories > MAX_EPISODES or r.horizon > MAX_HORIZON:
        raise ConfigError(f"referee.trajectories must be <= {MAX_EPISODES} and referee.horizon <= {MAX_HORIZON}")
    env = env_of(r)
    from services.batches import MAX_BATCH_BYTES, env_step_bytes

    # a batch over one message travels in checksummed parts; this bounds what a receiver buffers
    batch = r.trajectories * env.max_steps * env_step_bytes(env)
    if batch > MAX_BATCH_BYTES:
        raise ConfigError(f"a match of {r.trajectories} x {env.max_steps} steps is a {batch}-byte trajectory batch, "
                          f"over the {MAX_BATCH_BYTES}-byte limit: lower referee.trajectories or referee.horizon")
    if not r.lease_seconds > 0 or not r.fetch_timeout > 0:
        raise ConfigError("referee.lease_seconds and referee.fetch_timeout must be > 0")
    validate_teams(cfg, env.n_agents)
    for a in cfg.agents:
        validate_policy(a, env)
        validate_init(a, r.env, env.n_agents, cfg.population_seed)


def seats_of(role: str, n_seats: int) -> range:
    """The seats an agent of ``role`` may be given: a meta-agent seat 0, a persona seats
    1..n-1 (its place in a chain's group), a learner any seat."""
    return {"meta": range(0, 1), "persona": range(1, n_seats)}.get(role, range(n_seats))


def validate_policy(a: AgentSpec, env: "Environment") -> None:
    """The agent's policy class can be built for every seat its role may take (spaces fit,
    its ``policy_kwargs`` are arguments of the class), and those seats have the same spaces
    (one policy plays any of them; the referee checks the same at join)."""
    from league.policies import make_policy

    seats = seats_of(a.role, env.n_agents)
    for seat in seats[1:]:
        if (env.observation_spaces[seat], env.action_spaces[seat]) != (env.observation_spaces[seats[0]],
                                                                        env.action_spaces[seats[0]]):
            raise ConfigError(f"agent {a.id}: a {a.role} may sit at seats {list(seats)} of {env.name}, but seat "
                              f"{seat} ({env.agents[seat]}) has other spaces than seat {seats[0]} "
                              f"({env.agents[seats[0]]}): one policy cannot play both")
    for seat in seats:
        try:
            make_policy(policy_class(a), env.observation_spaces[seat], env.action_spaces[seat], **policy_config(a))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"agent {a.id}: policy {a.policy!r} does not fit seat {seat} of {env.name}: "
                              f"{str(err).splitlines()[0]}") from None


def validate_teams(cfg: LeagueConfig, n_seats: int) -> None:
    """Every team seats ``n_seats`` distinct configured agents: a meta-agent and personas, or
    learners only; a meta-agent left to the default grouping has a whole number of persona
    groups."""
    roles = {a.id: a.role for a in cfg.agents}
    teamed = set()
    for i, team in enumerate(cfg.teams):
        where = f"teams[{i}] {team}"
        if len(team) != n_seats:
            raise ConfigError(f"{where} has {len(team)} seats; {cfg.referee.env} with "
                              f"referee.n_players = {n_seats} has {n_seats}")
        if len(set(team)) != len(team):
            raise ConfigError(f"{where} names an agent twice (an agent plays one seat of a match)")
        unknown = [a for a in team if a not in roles]
        if unknown:
            raise ConfigError(f"{where} names agents that are not in [[agents]]: {unknown}")
        seat_roles = [roles[a] for a in team]
        if seat_roles[0] == "meta" and all(r == "persona" for r in seat_roles[1:]):
            teamed.add(team[0])
        elif not all(r == "learner" for r in seat_roles):
            raise ConfigError(f"{where} has roles {seat_roles}: a team is a meta-agent followed by "
                              f"{n_seats - 1} personas, or {n_seats} learners")
    personas = sum(r == "persona" for r in roles.values())
    grouped = [a for a, r in roles.items() if r == "meta" and a not in teamed]
    if grouped and personas % (n_seats - 1):
        raise ConfigError(f"{personas} personas do not split into chains of {n_seats - 1} persona seats for "
                          f"meta-agent(s) {grouped}: configure a multiple of {n_seats - 1} personas or list "
                          "the chains in teams")


def validate_init(a: AgentSpec, env: str, n_players: int, population_seed: int) -> None:
    """A ``persona:SPLIT:INDEX`` init names a persona of the population sized for this game."""
    kind, _, arg = a.init.partition(":")
    if kind != "persona":
        return
    from league.personas import make_personas

    try:
        population = make_personas(env, population_seed, n_players)
    except ValueError as err:
        raise ConfigError(f"agent {a.id}: init {a.init!r}: {err}") from None
    split, _, index = arg.partition(":")
    table = getattr(population, split, None) if split in ("train", "val", "test") else None
    if table is None or not index.isdigit() or int(index) >= table.shape[0]:
        sizes = ", ".join(f"{s} {getattr(population, s).shape[0]}" for s in ("train", "val", "test"))
        raise ConfigError(f"agent {a.id}: init {a.init!r} names no persona of {env} for {n_players} players "
                          f"(splits: {sizes})")
    if a.policy != "tabular":
        raise ConfigError(f"agent {a.id}: a persona init needs policy = \"tabular\", not {a.policy!r}")


def validate_agent(a: AgentSpec) -> None:
    if a.role not in ("meta", "persona", "learner"):
        raise ConfigError(f"agent {a.id}: role must be meta, persona or learner, not {a.role!r}")
    from league.policies import POLICIES

    if policy_class(a) not in POLICIES:
        raise ConfigError(f"agent {a.id}: policy must be one of {', '.join(sorted(POLICIES))} (or lstm), "
                          f"not {a.policy!r}")
    from league.updates import UPDATE_RULES

    def followable(rule) -> bool:  # from broadcast episodes alone (not exact-game rules, not look-ahead)
        return not getattr(rule, "exact_game", False) and not rule().needs_rollouts

    if a.rule not in UPDATE_RULES or not followable(UPDATE_RULES[a.rule]):
        known = [name for name, rule in UPDATE_RULES.items() if followable(rule)]
        raise ConfigError(f"agent {a.id}: rule must be one an agent process can follow ({', '.join(known)}), "
                          f"not {a.rule!r}")
    if not a.lr:
        raise ConfigError(f"agent {a.id}: lr must not be empty")
    kind = a.init.split(":", 1)[0]
    if kind not in ("uniform", "random", "persona", "checkpoint"):
        raise ConfigError(f"agent {a.id}: init {a.init!r} is not uniform, random:SEED, persona:SPLIT:INDEX "
                          "or checkpoint:PATH")
