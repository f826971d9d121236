"""Meta-MAPG's meta-agent on a differentiable game: a meta-learned initial policy and inner
learning rate, trained on the exact meta-value of a chain of naive learning steps.

The project's Meta-MAPG (``league.meta``) meta-learns an initial policy ``phi_0`` and inner
learning rates so that the meta-agent's return along a chain of ``L`` REINFORCE updates
against learning peers is high, and its meta-gradient has three terms: the current policy,
the own-learning term and the peer-learning term (the peers' updates depend on the
meta-agent's policy). On a game whose values are exact and differentiable, the chain is
deterministic and the same objective has an exact gradient: differentiate

    J(x_0, lr) = E_peers mean_{l=0..L} f_0(x_l),   x_{l+1} = x_l + (lr g_0(x_l), peer_lr g_1(x_l))

with ``g_i`` the exact naive gradients, through both players' steps. With
``peer_learning=False`` the peer's step is cut from the meta-agent's parameters (Meta-PG's
gradient, which drops the peer-learning term). The meta-agent then plays by naive ascent
with its learned ``lr`` from its learned start: the tabular, exact-value counterpart of the
LSTM meta-agent, so that it can enter the exact IPD tournament.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from league.games.differentiable import DifferentiableGame
from league.meva.rules import own_gradients

__all__ = ["MetaStartConfig", "chain_meta_value", "train_meta_start"]


@dataclass(frozen=True)
class MetaStartConfig:
    """Meta-training of the initial policy and learning rate (seat 0 is the meta-agent)."""

    length: int = 7
    """L, naive steps of the chain (the project's IPD Meta-MAPG config: 7)."""
    peer_lr: float = 25.0
    """The peers' naive step (25 on the normalised IPD value = lr 1 on the unnormalised)."""
    init_lr: float = 2.5
    """Initial inner learning rate of the meta-agent (the project's 0.1 on REINFORCE of the
    unnormalised return ~ 2.5 on the normalised value)."""
    peers: int = 64
    """Peers drawn per meta-iteration (the meta-batch)."""
    peer_std: float = 1.0
    """Peers' initial logits ~ N(0, peer_std^2) (the tournament's starts)."""
    iterations: int = 300
    """Meta-iterations (Adam steps)."""
    outer_lr: float = 0.05
    """Adam learning rate on the initial logits and the log learning rate."""
    peer_learning: bool = True
    """Keep the peer-learning term (Meta-MAPG); False cuts it (Meta-PG)."""
    seed: int = 0
    """Seeds the peers."""


def chain_meta_value(game: DifferentiableGame, start: torch.Tensor, lr: torch.Tensor, peers: torch.Tensor,
                     length: int, peer_lr: float, peer_learning: bool = True) -> torch.Tensor:
    """``J``: the meta-agent's value averaged over chain steps ``0..length`` and over peers,
    differentiable in ``start [d]`` and ``lr`` (a scalar). ``peers [B, d]`` start the peers."""
    x = torch.stack([start.expand_as(peers), peers], dim=-2)  # [B, 2, d]
    if not x.requires_grad:  # plain evaluation (e.g. finite differences): gradients still drive the chain
        x.requires_grad_(True)
    values = [game.values(x)[..., 0]]
    for _ in range(length):
        with torch.enable_grad():
            g = own_gradients(game.values(x), x, create_graph=True)  # both players' naive gradients
            g_meta, g_peer = g[..., 0, :], g[..., 1, :]
            if not peer_learning:  # the peer's whole trajectory is cut from the meta-parameters
                seen = x.detach().requires_grad_(True)
                g_peer = own_gradients(game.values(seen), seen)[..., 1, :]
        x = torch.stack([x[..., 0, :] + lr * g_meta, x[..., 1, :] + peer_lr * g_peer], dim=-2)
        values.append(game.values(x)[..., 0])
    return torch.stack(values).mean()


def train_meta_start(game: DifferentiableGame, cfg: MetaStartConfig,
                     on_iteration: Callable[[int, dict], None] | None = None) -> tuple[torch.Tensor, float, list[dict]]:
    """Adam ascent of ``J`` on the initial logits (from zeros) and ``log lr``. Returns the
    learned start ``[d]``, the learned lr and one record per iteration (``meta_value``)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    start = torch.zeros(game.dim, requires_grad=True)
    log_lr = torch.tensor(float(cfg.init_lr)).log().requires_grad_(True)
    opt = torch.optim.Adam([start, log_lr], lr=cfg.outer_lr)
    history = []
    for it in range(cfg.iterations):
        peers = torch.randn(cfg.peers, game.dim, generator=gen) * cfg.peer_std
        j = chain_meta_value(game, start, log_lr.exp(), peers, cfg.length, cfg.peer_lr, cfg.peer_learning)
        opt.zero_grad(set_to_none=True)
        (-j).backward()
        opt.step()
        history.append({"iteration": it, "meta_value": j.item(), "lr": log_lr.exp().item()})
        if on_iteration is not None:
            on_iteration(it, history[-1])
    return start.detach(), float(log_lr.detach().exp()), history
