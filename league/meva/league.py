"""A league on a differentiable game: agents that hold their game parameters (IPD: five
cooperation logits) and an update rule (``naive``, ``lola``, ``lola-taylor``, ``hola``,
``meva``), paired at random every round; each agent steps with its own rule from the joint
point of its pairing (in an exact game the joint point *is* the data: nothing is sampled).
A meta-value learner trains MeVa's model on the league's optimisation trajectories (each
pairing's joint point before and after the round) with ``league.meva.train``'s loss,
targets and gammas, and versions it: version ``v`` has been trained on the first ``v - 1``
rounds, and MeVa agents step in round ``r`` with version ``r + 1``.

The pieces are the one code path of both runs: :func:`run_embedded` calls them in one
process, and the league of processes calls the same functions (agents:
:func:`seat_update`, the round driver: :func:`pairings`, the ``meva`` coordinator:
:class:`MetaValueLearner`), so the two give the same parameters (tested to 1e-6)."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from league.games.differentiable import DifferentiableGame, make_differentiable_game
from league.meva.bridge import PARAM_NAME, ExactGameEvaluator
from league.meva.model import NetConfig, PlayerSymmetricNet
from league.meva.train import MeVaConfig, beta_half, fit_trajectories, make_meta_value_model
from league.updates import make_update_rule

__all__ = ["DiffAgentSpec", "DiffLeagueConfig", "load_diff_league", "initial_x", "pairings", "seat_update",
           "model_params", "load_model_params", "MetaValueLearner", "run_embedded", "RULE_SETTINGS"]


@dataclass(frozen=True)
class DiffAgentSpec:
    """One agent of a differentiable-game league."""

    id: str
    """Agent id (1-64 characters of ``[A-Za-z0-9._-]``)."""
    rule: str = "naive"
    """Update rule, a key of :data:`RULE_SETTINGS` (an entry of ``league.updates.UPDATE_RULES``)."""
    lr: float = 1.0
    """Step size: ``x <- x + lr * direction``."""
    init_seed: int = 0
    """Seed of the initial parameters ``x_0 ~ N(0, init_scale^2)``."""
    init_scale: float = 1.0
    """Standard deviation of the initial parameters."""
    alpha: float = 1.0
    """Look-ahead step of the imagined peer update (``lola``, ``lola-taylor``, ``hola``)."""
    order: int = 2
    """Recursion depth of ``hola``."""
    gamma: float = 0.9
    """MeVa's meta-discount for this agent's own seat (``meva``; 0 is the naive learner)."""
    peer_gamma: float = 0.0
    """Meta-discount the model is given for the other seats (``meva``): the agent does not
    know its peers' rules; 0 models them as naive learners, as the paper's shaping setting."""


@dataclass(frozen=True)
class DiffLeagueConfig:
    """A league on a differentiable game (TOML: top-level fields, ``[meva]``, ``[[agents]]``)."""

    game: str = "ipd"
    """A ``league.games.differentiable.DIFFERENTIABLE_GAMES`` name."""
    rounds: int = 5
    """Rounds of the league: every agent in a pairing takes one step per round."""
    seed: int = 0
    """Seeds the pairings (one permutation per round) and the meta-value learner's gammas."""
    train_steps: int = 1
    """Training steps of the meta-value model after each round (0: the model stays at its
    initialisation, versions still advance)."""
    meva: MeVaConfig = field(default_factory=lambda: MeVaConfig(formulation="U"))
    """The model and its training: ``formulation``, ``n_quantiles``, ``net``, ``lam``,
    ``rho``, ``lr``, ``weight_decay``, ``huber_kappa`` and ``seed`` (model initialisation)
    are used; the exploration fields are not (the league's agents make the trajectories)."""
    agents: tuple[DiffAgentSpec, ...] = ()
    """The agents, in league order (the pairings permute this order)."""

    def __post_init__(self) -> None:
        ids = [a.id for a in self.agents]
        if len(set(ids)) != len(ids):
            raise ValueError(f"agent ids must be distinct, got {ids}")
        unknown = [a.rule for a in self.agents if a.rule not in RULE_SETTINGS]
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; a differentiable league runs {', '.join(RULE_SETTINGS)}")

    def spec(self, agent_id: str) -> DiffAgentSpec:
        """The spec of agent ``agent_id``."""
        for a in self.agents:
            if a.id == agent_id:
                return a
        raise ValueError(f"agent {agent_id!r} is not in this league; agents: {[a.id for a in self.agents]}")

    def make_game(self) -> DifferentiableGame:
        return make_differentiable_game(self.game)


