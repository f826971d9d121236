"""MATRL and its ablations on normal-form games with exact values, batched over games.

Policies are probability vectors, one tensor ``[B, A]`` per seat; ``payoff [B, n, A, ..., A]``
holds ``B`` games. One iteration of each learning rule (registry :data:`MATRIX_RULES`):

- ``iga`` (the paper's IL): every seat takes the trust-region step of :func:`trust_region_step`
  against the others' current policies; the predicted policy is the next policy.
- ``iga-pp`` (IL-PP, Zhang & Lesser 2010): every seat predicts each peer's IGA step with
  ``prediction_lr`` and takes its own gradient step against the predicted peers.
- ``matrl``: predicted policies by the trust-region step; the exact ``2**n`` meta-game of gains
  between current and predicted policies; a verified meta-game Nash ``w`` (probability of the
  predicted policy; ``w = 0``, i.e. keep the current policy, where none verifies); the mixture
  ``pi_bar = (1 - w) pi + w pi_hat`` (a policy mixture, as the paper writes, not a parameter
  interpolation); then the best response step ``pi' = pi + br_lr * grad_pi V(pi, pi_bar_-i)``.
- ``matrl-no-br``: the same without the best response: ``pi' = pi_bar``.

Every gradient step is projected ascent on the simplex (:func:`ascent_step`); with two actions
it is exactly IGA on ``p = pi(action 0)``: ``p' = clip(p + lr * dV/dp, 0, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from league.nash.metagame import action_values, exact_metagame
from league.nash.solvers import BATCHED_SOLVERS, select_equilibrium

__all__ = [
    "MatrixMATRLConfig", "MATRIX_RULES", "StepInfo", "project_simplex", "ascent_step", "trust_region_step",
    "metagame_weights", "iga_step", "iga_pp_step", "matrl_step", "matrl_no_br_step", "run_dynamics",
]


@dataclass(frozen=True)
class MatrixMATRLConfig:
    """Hyperparameters of the matrix-game learners (defaults: the authors' 2x2 settings)."""

    lr: float = 0.02
    """Step size of the independent trust-region (IGA) step that gives the predicted policy;
    also IGA's and IGA-PP's own step size."""
    kl_coef: float = 100.0
    """Coefficient of the ``KL(pi || q)`` penalty of the trust-region step. Its gradient vanishes
    at ``q = pi``, so it only acts from the second inner step on (``trust_steps > 1``)."""
    trust_steps: int = 1
    """Inner ascent steps of the trust-region step. More than one with the default ``lr`` and
    ``kl_coef`` is unstable (``lr * kl_coef * Fisher >= 8 > 2``): keep 1 unless both shrink."""
    prediction_lr: float = 0.01
    """IGA-PP: step size of the predicted peer step."""
    br_lr: float = 0.03
    """MATRL: step size of the best response against the peers' meta-game mixture."""
    iterations: int = 1000
    """Learning iterations per run."""
    tolerance: float = 2.5e-3
    """Converged when every seat's squared distance to one Nash equilibrium is below this."""
    nash_eps: float = 1e-9
    """A meta-game profile is used only if no pure deviation gains more than this."""
    solvers: tuple[str, ...] = ("closed-form-2x2",)
    """Meta-game Nash solvers tried in order (``league.nash.NASH_SOLVERS``; a name in
    ``BATCHED_SOLVERS`` solves the whole batch at once)."""
    start: tuple[float, ...] = field(default=(0.9, 0.2))
    """Initial probability of action 0 for each seat (2-action games)."""


@dataclass
class StepInfo:
    """What an iteration decided besides the new policies."""

    predicted: list[torch.Tensor] | None = None
    """Each seat's predicted (trust-region) policy, ``[B, A]``."""
    weights: torch.Tensor | None = None
    """Meta-game Nash probability of the predicted policy per seat, ``[B, n]``."""
    found: torch.Tensor | None = None
    """Whether a verified meta-game equilibrium was found, ``[B]``."""


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of every row ``v[..., :]`` onto the probability simplex (sort-based,
    Held et al. / Duchi et al. 2008)."""
    a = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ks = torch.arange(1, a + 1, dtype=v.dtype, device=v.device)
    cond = u - css / ks > 0
    rho = (cond * ks).amax(-1, keepdim=True)  # largest k with u_k - (sum_{j<=k} u_j - 1) / k > 0
    theta = css.gather(-1, rho.long() - 1) / rho
    return (v - theta).clamp_min(0.0)


def ascent_step(policy: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor) -> torch.Tensor:
    """Projected gradient ascent on the simplex. ``grad[..., a]`` is the gradient with respect to
    ``policy[..., a]``; the step moves along its tangent part scaled by ``A / (A - 1)`` (the mean of
    the pairwise IGA steps), so that with two actions ``p = policy[..., 0]`` moves by exactly
    ``lr * (grad_0 - grad_1)``, IGA's step, before the projection (a clip to ``[0, 1]``)."""
    a = policy.shape[-1]
    tangent = (grad - grad.mean(-1, keepdim=True)) * (a / (a - 1))
    return project_simplex(policy + lr * tangent)


def trust_region_step(payoff: torch.Tensor, policies: Sequence[torch.Tensor], cfg: MatrixMATRLConfig
                      ) -> list[torch.Tensor]:
    """Every seat's predicted policy: ``cfg.trust_steps`` projected ascent steps of size ``cfg.lr``
    from ``pi_k`` on ``J_k(q) = V_k(q, pi_-k) - kl_coef * KL(pi_k || q)``, the peers held at their
    current policies (an independent trust-region learner). ``dJ/dq(a) = Q_k(a) + kl_coef *
    pi_k(a) / q(a)``; the KL part of that gradient is constant over actions at ``q = pi_k``, so the
    first step is plain IGA."""
    q_values = action_values(payoff, policies)
    out = []
    for pi, q in zip(policies, q_values):
        cur = pi
        for _ in range(cfg.trust_steps):
            grad = q + cfg.kl_coef * pi / cur.clamp_min(1e-12)
            cur = ascent_step(cur, grad, cfg.lr)
        out.append(cur)
    return out


def metagame_weights(meta: torch.Tensor, cfg: MatrixMATRLConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A verified Nash equilibrium of every meta-game ``meta [B, n, 2, ..., 2]`` as the probability
    of the predicted policy per seat, ``(w [B, n], found [B])``; ``w = 0`` (keep the current
    policy) where no solver's profile verifies. The first solver of ``cfg.solvers`` that has a
    batched form and fits solves the whole batch; others run game by game."""
    B, n = meta.shape[0], meta.shape[1]
    first = cfg.solvers[0]
    if first in BATCHED_SOLVERS and n == 2 and len(cfg.solvers) == 1:
        return BATCHED_SOLVERS[first](meta, cfg.nash_eps)
    w = torch.zeros(B, n, dtype=meta.dtype, device=meta.device)
    found = torch.zeros(B, dtype=torch.bool, device=meta.device)
    for b in range(B):
        profile, _ = select_equilibrium(meta[b].double(), cfg.solvers, cfg.nash_eps)
        if profile is not None:
            w[b] = torch.stack([p[1] for p in profile]).to(meta.dtype)
            found[b] = True
    return w, found


def iga_step(payoff: torch.Tensor, policies: list[torch.Tensor], cfg: MatrixMATRLConfig
             ) -> tuple[list[torch.Tensor], StepInfo]:
    """IL: the trust-region (IGA) step is the update."""
    predicted = trust_region_step(payoff, policies, cfg)
    return predicted, StepInfo(predicted=predicted)


def iga_pp_step(payoff: torch.Tensor, policies: list[torch.Tensor], cfg: MatrixMATRLConfig
                ) -> tuple[list[torch.Tensor], StepInfo]:
    """IL-PP: each seat's gradient at the peers' predicted next policies (one IGA step of size
    ``prediction_lr`` each, projected to the simplex), then a step of size ``lr``."""
    q_now = action_values(payoff, policies)
    guessed = [ascent_step(pi, q, cfg.prediction_lr) for pi, q in zip(policies, q_now)]
    n = len(policies)
    new = []
    for k in range(n):
        peers = [policies[k] if j == k else guessed[j] for j in range(n)]
        new.append(ascent_step(policies[k], action_values(payoff, peers)[k], cfg.lr))
    return new, StepInfo(predicted=guessed)


def _mixture(policies: list[torch.Tensor], predicted: list[torch.Tensor], w: torch.Tensor) -> list[torch.Tensor]:
    return [(1 - w[:, k : k + 1]) * pi + w[:, k : k + 1] * hat for k, (pi, hat) in enumerate(zip(policies, predicted))]


def _matrl_fixed_point(payoff: torch.Tensor, policies: list[torch.Tensor], cfg: MatrixMATRLConfig
                       ) -> tuple[list[torch.Tensor], StepInfo]:
    predicted = trust_region_step(payoff, policies, cfg)
    meta = exact_metagame(payoff, policies, predicted)
    w, found = metagame_weights(meta, cfg)
    return _mixture(policies, predicted, w), StepInfo(predicted=predicted, weights=w, found=found)


def matrl_step(payoff: torch.Tensor, policies: list[torch.Tensor], cfg: MatrixMATRLConfig
               ) -> tuple[list[torch.Tensor], StepInfo]:
    """MATRL: best response (one ascent step of size ``br_lr`` from the current policy) against
    the peers' meta-game Nash mixture."""
    mixed, info = _matrl_fixed_point(payoff, policies, cfg)
    n = len(policies)
    new = []
    for k in range(n):
        peers = [policies[k] if j == k else mixed[j] for j in range(n)]
        new.append(ascent_step(policies[k], action_values(payoff, peers)[k], cfg.br_lr))
    return new, info


def matrl_no_br_step(payoff: torch.Tensor, policies: list[torch.Tensor], cfg: MatrixMATRLConfig
                     ) -> tuple[list[torch.Tensor], StepInfo]:
    """MATRL without the best response: the meta-game mixture is the next policy."""
    return _matrl_fixed_point(payoff, policies, cfg)


Rule = Callable[[torch.Tensor, list[torch.Tensor], MatrixMATRLConfig], tuple[list[torch.Tensor], StepInfo]]

#: Matrix-game learning rules by name (the paper's IL = IGA, IL-PP = IGA-PP, MATRL, MATRL w/o BR).
MATRIX_RULES: dict[str, Rule] = {
    "iga": iga_step,
    "iga-pp": iga_pp_step,
    "matrl": matrl_step,
    "matrl-no-br": matrl_no_br_step,
}


def _get_rule(name: str) -> Rule:
    try:
        return MATRIX_RULES[name]
    except KeyError:
        raise ValueError(f"unknown matrix-game rule {name!r}; known: {', '.join(MATRIX_RULES)}") from None


def run_dynamics(rule: str, payoff: torch.Tensor, policies: Sequence[torch.Tensor], cfg: MatrixMATRLConfig,
                 equilibria: tuple[torch.Tensor, torch.Tensor] | None = None, record: bool = False
                 ) -> dict[str, torch.Tensor]:
    """Run ``cfg.iterations`` iterations of ``rule`` on ``B`` games at once.

    ``equilibria`` (optional, the format of :func:`converged_to`): a game whose policies come within ``cfg.tolerance`` (squared distance, every seat) of one of its equilibria
    is frozen there, as the authors stop a run at convergence. Returns ``steps [B]`` (iterations
    until convergence, ``-1`` if never), the final ``policies`` (list ``[B, A]``) and, with
    ``record``, ``trajectory`` ``[T + 1, B, n, A]`` plus the meta-game ``weights`` ``[T, B, n]``
    (NaN for rules without a meta-game).
    """
    step = _get_rule(rule)
    pols = [p.clone() for p in policies]
    B, n = payoff.shape[0], payoff.shape[1]
    steps = torch.full((B,), -1, dtype=torch.long)
    traj = [torch.stack(pols, 1)] if record else []
    weights = []
    for t in range(cfg.iterations):
        new, info = step(payoff, pols, cfg)
        active = (steps < 0).unsqueeze(-1)
        pols = [torch.where(active, nw, p) for nw, p in zip(new, pols)]
        if equilibria is not None:
            hit = converged_to(pols, equilibria, cfg.tolerance) & (steps < 0)
            steps[hit] = t + 1
        if record:
            traj.append(torch.stack(pols, 1))
            nan = torch.full((B, n), float("nan"), dtype=payoff.dtype)
            weights.append(info.weights if info.weights is not None else nan)
    out = {"steps": steps, "policies": pols}
    if record:
        out["trajectory"] = torch.stack(traj)
        out["weights"] = torch.stack(weights)
    return out


def converged_to(policies: Sequence[torch.Tensor], equilibria: tuple[torch.Tensor, torch.Tensor],
                 tolerance: float) -> torch.Tensor:
    """Whether every seat's probability of action 0 is within squared distance ``tolerance`` of
    the same equilibrium. ``equilibria = (p0 [B, E, n], valid [B, E])`` lists each game's
    equilibria as every seat's probability of action 0 (``valid`` masks padding); ``[B]``."""
    p0, valid = equilibria
    cur = torch.stack([p[:, 0] for p in policies], -1).unsqueeze(1)  # [B, 1, n]
    close = ((cur - p0) ** 2 < tolerance).all(-1) & valid
    return close.any(-1)
