"""Policies and initial parameters of an agent process, from its spec or a peer's
description, sized from a seat's gymnasium spaces (no sockets). Policy classes come from the
``league.policies.POLICIES`` registry; the league's environment from
``services.league_config.league_env``."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

import gymnasium
import torch

from league.games import IteratedMatrixGame, make_game
from league.personas import make_personas
from league.policies import POLICIES, Tabular
from league.policies import make_policy as build_policy
from league.policies.base import Params, Policy
from services.league_config import AgentSpec, policy_class, policy_config
from services.limits import MAX_HIDDEN

POLICY_CONFIG_BOUNDS = {"hidden": (1, MAX_HIDDEN), "layers": (1, 16)}
"""Integer bounds of a described policy's hyperparameters (a peer's description is untrusted:
it must not make the referee allocate a huge network)."""


def _check_config(name: str, config: dict[str, Any]) -> None:
    """A described policy config: only arguments the class takes, plain JSON scalars, sizes bounded."""
    takes = inspect.signature(POLICIES[name]).parameters
    for key, value in config.items():
        if key not in takes or key in ("observation_space", "action_space", "dtype", "obs", "act"):
            raise ValueError(f"policy class {name!r} takes no argument {key!r}")
        if not isinstance(value, (int, float, str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"policy argument {key!r} is {str(value)[:40]!r}: expected a finite number or a string")
        if key in POLICY_CONFIG_BOUNDS:
            lo, hi = POLICY_CONFIG_BOUNDS[key]
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"policy argument {key} = {str(value)[:40]} is not an integer in {lo}..{hi}")


def policy_from_description(name: str, config_json: str, observation_space: gymnasium.Space,
                            action_space: gymnasium.Space, dtype: torch.dtype = torch.float32) -> Policy:
    """The policy object a referee needs to run an agent: class ``name`` from the registry with
    the described config, for a seat with these spaces. ValueError (one line) naming what does
    not fit: an unknown class, an argument it does not take, spaces it cannot read."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy class {name!r}; known: {', '.join(sorted(POLICIES))}")
    config = json.loads(config_json or "{}")
    if not isinstance(config, dict):
        raise ValueError("the policy config is not a JSON object")
    _check_config(name, config)
    return build_policy(name, observation_space, action_space, dtype, **config)


def game_for(env: str, n_players: int = 2) -> IteratedMatrixGame:
    """An iterated matrix game by name (``league.games.GAMES``), for callers that need the game
    itself (exact values); a league's environment is ``services.league_config.league_env``."""
    return make_game(env, n_players=n_players)


def seat_spaces(env: Any, seat: int = 0) -> tuple[gymnasium.Space, gymnasium.Space]:
    """Seat ``seat``'s observation and action spaces of an Environment (or of an iterated
    matrix game, whose every seat reads the ``Discrete`` joint state and picks one of its
    ``Discrete`` actions, as its ``MatrixGameEnv`` says)."""
    if isinstance(env, IteratedMatrixGame):
        return gymnasium.spaces.Discrete(env.n_states), gymnasium.spaces.Discrete(env.n_actions)
    return env.observation_spaces[seat], env.action_spaces[seat]


def make_policy(spec: AgentSpec, env: Any, seat: int = 0) -> Policy:
    """An agent's own policy, sized from seat ``seat`` of ``env`` (see ``seat_spaces``)."""
    return build_policy(policy_class(spec), *seat_spaces(env, seat), **policy_config(spec))


def initial_state(spec: AgentSpec, policy: Policy, game: Any, population_seed: int,
                  chain_length: int, env: str) -> tuple[Params, torch.Tensor]:
    """Initial policy parameters (one row) and per-step learning rates ``[1, L]``. ``game`` is
    the league's environment (or game): only its ``n_agents`` is read, to size the persona
    population that a ``persona:`` init indexes for the environment named ``env``. A
    ``checkpoint:PATH`` holds ``{"policy": ..., "lr": ...}`` (optionally under ``"best"``, as
    ``league train`` writes it); without ``lr`` the spec's rates are used."""
    lr = torch.tensor([spec.lr[min(i, len(spec.lr) - 1)] for i in range(chain_length)]).reshape(1, -1)
    kind, _, arg = spec.init.partition(":")
    if kind == "uniform":
        return policy.init_params(torch.Generator().manual_seed(0)), lr
    if kind == "random":
        return policy.init_params(torch.Generator().manual_seed(int(arg or 0))), lr
    if kind == "persona":
        if not isinstance(policy, Tabular):
            raise ValueError(f"agent {spec.id}: persona init needs a tabular policy")
        split, _, index = arg.partition(":")
        personas = make_personas(env, population_seed, game.n_agents)  # sized from the game
        table = getattr(personas, split, None)
        if table is None or not index.isdigit() or int(index) >= table.shape[0]:
            raise ValueError(f"agent {spec.id}: bad persona init {spec.init!r} (split train/val/test, index < size)")
        return Tabular.from_probs(table[int(index)].unsqueeze(0)), lr
    if kind == "checkpoint":
        state = torch.load(arg, weights_only=False)
        best = state["best"] if "best" in state else state
        params = {k: v.detach().clone() for k, v in best["policy"].items()}
        expected = policy.init_params(torch.Generator().manual_seed(0))
        for name, value in expected.items():
            if name not in params or params[name].shape != value.shape:
                got = tuple(params[name].shape) if name in params else "missing"
                raise ValueError(f"agent {spec.id}: checkpoint {arg} does not fit its policy ({spec.policy}, "
                                 f"{policy_config(spec)}): tensor {name!r} is {got}, expected {tuple(value.shape)}")
        if "lr" not in best:  # a bare policy checkpoint: the spec's learning rates
            return params, lr
        ckpt_lr = best["lr"].detach().clone().reshape(1, -1)
        if ckpt_lr.shape[-1] < chain_length:
            raise ValueError(f"agent {spec.id}: checkpoint has {ckpt_lr.shape[-1]} learning rates, "
                             f"the league's chains need {chain_length}")
        return params, ckpt_lr[:, :chain_length].contiguous()
    raise ValueError(f"agent {spec.id}: unknown init {spec.init!r}")
