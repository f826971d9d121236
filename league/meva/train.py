"""Meta-Value Learning (MeVa): training the meta-value model on optimisation trajectories.

Algorithm 1 of the paper (Appendix C), batched over ``batch`` trajectories:

- the model ``U(x; theta, gamma) [B, n, M]`` predicts M quantiles of each player's
  normalised meta-value; player gammas are drawn per trajectory from Beta(1/2, 1/2) and fed
  to the model;
- policies follow ``grad V_E`` (formulation ``"V"``, Section 3) or ``grad f + gamma grad U_E``
  (formulation ``"U"``, the correction of Section 4.1), ``E`` = mean over quantiles;
- targets are lambda-returns of the normalised Bellman equation (Appendix A), computed
  backwards per quantile with a target network ``theta_bar`` (EMA with inertia ``rho``;
  ``rho = 0`` means no target network):
  ``Y_T = U(x_T; theta_bar)``,
  ``Y_t = (1 - gamma) r_t + gamma ((1 - lam) U(x_{t+1}; theta_bar) + lam Y_{t+1})``,
  with ``r_t = f(x_t)`` for V (``V(x) = f(x) + gamma V(x')``) and ``r_t = f(x_{t+1})`` for U;
- loss: quantile-Huber regression (Dabney et al., 2018) of ``U(x_t; theta)`` on ``Y_t``;
- exploration: an off-policy trajectory follows the model with sign flips of the head's last
  nonlinear units (each with probability ``flip_prob``, held for the whole trajectory); every
  ``stride`` steps a short on-policy rollout of ``stride`` steps starts from its current
  state and provides the training data.

One reading choice: Algorithm 1 advances the exploration trajectory before starting the first
on-policy rollout, so with ``T = k`` (the logistic game) the initial policies would never be
trained on. Here each on-policy rollout starts from the exploration state *before* it
advances, so segment starts are ``x~_0, x~_k, ..., x~_{T-k}``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from league.games.differentiable import DifferentiableGame
from league.meva.model import NetConfig, PlayerSymmetricNet, sign_flips
from league.meva.rules import simultaneous_gradient

__all__ = [
    "MeVaConfig",
    "quantile_midpoints",
    "quantile_huber_loss",
    "lambda_returns",
    "meta_value_direction",
    "initial_policies",
    "make_meta_value_model",
    "train_meta_value",
    "fit_trajectories",
    "beta_half",
]

FORMULATIONS = ("V", "U")


@dataclass(frozen=True)
class MeVaConfig:
    """Hyper-parameters of MeVa training (defaults: the logistic game, Appendix D)."""

    formulation: str = "V"
    """``"V"``: follow grad V (logistic game); ``"U"``: follow grad f + gamma grad U (IPD)."""
    alpha: float = 1.0
    """Inner learning rate: ``x' = x + alpha * direction``."""
    n_quantiles: int = 16
    """M, quantiles per player."""
    horizon: int = 50
    """T, length of one exploration trajectory."""
    stride: int = 50
    """k, length of each on-policy training rollout (and of each exploration segment)."""
    lam: float = 0.0
    """lambda of the lambda-returns (0: TD(0) targets)."""
    rho: float = 0.0
    """Target-network inertia: ``theta_bar += (1 - rho) (theta - theta_bar)``; 0 = no target net."""
    flip_prob: float = 0.0
    """Probability of flipping each head unit's sign on exploration trajectories (0: none)."""
    lr: float = 1e-3
    """Adam(W) learning rate eta."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: plain Adam)."""
    batch: int = 128
    """Trajectories per outer iteration."""
    iterations: int = 1000
    """Outer loops (each draws a fresh batch of initial policies)."""
    init: str = "uniform"
    """Initial policies: ``"uniform"`` on ``[-init_scale, init_scale]`` or ``"normal"`` with std ``init_scale``."""
    init_scale: float = 8.0
    """Half-width (uniform) or standard deviation (normal) of the initial policies."""
    states_per_rollout: int | None = None
    """Train on this many randomly chosen states of each rollout (None: all ``stride``); a
    CPU-budget knob, the paper trains on all of them."""
    huber_kappa: float = 1.0
    """Huber threshold of the quantile-Huber loss."""
    net: NetConfig = field(default_factory=NetConfig)
    """Model shape."""
    seed: int = 0
    """Seeds model initialisation and every draw."""

    def __post_init__(self) -> None:
        if self.formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS}, got {self.formulation!r}")
        if self.horizon % self.stride:
            raise ValueError(f"horizon {self.horizon} must be a multiple of stride {self.stride}")


