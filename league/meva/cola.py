"""COLA (Willi et al., 2022) as in Appendix B of the MeVa paper: a learned update model.

The model ``g(x; theta, alpha) [B, n, d]`` is trained so that
``g_i(x) = grad_i f_i(x + alpha * S_-i^T S_-i g(x))`` (the consistency equation), by
minimising the squared difference of both sides (both depend on ``theta``). As in the MeVa
paper's own implementation it shares the meta-value model's structure, with the look-ahead
step ``alpha`` fed in place of gamma, and one model serves every ``alpha ~ U[0, alpha_max]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from league.games.differentiable import DifferentiableGame
from league.meva.model import NetConfig, PlayerSymmetricNet
from league.meva.rules import lookahead_gradient

__all__ = ["ColaConfig", "cola_direction", "consistency_loss", "train_cola"]


@dataclass(frozen=True)
class ColaConfig:
    """Hyper-parameters of COLA training."""

    alpha_max: float = 10.0
    """Training look-ahead steps are drawn from ``U[0, alpha_max]``."""
    init_scale: float = 12.0
    """Training points are drawn uniformly from ``[-init_scale, init_scale]^(n d)``."""
    batch: int = 128
    """Points per update."""
    iterations: int = 2000
    """Adam updates."""
    lr: float = 1e-3
    """Adam learning rate."""
    net: NetConfig = field(default_factory=NetConfig)
    """Model shape."""
    seed: int = 0
    """Seeds model initialisation and every draw."""


def cola_direction(model: PlayerSymmetricNet, x: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """The learned COLA update ``g(x; theta, alpha)`` ``[B, n, d]``."""
    alpha = torch.as_tensor(alpha, dtype=x.dtype).expand(x.shape[:-2]).unsqueeze(-1).expand(x.shape[:-1])
    return model(x, alpha)


def consistency_loss(model: PlayerSymmetricNet, game: DifferentiableGame, x: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """``mean ||g(x) - grad_i f_i(x + alpha S_-i^T S_-i g(x))||^2`` with ``alpha [B]``."""
    x = x.detach().requires_grad_(True)
    g = cola_direction(model, x, alpha)
    target = lookahead_gradient(game, x, g, alpha, create_graph=True)
    return ((g - target) ** 2).sum((-2, -1)).mean()


def train_cola(game: DifferentiableGame, cfg: ColaConfig,
               on_iteration: Callable[[int, dict], None] | None = None) -> tuple[PlayerSymmetricNet, list[dict]]:
    """Train a COLA update model on ``game``; returns it and one record per update."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = PlayerSymmetricNet(game.n_players, game.dim, game.dim, cfg.net)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    shape = (cfg.batch, game.n_players, game.dim)
    history: list[dict] = []
    start = time.perf_counter()
    for it in range(cfg.iterations):
        x = (2 * torch.rand(shape, generator=gen) - 1) * cfg.init_scale
        alpha = torch.rand(cfg.batch, generator=gen) * cfg.alpha_max
        loss = consistency_loss(model, game, x, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec = {"iteration": it, "loss": loss.item(), "seconds": time.perf_counter() - start}
        history.append(rec)
        if on_iteration is not None:
            on_iteration(it, rec)
    return model, history
