"""Everything a config's experiment is played in: the environment (a matrix game or any
registered environment), the meta-agent's networks, the peers' policy class and the persona
population as parameters of that class, built once from the config.

Where the population comes from is a *source* (:data:`PERSONA_SOURCES`): the matrix games'
generated tabular personas (``tabular``), or the saved checkpoints of a pretrained peer
(``checkpoints``, the HalfCheetah teammates of :mod:`league.teammates`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from league.config import ExperimentConfig
from league.devices import resolve_device, to_device
from league.evaluators import SampledEvaluator
from league.envs import Environment, flat_dim, make_env
from league.games import GAMES, IteratedMatrixGame
from league.personas import PersonaSplit, Pool, checkpoint_personas, make_personas, map_pools, pool_size, take
from league.policies import LSTMValue, Policy, Tabular, make_policy
from league.policies.base import Params

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Offset of the random stream that draws the extra peers of validation/test chains.
PEER_GROUP_STREAM = 3_000_017


@dataclass
class Setting:
    """The environment, policy classes and persona population of one experiment.

    ``personas`` is the population as its source made it (tabular: probabilities ``[N, S, A]``);
    ``population`` the same personas as parameters of ``peer_policy`` (``{name: [N, ...]}``)
    on ``device``, which is what chains start the peers from."""

    cfg: ExperimentConfig
    env: Environment
    game: IteratedMatrixGame | None
    meta_policy: Policy
    value_net: LSTMValue
    peer_policy: Policy
    personas: PersonaSplit
    population: PersonaSplit
    dtype: torch.dtype
    device: torch.device = torch.device("cpu")
    """Where the game's tensors, the population and every learning rate live (``cfg.device``)."""

    @property
    def n_peers(self) -> int:
        return self.env.n_agents - 1

    def evaluator(self, generator: torch.Generator) -> SampledEvaluator:
        """Sampled objectives of the chains: a matrix game's own sampler, or the environment's
        episodes (``env.max_steps == chain.horizon``)."""
        c = self.cfg.chain
        policies = [self.meta_policy] + [self.peer_policy] * self.n_peers
        return SampledEvaluator(self.game, policies, c.trajectories, c.horizon, c.gamma, generator, self.dtype,
                                env=None if self.game is not None else self.env)

    def sample_peers(self, pool: Pool, count: int, generator: torch.Generator) -> Pool:
        """``count`` chains of peers (``[count, n_peers, ...]`` of every tensor of the pool): every
        peer seat of every chain drawn uniformly from the whole ``pool`` (``[N, ...]``),
        independently of the other seats (Meta-MAPG's n-player RPS). With one peer it draws
        exactly what ``randint(N, (count,))`` drew before seats were counted, so 2-player runs
        are unchanged."""
        idx = torch.randint(pool_size(pool), (count, self.n_peers), generator=generator, device=generator.device)
        return take(pool, idx)

    def peer_group_indices(self, n: int) -> torch.Tensor:
        """Which persona of an ``n``-persona pool sits at each peer seat of each evaluation
        chain, ``[n, n_peers]`` long: persona ``i`` at seat 1 of chain ``i`` (so results group
        by its type), any further seats drawn from the pool with a stream fixed by the
        population seed, so every method and training seed (and a league seating persona
        processes the same way) meets the same peer groups. Drawn on the CPU (the same groups
        on every device), returned on :attr:`device`."""
        first = torch.arange(n, device="cpu").unsqueeze(1)
        if self.n_peers == 1:
            return first.to(self.device)
        g = torch.Generator().manual_seed(PEER_GROUP_STREAM + self.cfg.population.seed)
        extra = torch.randint(n, (n, self.n_peers - 1), generator=g, device="cpu")
        return torch.cat([first, extra], dim=1).to(self.device)

    def peer_groups(self, pool: Pool) -> Pool:
        """Evaluation chains ``[N, n_peers, ...]``: ``pool`` seated by :meth:`peer_group_indices`."""
        return take(pool, self.peer_group_indices(pool_size(pool)))

    def peer_params(self, peers: Pool) -> list[Params]:
        """Per-seat parameters of chains of peers: parameters ``{name: [B, n_peers, ...]}``, or
        tabular persona probabilities ``[B, n_peers, S, A]`` (``[B, S, A]`` gives every peer
        seat of a chain the same persona)."""
        if not isinstance(peers, dict):
            if peers.dim() == 3:
                peers = peers.unsqueeze(1).expand(-1, self.n_peers, -1, -1)
            return [Tabular.from_probs(peers[:, m].to(self.dtype)) for m in range(self.n_peers)]
        return [{name: value[:, m] for name, value in peers.items()} for m in range(self.n_peers)]

    def meta_lrs(self) -> torch.Tensor:
        """The meta-agent's initial inner learning rates ``[1, L]`` (one per chain step; learned
        by the methods that meta-learn them)."""
        return torch.full((1, self.cfg.chain.length), self.cfg.agent.inner_lr, dtype=self.dtype, device=self.device)

    def peer_lrs(self, n_chains: int) -> list[torch.Tensor]:
        """Every peer seat's learning rates ``[n_chains, L]``: the personas' fixed ``peer_lr``.
        Together with :meth:`meta_lrs` the one place a chain's learning rates are decided."""
        lr = torch.full((n_chains, self.cfg.chain.length), self.cfg.agent.peer_lr, dtype=self.dtype,
                        device=self.device)
        return [lr] * self.n_peers