def load_diff_league(path: str | Path, sets: list[str] | None = None) -> DiffLeagueConfig:
    """A :class:`DiffLeagueConfig` from TOML (unknown keys raise). ``sets`` is accepted for
    the command line's ``--set`` and must be empty."""
    if sets:
        raise ValueError("--set is not supported for a differentiable-league config")
    raw = tomllib.loads(Path(path).read_text())
    try:
        meva = dict(raw.pop("meva", {"formulation": "U"}))
        net = NetConfig(**meva.pop("net", {}))
        agents = tuple(DiffAgentSpec(**a) for a in raw.pop("agents", []))
        return DiffLeagueConfig(**raw, meva=MeVaConfig(**meva, net=net), agents=agents)
    except TypeError as err:  # an unknown key: one line naming it
        raise ValueError(f"{path} is not a differentiable-league config: {err}") from None


def initial_x(spec: DiffAgentSpec, game: DifferentiableGame) -> torch.Tensor:
    """The agent's initial parameters ``[1, d]`` (``N(0, init_scale^2)`` from ``init_seed``)."""
    gen = torch.Generator().manual_seed(spec.init_seed)
    return torch.randn(1, game.dim, generator=gen) * spec.init_scale


def pairings(agent_ids: list[str], n_players: int, seed: int, round_: int) -> list[tuple[str, ...]]:
    """Round ``round_``'s matches: one seeded permutation of the agents cut into groups of
    ``n_players`` in seat order; the ``len % n_players`` left over sit the round out."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + round_)
    order = [agent_ids[i] for i in torch.randperm(len(agent_ids), generator=gen).tolist()]
    return [tuple(order[i:i + n_players]) for i in range(0, len(order) - n_players + 1, n_players)]


def _meva_settings(spec: DiffAgentSpec, seat: int, n: int, model: PlayerSymmetricNet | None,
                   formulation: str) -> dict[str, Any]:
    if model is None:
        raise ValueError(f"agent {spec.id!r} follows meva and needs a meta-value model")
    gamma = torch.full((n,), spec.peer_gamma)
    gamma[seat] = spec.gamma
    return {"model": model, "gamma": gamma, "formulation": formulation}


SettingsFn = Callable[[DiffAgentSpec, int, int, "PlayerSymmetricNet | None", str], dict[str, Any]]

#: Rules a differentiable league runs -> the rule's settings for an agent in seat ``seat``
#: of ``n`` (with the meta-value model and formulation, which only ``meva`` uses).
RULE_SETTINGS: dict[str, SettingsFn] = {
    "naive": lambda spec, seat, n, model, formulation: {},
    "lola": lambda spec, seat, n, model, formulation: {"alpha": spec.alpha},
    "lola-taylor": lambda spec, seat, n, model, formulation: {"alpha": spec.alpha},
    "hola": lambda spec, seat, n, model, formulation: {"alpha": spec.alpha, "order": spec.order},
    "meva": _meva_settings,
}


def seat_update(spec: DiffAgentSpec, game: DifferentiableGame, joint: torch.Tensor, seat: int,
                model: PlayerSymmetricNet | None = None, formulation: str = "U") -> torch.Tensor:
    """The agent's next parameters ``[1, d]`` from the joint point ``[1, n, d]`` of its match,
    in seat ``seat``: its rule from ``league.updates.UPDATE_RULES`` (through the bridge)."""
    n = joint.shape[-2]
    rule = make_update_rule(spec.rule, **RULE_SETTINGS[spec.rule](spec, seat, n, model, formulation))
    params = [{PARAM_NAME: joint[:, i]} for i in range(n)]
    lrs = [torch.full((joint.shape[0], 1), spec.lr, dtype=joint.dtype) for _ in range(n)]
    return rule.update(ExactGameEvaluator(game), params, None, seat, lrs, 0, False)[PARAM_NAME].detach()


def model_params(model: PlayerSymmetricNet) -> dict[str, torch.Tensor]:
    """The model's weights as a flat parameter set (what travels as kind ``meva-model``)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_model_params(model: PlayerSymmetricNet, params: dict[str, torch.Tensor]) -> PlayerSymmetricNet:
    """Load a parameter set of :func:`model_params` into ``model`` (strict) and return it."""
    model.load_state_dict(params, strict=True)
    return model


