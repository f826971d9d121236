"""Update rules on differentiable games, batched over a leading dimension.

Every rule maps a game and joint policies ``x [B, n, d]`` to an update direction
``[B, n, d]`` (detached; player ``i``'s row is the direction player ``i`` moves in), and a
learner steps ``x + lr * direction``. Whole grids, tournaments and training batches are the
batch dimension ``B``. The rules follow Appendix B of the Meta-Value Learning paper:

- ``naive``: the simultaneous gradient ``grad_i f_i``.
- ``frozen``: no learning (the fixed opponent of a best-response computation).
- ``lola``: LOLA sans Taylor approximation (the look-ahead form): player ``i`` ascends
  ``f_i(x + alpha * (others' naive step))``, differentiating through the others' step.
- ``lola-taylor``: the original LOLA's first-order Taylor form: own gradient plus the
  correction ``alpha * sum_{j != i} (d/dx_i grad_j f_j)^T grad_j f_i`` with ``grad_j f_i``
  held constant (Foerster et al., 2018a, eq. 4.2).
- ``hola``: HOLA-n, the LOLA look-ahead applied recursively; HOLA-0 is naive, HOLA-1 LOLA.
- ``cola``: follows a learned update model trained on COLA's consistency loss
  (``league.meva.cola``).
- ``meva``: follows the gradient of a learned meta-value (``league.meva.train``), in the
  V formulation (``grad V``) or the U (correction) formulation (``grad f + gamma grad U``).

``DIFFERENTIABLE_RULES`` maps a name to a factory of keyword settings; each factory returns
a callable ``rule(game, x) -> direction``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from league.games.differentiable import DifferentiableGame

__all__ = [
    "Rule",
    "own_gradients",
    "simultaneous_gradient",
    "lookahead_gradient",
    "Naive",
    "Frozen",
    "LolaLookahead",
    "LolaTaylor",
    "Hola",
    "FollowModel",
    "DIFFERENTIABLE_RULES",
    "make_rule",
    "step",
]

ValuesFn = Callable[[torch.Tensor], torch.Tensor]


class Rule(Protocol):
    """An update rule: the direction ``[B, n, d]`` each player moves in from ``x [B, n, d]``."""

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor: ...


def own_gradients(values: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """``out[:, i] = d values[:, i] / d x[:, i]`` for ``values [B, n]`` computed from ``x [B, n, d]``.

    One backward pass per player (rows of the batch are independent, so summing over the
    batch gives every row's own gradient). ``create_graph`` keeps the result differentiable.
    """
    n = values.shape[-1]
    rows = []
    for i in range(n):
        (g,) = torch.autograd.grad(values[..., i].sum(), x, create_graph=create_graph, retain_graph=True)
        rows.append(g[..., i, :])
    return torch.stack(rows, dim=-2)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a tensor that requires grad (a fresh leaf when ``x`` is outside any graph)."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def simultaneous_gradient(game: DifferentiableGame, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """The simultaneous gradient ``(grad_1 f_1, ..., grad_n f_n)`` at ``x [B, n, d]``."""
    x = _leaf(x)
    with torch.enable_grad():
        return own_gradients(game.values(x), x, create_graph=create_graph)


def _others_mask(n: int, like: torch.Tensor) -> torch.Tensor:
    """``mask[i, j] = 1`` for ``j != i``: player ``i`` extrapolates the others, not itself."""
    return (1.0 - torch.eye(n, dtype=like.dtype, device=like.device)).unsqueeze(-1)  # [n, n, 1]


def lookahead_gradient(game: DifferentiableGame, x: torch.Tensor, assumed: torch.Tensor,
                       alpha: float | torch.Tensor, create_graph: bool) -> torch.Tensor:
    """``grad_i f_i(x + alpha * S_-i^T S_-i assumed(x))`` for every player ``i`` (Appendix B).

    ``assumed [B, n, d]`` is the update the others are assumed to take, still in the graph of
    ``x`` so that the result differentiates through it. ``alpha`` is a number or a tensor of
    the batch shape ``[B]`` (one step per row, as COLA trains over a range of steps).
    """
    n = x.shape[-2]
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.reshape(*alpha.shape, 1, 1, 1)
    # per looking player i: x_i stays, every other player j moves by alpha * assumed_j
    looked = x.unsqueeze(-3) + alpha * _others_mask(n, x) * assumed.unsqueeze(-3)  # [B, n(i), n, d]
    v = game.values(looked)  # [B, n(i), n]
    own = torch.diagonal(v, dim1=-2, dim2=-1)  # [B, n]: f_i at player i's look-ahead
    return own_gradients(own, x, create_graph=create_graph)


@dataclass(frozen=True)
class Naive:
    """Simultaneous gradient ascent."""

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor:
        return simultaneous_gradient(game, x).detach()


@dataclass(frozen=True)
class Frozen:
    """No learning: the zero direction (a fixed opponent, e.g. when a best response is sought)."""

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x).detach()


@dataclass(frozen=True)
class Hola:
    """HOLA-``order`` sans Taylor approximation (Appendix B): HOLA-0 is naive, HOLA-1 is LOLA."""

    alpha: float = 1.0
    """Extrapolation step of the imagined opponent update."""
    order: int = 2
    """Recursion depth n of HOLA-n."""

    def __post_init__(self) -> None:
        if self.order < 0:
            raise ValueError(f"HOLA order must be >= 0, got {self.order}")

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor:
        x = _leaf(x)
        with torch.enable_grad():
            g = own_gradients(game.values(x), x, create_graph=self.order > 0)
            for level in range(1, self.order + 1):
                g = lookahead_gradient(game, x, g, self.alpha, create_graph=level < self.order)
        return g.detach()


def LolaLookahead(alpha: float = 1.0) -> Hola:
    """LOLA sans Taylor approximation: HOLA-1 (Appendix B of the MeVa paper)."""
    return Hola(alpha=alpha, order=1)


@dataclass(frozen=True)
class LolaTaylor:
    """The original LOLA update (first-order Taylor form of the look-ahead):

    ``grad_i f_i + alpha * d/dx_i [ sum_{j != i} stopgrad(grad_j f_i) . grad_j f_j ]``,
    i.e. the own gradient plus the correction ``alpha (grad_i grad_j f_j)^T grad_j f_i``.
    """

    alpha: float = 1.0
    """Learning rate of the imagined opponent update (LOLA's eta)."""

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor:
        x = _leaf(x)
        n = x.shape[-2]
        with torch.enable_grad():
            v = game.values(x)  # [B, n]
            naive = own_gradients(v, x, create_graph=True)  # [B, n, d], grad_j f_j
            # full[:, i] = grad_x f_i (every player's block), held constant
            full = torch.stack([torch.autograd.grad(v[..., i].sum(), x, retain_graph=True)[0] for i in range(n)], dim=-3)
            # cross[:, i] = sum_{j != i} grad_j f_i . grad_j f_j   (the term LOLA differentiates)
            cross = (_others_mask(n, x) * full.detach() * naive.unsqueeze(-3)).sum(dim=(-2, -1))  # [B, n]
            correction = own_gradients(cross, x)
        return (naive + self.alpha * correction).detach()


@dataclass(frozen=True)
class FollowModel:
    """Follow a learned direction: ``model_direction(game, x)`` (COLA's update model or the
    gradient of a meta-value). Exists so learned rules sit in the same registry."""

    direction: Callable[[DifferentiableGame, torch.Tensor], torch.Tensor]
    """The learned direction ``[B, n, d]`` at ``x``."""

    def __call__(self, game: DifferentiableGame, x: torch.Tensor) -> torch.Tensor:
        return self.direction(game, x).detach()


def _cola(model: Any, alpha: float = 1.0) -> FollowModel:
    from league.meva.cola import cola_direction

    return FollowModel(lambda game, x: cola_direction(model, x, alpha))


def _meva(model: Any, gamma: float | torch.Tensor = 0.9, formulation: str = "V") -> FollowModel:
    from league.meva.train import meta_value_direction

    return FollowModel(lambda game, x: meta_value_direction(model, game, x, gamma, formulation))


#: Update rules by name: factory(**settings) -> rule(game, x) -> direction [B, n, d].
DIFFERENTIABLE_RULES: dict[str, Callable[..., Rule]] = {
    "naive": Naive,
    "frozen": Frozen,
    "lola": LolaLookahead,
    "lola-taylor": LolaTaylor,
    "hola": Hola,
    "cola": _cola,
    "meva": _meva,
}


def make_rule(name: str, **settings: Any) -> Rule:
    """The registered rule ``name`` with its settings (e.g. ``alpha``, ``order``, ``model``)."""
    try:
        factory = DIFFERENTIABLE_RULES[name]
    except KeyError:
        raise ValueError(f"unknown update rule {name!r}; known: {', '.join(sorted(DIFFERENTIABLE_RULES))}") from None
    return factory(**settings)


def step(rule: Rule, game: DifferentiableGame, x: torch.Tensor, lr: float | torch.Tensor = 1.0) -> torch.Tensor:
    """One learning step ``x + lr * rule(game, x)`` (players maximise)."""
    return x.detach() + lr * rule(game, x)
