"""Policies and initial parameters of an agent process, from its spec (no sockets)."""

from __future__ import annotations

import json

import torch

from league.games import IteratedMatrixGame, make_game
from league.personas import make_personas
from league.policies import LSTMCategorical, Tabular
from league.policies.base import Params, Policy
from services.league_config import AgentSpec

POLICY_CLASSES = {"tabular": "tabular", "lstm": "lstm_categorical"}


def game_for(env: str, n_players: int = 2) -> IteratedMatrixGame:
    """The game of a league: ``env`` (a name in ``league.games.GAMES``) for ``n_players`` seats."""
    return make_game(env, n_players=n_players)


def policy_from_description(policy_class: str, config_json: str, game: IteratedMatrixGame) -> Policy:
    """The policy object a referee needs to run an agent, from the agent's description."""
    config = json.loads(config_json or "{}")
    if policy_class == "tabular":
        return Tabular(game.n_states, game.n_actions)
    if policy_class == "lstm_categorical":
        return LSTMCategorical(obs_dim=game.obs_dim, out_dim=game.n_actions, hidden=int(config.get("hidden", 64)))
    raise ValueError(f"unknown policy class {policy_class!r}; known: {sorted(POLICY_CLASSES.values())}")


def make_policy(spec: AgentSpec, game: IteratedMatrixGame) -> Policy:
    return policy_from_description(POLICY_CLASSES[spec.policy], json.dumps({"hidden": spec.hidden}), game)


def initial_state(spec: AgentSpec, policy: Policy, game: IteratedMatrixGame, population_seed: int,
                  chain_length: int, env: str) -> tuple[Params, torch.Tensor]:
    """Initial policy parameters (one row) and per-step learning rates ``[1, L]``; ``env`` is
    the game's registry name (a ``persona:`` init indexes that game's population, sized for
    ``game.n_agents`` seats)."""
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
                                 f"hidden {spec.hidden}): tensor {name!r} is {got}, expected {tuple(value.shape)}")
        ckpt_lr = best["lr"].detach().clone().reshape(1, -1)
        if ckpt_lr.shape[-1] < chain_length:
            raise ValueError(f"agent {spec.id}: checkpoint has {ckpt_lr.shape[-1]} learning rates, "
                             f"the league's chains need {chain_length}")
        return params, ckpt_lr[:, :chain_length].contiguous()
    raise ValueError(f"agent {spec.id}: unknown init {spec.init!r}")