def _tabular_source(cfg: ExperimentConfig, peer_policy: Policy, dtype: torch.dtype) -> PersonaSplit:
    """The matrix game's generated personas (probability tables, ``league.personas``)."""
    if cfg.game.name not in GAMES:
        raise ValueError(f"population.source 'tabular' is the matrix games' personas; {cfg.game.name!r} has none "
                         "(use population.source = 'checkpoints')")
    return make_personas(cfg.game.name, cfg.population.seed, cfg.game.n_players, cfg.population.out_of_distribution)


def _checkpoint_source(cfg: ExperimentConfig, peer_policy: Policy, dtype: torch.dtype) -> PersonaSplit:
    """Saved parameters of a pretrained peer (``population.directory``), split with a gap."""
    p = cfg.population
    if not p.directory:
        raise ValueError("population.source 'checkpoints' needs population.directory")
    template = peer_policy.init_params(torch.Generator().manual_seed(0), 1)
    return checkpoint_personas(p.directory, p.peer_policy, template, p.train_val, p.test, p.n_val, p.seed, dtype)


#: Persona sources by name: ``(cfg, peer_policy, dtype) -> PersonaSplit`` as the source makes it.
PERSONA_SOURCES: dict[str, Callable[[ExperimentConfig, Policy, torch.dtype], PersonaSplit]] = {
    "tabular": _tabular_source,
    "checkpoints": _checkpoint_source,
}


def _as_params(pool: Pool, dtype: torch.dtype) -> Params:
    """A pool as peer parameters: tabular probabilities become ``Tabular`` logits (the numbers
    :meth:`Setting.peer_params` made from them before pools were parameters)."""
    if isinstance(pool, dict):
        return pool
    return Tabular.from_probs(pool.to(dtype))


def make_setting_env(cfg: ExperimentConfig, dtype: torch.dtype, device: torch.device | str = "cpu") -> Environment:
    """The config's environment: a matrix game with ``n_players`` seats and ``horizon`` rounds
    (its payoff tensors on ``device``), or any other registered environment with
    ``max_steps = chain.horizon`` and ``env_kwargs`` (its observations come as they come,
    numpy's on the CPU; :func:`league.rollout.play` moves them to the policies' device)."""
    g = cfg.game
    if g.name in GAMES:
        return make_env(g.name, n_players=g.n_players, horizon=cfg.chain.horizon, dtype=dtype, device=device)
    env = make_env(g.name, max_steps=cfg.chain.horizon, dtype=dtype, **g.env_kwargs)
    if env.n_agents != g.n_players:
        raise ValueError(f"environment {g.name!r} has {env.n_agents} seats, but game.n_players is {g.n_players}")
    return env


def build_setting(cfg: ExperimentConfig) -> Setting:
    """The config's setting on ``cfg.device`` (checked: a missing CUDA is one clear ValueError).
    The personas are drawn on the CPU from their fixed stream, so every device meets the same
    ones, and moved to the device once."""
    dtype = DTYPES[cfg.dtype]
    device = resolve_device(cfg.device, "device")
    env = make_setting_env(cfg, dtype, device)
    h = cfg.agent.hidden
    # seat 0 is the meta-agent, seats 1.. the personas; the registry sizes each from its seat's spaces
    meta_policy = make_policy(cfg.agent.policy, env.observation_spaces[0], env.action_spaces[0], dtype, hidden=h)
    peer_policy = make_policy(cfg.population.peer_policy, env.observation_spaces[1], env.action_spaces[1], dtype,
                              **cfg.population.peer_kwargs)
    with torch.device("cpu"):  # the personas' own (CPU) random stream, whatever the default device
        personas = PERSONA_SOURCES[cfg.population.source](cfg, peer_policy, dtype)
        population = map_pools(personas, lambda pool: _as_params(pool, dtype))
    return Setting(
        cfg=cfg, env=env, game=getattr(env, "game", None), meta_policy=meta_policy,
        value_net=LSTMValue(obs_dim=flat_dim(env.observation_spaces[0]), hidden=h, dtype=dtype),
        peer_policy=peer_policy, personas=personas,
        population=map_pools(population, lambda pool: to_device(pool, device)), dtype=dtype, device=device,
    )
