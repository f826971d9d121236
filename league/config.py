"""Typed experiment configuration: one dataclass per role, loaded from TOML, overridden
with ``--set section.field=value``. Every field is documented where it is declared."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from league.learner import OuterConfig
from league.opponent_model import OpponentModelConfig


@dataclass
class GameConfig:
    """The stochastic game."""

    name: str = "ipd"
    """A registered game (``league.games.GAMES``: ``ipd`` or ``rps``, built with ``n_players``
    and ``horizon``) or any other registered environment (``league.envs.ENVIRONMENTS``, e.g.
    ``halfcheetah-2x3``, built with ``max_steps = chain.horizon`` and ``env_kwargs``)."""
    n_players: int = 2
    """Seats: ``ipd`` 2; ``rps`` 2..4 (Figure 4b: 3 and 4); an environment's own count. Seat 0
    is the meta-agent."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of a (non-matrix) environment's factory, e.g. HalfCheetah's
    ``observe = "state"`` (both seats read the full state, as in the paper's Figure 2d)."""


@dataclass
class PopulationConfig:
    """The peers' initial personas (the distribution ``p(phi_0^-i)``)."""

    seed: int = 0
    """Seed of the persona population; fixed across training seeds, like the authors' pickles."""
    out_of_distribution: bool = False
    """IPD only: the Figure 3c split (test personas are the most extreme of each type)."""
    eval_groups: list[str] = field(default_factory=list)
    """Persona types reported separately at meta-test (e.g. ``cooperating``); always also ``all``."""
    source: str = "tabular"
    """Where the personas come from (``league.setting.PERSONA_SOURCES``): ``tabular``, the
    game's generated probability tables (IPD, RPS); ``checkpoints``, the saved parameters of a
    pretrained peer in ``directory`` (HalfCheetah teammates, ``league.teammates``)."""
    peer_policy: str = "tabular"
    """The peers' policy class (``league.policies.POLICIES``); ``tabular`` for ``tabular``."""
    peer_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the peer policy class, e.g. ``{hidden = 64}`` for ``lstm_gaussian``."""
    directory: str = ""
    """``checkpoints``: the directory of ``iteration_NNNN.pt`` files (relative to the working directory)."""
    train_val: list[int] = field(default_factory=list)
    """``checkpoints``: iterations ``[start, stop)`` split at random into train and validation."""
    test: list[int] = field(default_factory=list)
    """``checkpoints``: iterations ``[start, stop)`` of the test personas; after a gap past ``train_val``."""
    n_val: int = 0
    """``checkpoints``: validation personas drawn from ``train_val``."""


@dataclass
class ChainConfig:
    """The Markov chain of joint policies."""

    trajectories: int = 64
    """K: episodes per joint policy (per inner step)."""
    horizon: int = 150
    """H: steps per episode."""
    length: int = 7
    """L: inner steps; the chain visits phi_0 .. phi_L."""
    gamma: float = 0.96
    """Discount factor of returns and of the DiCE objective."""


@dataclass
class AgentConfig:
    """The meta-agent and its peers."""

    hidden: int = 64
    """Units of the meta-agent's input layer and LSTM (policy and value networks)."""
    policy: str = "lstm_categorical"
    """The meta-agent's policy class (``league.policies.POLICIES``): ``lstm_categorical`` for
    the matrix games, ``lstm_gaussian`` for continuous actions (HalfCheetah)."""
    inner_lr: float = 0.1
    """The meta-agent's inner learning rate (the initial value where it is meta-learned)."""
    peer_lr: float = 1.0
    """The personas' fixed inner learning rate."""
    lookahead: int = 1
    """LOLA-DiCE look-ahead steps."""


@dataclass
class TrainConfig:
    """Meta-training (Algorithm 1) and checkpoint selection."""

    iterations: int = 100
    """Meta-updates per (method, seed)."""
    meta_batch: int = 8
    """Personas per meta-update, batched as a tensor dimension."""
    entropy_weight: float = 0.5
    """Entropy bonus on the meta-agent's policy at phi_0."""
    gae_lambda: float = 0.95
    """GAE lambda of the outer loss."""
    include_initial: bool = True
    """Include the return of phi_0 in the meta-objective (the authors' code does)."""
    estimator: str = "dice"
    """Form of the meta-gradient (``league.estimators``): ``dice``, ``authors`` or ``score``."""
    per_step: bool = True
    """Average the outer objective's terms over the H time steps (a scale that does not grow
    with H) instead of summing them as the authors do."""
    validate_every: int = 10
    """Iterations between validation passes; the best validated checkpoint is kept."""
    micro_batch: int = 0
    """Build the meta-batch's chains this many at a time, each micro-batch's graph freed
    before the next (``MetaLearner.step_micro_batched``): peak memory of one micro-batch,
    the same update given the same episodes, but the episodes are drawn micro-batch by
    micro-batch. 0: all chains at once. Embedded training only; not with the ``score``
    estimator, whose chain baseline couples the chains."""
    outer: OuterConfig = field(default_factory=OuterConfig)
    """The outer optimiser."""
    opponent_model: OpponentModelConfig = field(default_factory=OpponentModelConfig)
    """The maximum-likelihood peer fit of the opponent-modeling methods (``meta-mapg-om``)."""


@dataclass
class ExperimentConfig:
    """A whole experiment: every method x seed, trained, selected and meta-tested."""

    name: str = "experiment"
    """Name used for the run directory and plot titles."""
    methods: list[str] = field(default_factory=lambda: ["meta-mapg", "meta-pg", "lola-dice", "reinforce"])
    """Methods to compare side by side (see ``league.methods``); ``name:form`` runs a method
    with another meta-gradient estimator than ``train.estimator`` (e.g. ``meta-mapg:authors``)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Training seeds; every (method, seed) pair is an independent run."""
    workers: int = 2
    """Processes running (method, seed) jobs in parallel (spawned, one torch thread each)."""
    dtype: str = "float32"
    """Tensor dtype: ``float32`` or ``float64``."""
    device: str = "cpu"
    """Torch device of the learning (``cpu``, ``cuda``, ``cuda:1``): the meta-agent, critic,
    personas, game tensors, random streams and episodes live there; checkpoints and results
    are moved to the CPU when they leave (``league.devices``). ``cuda`` on a machine without
    one is refused at load. A CUDA run draws other random numbers than a CPU run of the same
    seed (another generator), so its numbers differ from the CPU results."""
    paper: str = ""
    """Which paper table or figure this config follows, and where it deviates."""
    game: GameConfig = field(default_factory=GameConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, where)
    if origin is dict:  # free-form keyword arguments (e.g. an environment factory's)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[]") for v in value]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported type {tp}")


def build(cls: type, table: dict[str, Any], where: str = "") -> Any:
    """A dataclass from a table, coercing values to the field types; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{where or 'top level'}]; known: {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in table.items()}
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return key.strip().split("."), value


def read_table(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A TOML file as a table (empty without a path) with ``key.path=value`` overrides
    applied; every config loader of the project reads through this."""
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
    for text in overrides:
        keys, value = _parse_override(text)
        node = table
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return table


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a TOML file (or start from the defaults) and apply ``key.path=value`` overrides."""
    cfg = build(ExperimentConfig, read_table(path, overrides))
    validate(cfg)
    return cfg


def validate(cfg: ExperimentConfig) -> None:
    """Reject values that would fail later or silently do something else."""
    from league.methods import METHOD_NAMES

    from league.estimators import ESTIMATORS

    for m in cfg.methods:
        name, _, form = m.partition(":")
        if name not in METHOD_NAMES:
            raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
        if form and form not in ESTIMATORS:
            raise ConfigError(f"unknown estimator {form!r} in method {m!r}; known: {', '.join(ESTIMATORS)}")
    if cfg.train.estimator not in ESTIMATORS:
        raise ConfigError(f"unknown train.estimator {cfg.train.estimator!r}; known: {', '.join(ESTIMATORS)}")
    if not cfg.methods or not cfg.seeds:
        raise ConfigError("methods and seeds must not be empty")
    from league.envs import ENVIRONMENTS
    from league.games import GAMES, check_players
    from league.policies import POLICIES

    if cfg.game.name in GAMES:
        try:
            check_players(cfg.game.name, cfg.game.n_players)
        except ValueError as e:
            raise ConfigError(f"game: {e}") from None
        if cfg.game.env_kwargs:
            raise ConfigError(f"game.env_kwargs: the matrix game {cfg.game.name!r} takes none")
    elif cfg.game.name not in ENVIRONMENTS:
        raise ConfigError(f"unknown game {cfg.game.name!r}; known games: {', '.join(sorted(GAMES))}; "
                          f"environments: {', '.join(sorted(ENVIRONMENTS))}")
    for key, name in (("agent.policy", cfg.agent.policy), ("population.peer_policy", cfg.population.peer_policy)):
        if name not in POLICIES:
            raise ConfigError(f"unknown {key} {name!r}; known: {', '.join(sorted(POLICIES))}")
    from league.setting import PERSONA_SOURCES

    if cfg.population.source not in PERSONA_SOURCES:
        raise ConfigError(f"unknown population.source {cfg.population.source!r}; known: {', '.join(PERSONA_SOURCES)}")
    if cfg.population.out_of_distribution and cfg.game.name != "ipd":
        raise ConfigError("population.out_of_distribution is the IPD split of Figure 3c; "
                          f"game {cfg.game.name!r} has none")
    positive = {"chain.trajectories": cfg.chain.trajectories, "chain.horizon": cfg.chain.horizon,
                "chain.length": cfg.chain.length, "train.meta_batch": cfg.train.meta_batch,
                "train.validate_every": cfg.train.validate_every, "workers": cfg.workers,
                "agent.hidden": cfg.agent.hidden, "agent.lookahead": cfg.agent.lookahead}
    for key, v in positive.items():
        if v < 1:
            raise ConfigError(f"{key} must be >= 1, got {v}")
    if cfg.train.iterations < 0:
        raise ConfigError("train.iterations must be >= 0")
    if not 0 <= cfg.chain.gamma < 1:
        raise ConfigError(f"chain.gamma must be in [0, 1), got {cfg.chain.gamma}")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    from league.devices import resolve_device

    try:
        resolve_device(cfg.device, "device")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def to_toml(cfg: Any, prefix: str = "") -> str:
    """Serialise a config back to TOML (the resolved config of a run directory)."""
    scalars, tables = [], []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            name = f"{prefix}.{f.name}" if prefix else f.name
            tables.append(f"\n[{name}]\n" + to_toml(v, name))
        else:
            scalars.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(scalars) + "\n" + "".join(tables)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return '"none"'
    return repr(v)