class MetaValueLearner:
    """MeVa's model trained on the league's transitions (joint point before and after a
    round, per pairing) with ``league.meva.train.fit_trajectories``: the same lambda-return
    targets, quantile-Huber loss, target network and AdamW as Algorithm 1, on all
    transitions seen so far, with fresh gammas ~ Beta(1/2, 1/2) per transition and step."""

    def __init__(self, game: DifferentiableGame, cfg: DiffLeagueConfig) -> None:
        self.game, self.cfg, self.mcfg = game, cfg, cfg.meva
        self.model = make_meta_value_model(game, self.mcfg)
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.mcfg.lr, weight_decay=self.mcfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed + 7919)
        self.before: list[torch.Tensor] = []  # [P, n, d] per round
        self.after: list[torch.Tensor] = []
        self.version = 1
        """Model version: 1 + the rounds it has been trained on."""

    def observe(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """One round's transitions: joint points ``[P, n, d]`` before and after the step."""
        if before.shape != after.shape:
            raise ValueError(f"transitions need equal shapes, got {tuple(before.shape)} and {tuple(after.shape)}")
        self.before.append(before.detach())
        self.after.append(after.detach())

    def train(self) -> float:
        """``train_steps`` steps on every transition observed; advances the version.
        Returns the mean loss (nan without steps or transitions)."""
        losses = []
        if self.before and self.cfg.train_steps > 0:
            xs = torch.stack([torch.cat(self.before), torch.cat(self.after)])  # [2, B, n, d]
            for _ in range(self.cfg.train_steps):
                gamma = beta_half((xs.shape[1], self.game.n_players), self.generator)
                losses.append(fit_trajectories(self.model, self.target, self.opt, self.game, xs, gamma, self.mcfg))
        self.version += 1
        return sum(losses) / len(losses) if losses else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict(),
                "generator": self.generator.get_state(), "before": self.before, "after": self.after,
                "version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.before, self.after, self.version = list(state["before"]), list(state["after"]), state["version"]


@dataclass
class EmbeddedLeague:
    """What an embedded run produced."""

    x: dict[str, torch.Tensor]
    """Every agent's final parameters ``[1, d]``."""
    history: list[dict[str, torch.Tensor]]
    """Every agent's parameters after each round (agents that sat out keep theirs)."""
    losses: list[float]
    """The meta-value learner's mean loss after each round."""
    model: dict[str, torch.Tensor]
    """The last model version's weights."""


def run_embedded(cfg: DiffLeagueConfig, model_version: Callable[[int], int] = lambda r: r + 1) -> EmbeddedLeague:
    """The league in one process: per round, pair the agents, step each from its match's
    joint point with its own rule, MeVa agents with ``model_version(round)`` (``round + 1``:
    the model trained on every earlier round; another schedule replays a league whose model
    stopped arriving, e.g. ``min(r + 1, k)``), then train the model on the round's transitions."""
    torch.set_num_threads(1)
    game = cfg.make_game()
    ids = [a.id for a in cfg.agents]
    x = {a.id: initial_x(a, game) for a in cfg.agents}
    learner = MetaValueLearner(game, cfg)
    versions = [model_params(learner.model)]  # versions[v - 1]: model version v
    follower = make_meta_value_model(game, cfg.meva)
    history, losses = [], []
    for r in range(cfg.rounds):
        load_model_params(follower, versions[model_version(r) - 1])
        matches = pairings(ids, game.n_players, cfg.seed, r)
        before = torch.stack([torch.cat([x[a] for a in m]) for m in matches])  # [P, n, d]
        new = {}
        for m, joint in zip(matches, before):
            for seat, a in enumerate(m):
                new[a] = seat_update(cfg.spec(a), game, joint.unsqueeze(0), seat, follower, cfg.meva.formulation)
        x.update(new)
        after = torch.stack([torch.cat([x[a] for a in m]) for m in matches])
        learner.observe(before, after)
        losses.append(learner.train())
        versions.append(model_params(learner.model))
        history.append({a: v.clone() for a, v in x.items()})
    return EmbeddedLeague(x=x, history=history, losses=losses, model=versions[-1])