def quantile_midpoints(m: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``tau_j = (2j + 1) / (2m)``, the quantile levels the M outputs estimate."""
    return (2 * torch.arange(m, dtype=dtype) + 1) / (2 * m)


def quantile_huber_loss(pred: torch.Tensor, target: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """Quantile-Huber loss of predicted quantiles ``pred [..., M]`` against target samples
    ``target [..., M']``: ``mean_{i, rest} sum_j |tau_j - 1{u < 0}| H_kappa(u) / kappa`` with
    ``u = target_i - pred_j`` (Dabney et al., 2018, eq. 10). ``kappa = 0`` is the plain
    quantile (pinball) loss."""
    u = target.unsqueeze(-2) - pred.unsqueeze(-1)  # [..., M, M']
    tau = quantile_midpoints(pred.shape[-1], pred.dtype).to(pred.device).unsqueeze(-1)
    weight = (tau - (u.detach() < 0).to(u.dtype)).abs()
    if kappa > 0:
        a = u.abs()
        huber = torch.where(a <= kappa, 0.5 * u**2, kappa * (a - 0.5 * kappa)) / kappa
    else:
        huber = u.abs()
    return (weight * huber).sum(-2).mean()


def lambda_returns(rewards: torch.Tensor, next_values: torch.Tensor, gamma: torch.Tensor | float,
                   lam: float) -> torch.Tensor:
    """Normalised lambda-returns, computed backwards over the leading (time) dimension.

    ``rewards[t]`` is the reward paid on step ``t``, ``next_values[t]`` the target network's
    value of the state after step ``t`` (``next_values[-1]`` bootstraps the end):
    ``Y_{k-1} = (1 - g) r_{k-1} + g v_{k-1}``,
    ``Y_t = (1 - g) r_t + g ((1 - lam) v_t + lam Y_{t+1})``.
    """
    gamma = torch.as_tensor(gamma, dtype=rewards.dtype)
    out = torch.empty(torch.broadcast_shapes(rewards.shape, next_values.shape), dtype=rewards.dtype)
    ahead = next_values[-1]
    for t in range(rewards.shape[0] - 1, -1, -1):
        ahead = (1 - gamma) * rewards[t] + gamma * ((1 - lam) * next_values[t] + lam * ahead)
        out[t] = ahead
    return out


def meta_value_direction(model: PlayerSymmetricNet, game: DifferentiableGame, x: torch.Tensor,
                         gamma: torch.Tensor | float, formulation: str = "V",
                         flip: torch.Tensor | None = None, naive_term: bool = True) -> torch.Tensor:
    """The MeVa follower's direction ``[B, n, d]``: ``grad_i V_E,i`` (V) or
    ``grad_i f_i + gamma_i grad_i U_E,i`` (U). With ``naive_term=False`` (U exploration,
    the paper's footnote 2) it is ``grad_i U_E,i`` alone. ``gamma`` broadcasts to ``[B, n]``."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    x = x.detach().requires_grad_(True)
    gamma = torch.as_tensor(gamma, dtype=x.dtype).expand(x.shape[:-1])
    with torch.enable_grad():
        (g,) = torch.autograd.grad(model(x, gamma, flip, own_path_only=True).mean(-1).sum(), x)
    if formulation == "U" and naive_term:
        g = simultaneous_gradient(game, x) + gamma.unsqueeze(-1) * g
    return g.detach()


def initial_policies(cfg: MeVaConfig, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Initial joint policies of ``shape`` per ``cfg.init``."""
    if cfg.init == "uniform":
        return (2 * torch.rand(shape, generator=generator) - 1) * cfg.init_scale
    if cfg.init == "normal":
        return torch.randn(shape, generator=generator) * cfg.init_scale
    raise ValueError(f"init must be 'uniform' or 'normal', got {cfg.init!r}")


def make_meta_value_model(game: DifferentiableGame, cfg: MeVaConfig) -> PlayerSymmetricNet:
    """A fresh meta-value model for ``game`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return PlayerSymmetricNet(game.n_players, game.dim, cfg.n_quantiles, cfg.net)


def _rollout(model: PlayerSymmetricNet, game: DifferentiableGame, x: torch.Tensor, gamma: torch.Tensor,
             cfg: MeVaConfig, steps: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """``[steps + 1, B, n, d]``: ``x`` and the iterates of ``steps`` MeVa steps."""
    xs = [x.detach()]
    for _ in range(steps):
        d = meta_value_direction(model, game, xs[-1], gamma, cfg.formulation, flip, naive_term=flip is None)
        xs.append(xs[-1] + cfg.alpha * d)
    return torch.stack(xs)


def fit_trajectories(model: PlayerSymmetricNet, target: PlayerSymmetricNet, opt: torch.optim.Optimizer,
                     game: DifferentiableGame, xs: torch.Tensor, gamma: torch.Tensor, cfg: MeVaConfig,
                     keep: torch.Tensor | None = None) -> float:
    """One training step of the meta-value model on optimisation trajectories ``xs [k+1, B, n, d]``
    (whoever produced them: MeVa's own rollouts in :func:`train_meta_value`, the league's agents
    in ``league.meva.league``) with per-trajectory gammas ``[B, n]``: lambda-return targets from
    the target network, the quantile-Huber loss on the states ``keep`` (indices into the first
    ``k``; None: all), one optimiser step, then the target network's EMA. Returns the loss."""
    with torch.no_grad():
        f = game.values(xs)  # [k+1, B, n]
        rewards = f[:-1] if cfg.formulation == "V" else f[1:]
        ahead = target(xs[1:], gamma)  # [k, B, n, M]
        y = lambda_returns(rewards.unsqueeze(-1), ahead, gamma.unsqueeze(-1), cfg.lam)
    if keep is None:
        keep = torch.arange(xs.shape[0] - 1)
    loss = quantile_huber_loss(model(xs[keep], gamma), y[keep], cfg.huber_kappa)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for pt, p in zip(target.parameters(), model.parameters()):
            pt.add_((1.0 - cfg.rho) * (p - pt))
    return loss.item()


def beta_half(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Draws of Beta(1/2, 1/2), the meta-discounts of Algorithm 1, from a seeded generator:
    the arcsine law, ``sin^2(pi U / 2)`` with ``U ~ U[0, 1]`` (``torch.distributions.Beta``
    samples from the global random stream only)."""
    return torch.sin(0.5 * torch.pi * torch.rand(shape, generator=generator)) ** 2


def train_meta_value(game: DifferentiableGame, cfg: MeVaConfig,
                     on_iteration: Callable[[int, dict], None] | None = None) -> tuple[PlayerSymmetricNet, list[dict]]:
    """Train a meta-value model on ``game`` (Algorithm 1). Returns the model and one record
    per outer iteration (``loss``, wall ``seconds`` since the start)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = make_meta_value_model(game, cfg)
    target = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    beta = torch.distributions.Beta(torch.tensor(0.5), torch.tensor(0.5))
    shape = (cfg.batch, game.n_players, game.dim)
    history: list[dict] = []
    start = time.perf_counter()
    for it in range(cfg.iterations):
        explore_x = initial_policies(cfg, shape, gen)
        explore_gamma = beta.sample((cfg.batch, game.n_players))
        flip = sign_flips(cfg.batch, cfg.net.hidden, cfg.flip_prob, gen) if cfg.flip_prob > 0 else None
        losses = []
        for _ in range(0, cfg.horizon, cfg.stride):
            gamma = beta.sample((cfg.batch, game.n_players))
            xs = _rollout(model, game, explore_x, gamma, cfg, cfg.stride)  # [k+1, B, n, d]
            keep = None
            if cfg.states_per_rollout is not None:
                keep = torch.randperm(cfg.stride, generator=gen)[: cfg.states_per_rollout]
            losses.append(fit_trajectories(model, target, opt, game, xs, gamma, cfg, keep))
            if flip is None:
                explore_x = xs[-1]  # exploration off: the exploration trajectory is on-policy
            else:
                explore_x = _rollout(model, game, explore_x, explore_gamma, cfg, cfg.stride, flip)[-1]
        rec = {"iteration": it, "loss": sum(losses) / len(losses), "seconds": time.perf_counter() - start}
        history.append(rec)
        if on_iteration is not None:
            on_iteration(it, rec)
    return model, history
