"""Everything a config's experiment is played in: the game, the meta-agent's networks, the
peers' tabular policy and the persona population, built once from the config."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from league.config import ExperimentConfig
from league.evaluators import SampledEvaluator
from league.envs import make_env
from league.games import IteratedMatrixGame
from league.personas import PersonaSplit, make_personas
from league.policies import LSTMCategorical, LSTMValue, Tabular, make_policy

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Offset of the random stream that draws the extra peers of validation/test chains.
PEER_GROUP_STREAM = 3_000_017


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

    def sample_peers(self, pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` chains of peers ``[count, n_peers, S, A]``: every peer seat of every chain
        drawn uniformly from the whole ``pool [N, S, A]``, independently of the other seats
        (Meta-MAPG's n-player RPS). With one peer it draws exactly what ``randint(N, (count,))``
        drew before seats were counted, so 2-player runs are unchanged."""
        idx = torch.randint(pool.shape[0], (count, self.n_peers), generator=generator)
        return pool[idx]

    def peer_group_indices(self, n: int) -> torch.Tensor:
        """Which persona of an ``n``-persona pool sits at each peer seat of each evaluation
        chain, ``[n, n_peers]`` long: persona ``i`` at seat 1 of chain ``i`` (so results group
        by its type), any further seats drawn from the pool with a stream fixed by the
        population seed, so every method and training seed (and a league seating persona
        processes the same way) meets the same peer groups."""
        first = torch.arange(n).unsqueeze(1)
        if self.n_peers == 1:
            return first
        g = torch.Generator().manual_seed(PEER_GROUP_STREAM + self.cfg.population.seed)
        return torch.cat([first, torch.randint(n, (n, self.n_peers - 1), generator=g)], dim=1)

    def peer_groups(self, pool: torch.Tensor) -> torch.Tensor:
        """Evaluation chains ``[N, n_peers, S, A]``: ``pool`` seated by :meth:`peer_group_indices`."""
        return pool[self.peer_group_indices(pool.shape[0])]

    def peer_params(self, probs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Persona probabilities ``[B, n_peers, S, A]`` -> per-seat params; ``[B, S, A]`` gives
        every peer seat of a chain the same persona."""
        if probs.dim() == 3:
            probs = probs.unsqueeze(1).expand(-1, self.n_peers, -1, -1)
        return [Tabular.from_probs(probs[:, m].to(self.dtype)) for m in range(self.n_peers)]

    def meta_lrs(self) -> torch.Tensor:
        """The meta-agent's initial inner learning rates ``[1, L]`` (one per chain step; learned
        by the methods that meta-learn them)."""
        return torch.full((1, self.cfg.chain.length), self.cfg.agent.inner_lr, dtype=self.dtype)

    def peer_lrs(self, n_chains: int) -> list[torch.Tensor]:
        """Every peer seat's learning rates ``[n_chains, L]``: the personas' fixed ``peer_lr``.
        Together with :meth:`meta_lrs` the one place a chain's learning rates are decided."""
        lr = torch.full((n_chains, self.cfg.chain.length), self.cfg.agent.peer_lr, dtype=self.dtype)
        return [lr] * self.n_peers


def build_setting(cfg: ExperimentConfig) -> Setting:
    dtype = DTYPES[cfg.dtype]
    env = make_env(cfg.game.name, n_players=cfg.game.n_players, horizon=cfg.chain.horizon, dtype=dtype)
    game = env.game
    personas = make_personas(cfg.game.name, cfg.population.seed, game.n_agents, cfg.population.out_of_distribution)
    h = cfg.agent.hidden
    # seat 0 is the meta-agent, seats 1.. the personas; the registry sizes each from its seat's spaces
    meta_policy = make_policy("lstm_categorical", env.observation_spaces[0], env.action_spaces[0], dtype, hidden=h)
    peer_policy = make_policy("tabular", env.observation_spaces[1], env.action_spaces[1], dtype)
    return Setting(
        cfg=cfg, game=game, meta_policy=meta_policy,  # type: ignore[arg-type]
        value_net=LSTMValue(obs_dim=game.obs_dim, hidden=h, dtype=dtype),
        peer_policy=peer_policy,  # type: ignore[arg-type]
        personas=personas, dtype=dtype,
    )
