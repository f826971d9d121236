"""The HalfCheetah teammate population (Meta-MAPG appendix G.3): pretrain a two-seat team of
Gaussian LSTM policies rewarded for running LEFT and save one seat's parameters at every
iteration, so that the checkpoints span increasing expertise in the direction opposite to the
meta-learning task. :func:`league.personas.checkpoint_personas` splits them (early ones for
meta-train/validation, late ones after a gap for meta-test).

The paper does not say how its teammate was trained; here both seats learn together by
policy gradient (the project's own inner-loop objective: DiCE of the seat's own
log-probabilities with the linear feature baseline, :meth:`SampledEvaluator.inner_objective`)
with Adam, one update per iteration from ``episodes`` fresh episodes. The saved ``expertise``
of iteration ``i`` is the team's mean undiscounted left-running return of the episodes
sampled with the parameters of iteration ``i`` (before its update)::

    cfg = load_teammate_config("configs/halfcheetah/teammates.toml")
    pretrain_teammates(cfg)  # writes cfg.directory/iteration_0000.pt ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from league.config import build, read_table
from league.envs import make_env
from league.evaluators import SampledEvaluator
from league.personas import CHECKPOINT_PATTERN, save_checkpoint
from league.policies import make_policy


@dataclass
class TeammateConfig:
    """Pretraining of the teammate population."""

    env: str = "halfcheetah-2x3"
    """Registered environment (``league.envs.ENVIRONMENTS``) the team plays."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"observe": "state", "forward_reward_weight": -1.0})
    """Its factory's keyword arguments: both seats see the full state; the reward is for running left."""
    seat: int = 1
    """The seat whose parameters are saved (1: the front leg; seat 0, the back leg, is the meta-agent's)."""
    policy: str = "lstm_gaussian"
    """Both seats' policy class (``league.policies.POLICIES``)."""
    hidden: int = 64
    """Hidden units of the policies (the paper's 64)."""
    iterations: int = 50
    """Training iterations; one checkpoint per iteration (the paper: 500)."""
    episodes: int = 8
    """Episodes per update."""
    horizon: int = 100
    """Steps per episode."""
    gamma: float = 0.99
    """Discount of the policy-gradient objective."""
    lr: float = 0.01
    """Adam learning rate of both seats."""
    seed: int = 0
    """Seed of the initial parameters and of every sampled episode (the population regenerates
    from it: MuJoCo and single-threaded torch are deterministic)."""
    directory: str = "results/halfcheetah/teammates"
    """Where the checkpoints go (``iteration_NNNN.pt``)."""


def load_teammate_config(path: str | Path | None, overrides: tuple[str, ...] = ()) -> TeammateConfig:
    """A :class:`TeammateConfig` from TOML with ``key=value`` overrides."""
    return build(TeammateConfig, read_table(path, overrides))


def pretrain_teammates(cfg: TeammateConfig, log: Callable[[str], None] | None = None) -> list[float]:
    """Train the team and save seat ``cfg.seat``'s parameters at every iteration; returns the
    expertise (left-running return) of each checkpoint."""
    env = make_env(cfg.env, max_steps=cfg.horizon, **cfg.env_kwargs)
    policies = [make_policy(cfg.policy, env.observation_spaces[k], env.action_spaces[k], hidden=cfg.hidden)
                for k in range(env.n_agents)]
    g = torch.Generator().manual_seed(cfg.seed)
    params = [{k: v.requires_grad_(True) for k, v in p.init_params(g).items()} for p in policies]
    opts = [torch.optim.Adam(list(p.values()), lr=cfg.lr) for p in params]
    evaluator = SampledEvaluator(None, policies, cfg.episodes, cfg.horizon, cfg.gamma, g, env=env)
    expertise = []
    for it in range(cfg.iterations):
        t0 = time.perf_counter()
        data = evaluator.observe(params)
        ret = float(data.rewards[..., cfg.seat].sum(-1).mean())  # shared team reward: any seat's
        expertise.append(ret)
        save_checkpoint(cfg.directory, it, cfg.policy, params[cfg.seat], ret, {"hidden": cfg.hidden})
        for k, opt in enumerate(opts):  # each seat: its own policy gradient on the same episodes
            opt.zero_grad()
            (-evaluator.inner_objective(data, k, live={k}).mean()).backward(inputs=list(params[k].values()))
            opt.step()
        if log is not None:
            log(f"iteration {it}: left-running return {ret:.2f} ({time.perf_counter() - t0:.1f} s)")
    return expertise


def population_exists(cfg: TeammateConfig) -> bool:
    """Whether every checkpoint of ``cfg`` is on disk."""
    return all((Path(cfg.directory) / CHECKPOINT_PATTERN.format(i)).exists() for i in range(cfg.iterations))
