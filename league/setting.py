"""Everything a config's experiment is played in: the game, the meta-agent's networks, the
peers' tabular policy and the persona population, built once from the config."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.config import ExperimentConfig
from league.evaluators import SampledEvaluator
from league.games import IteratedMatrixGame, make_game
from league.personas import PersonaSplit, ipd_personas, rps_personas
from league.policies import LSTMCategorical, LSTMValue, Tabular

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Setting:
    """The game, policy classes and persona population of one experiment."""

    cfg: ExperimentConfig
    game: IteratedMatrixGame
    meta_policy: LSTMCategorical
    value_net: LSTMValue
    peer_policy: Tabular
    personas: PersonaSplit
    dtype: torch.dtype

    @property
    def n_peers(self) -> int:
        return self.game.n_agents - 1

    def evaluator(self, generator: torch.Generator) -> SampledEvaluator:
        c = self.cfg.chain
        policies = [self.meta_policy] + [self.peer_policy] * self.n_peers
        return SampledEvaluator(self.game, policies, c.trajectories, c.horizon, c.gamma, generator, self.dtype)

    def peer_params(self, probs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Persona probabilities ``[B, S, A]`` (or ``[B, n_peers, S, A]``) -> per-seat params."""
        if probs.dim() == 3:
            probs = probs.unsqueeze(1).expand(-1, self.n_peers, -1, -1)
        return [Tabular.from_probs(probs[:, m].to(self.dtype)) for m in range(self.n_peers)]

    def peer_lrs(self, n_chains: int) -> list[torch.Tensor]:
        lr = torch.full((n_chains, self.cfg.chain.length), self.cfg.agent.peer_lr, dtype=self.dtype)
        return [lr] * self.n_peers


def build_setting(cfg: ExperimentConfig) -> Setting:
    dtype = DTYPES[cfg.dtype]
    game = make_game(cfg.game.name, dtype=dtype) if cfg.game.name == "ipd" else \
        make_game(cfg.game.name, n_players=cfg.game.n_players, dtype=dtype)
    if cfg.game.name == "ipd":
        personas = ipd_personas(cfg.population.seed, out_of_distribution=cfg.population.out_of_distribution)
    else:
        personas = rps_personas(cfg.population.seed)
    h = cfg.agent.hidden
    return Setting(
        cfg=cfg, game=game,
        meta_policy=LSTMCategorical(obs_dim=game.obs_dim, out_dim=game.n_actions, hidden=h, dtype=dtype),
        value_net=LSTMValue(obs_dim=game.obs_dim, hidden=h, dtype=dtype),
        peer_policy=Tabular(game.n_states, game.n_actions, dtype=dtype),
        personas=personas, dtype=dtype,
    )
