"""Sampled MATRL (Algorithm 1) for categorical policies on the iterated matrix games: one round
is four functions of tensors, shared by the embedded run (:func:`run_sampled_matrl`) and the
league (the agents take steps (a) and (d), the coordinator (b) and (c)), so both compute the
same numbers from the same episodes.

A round, from ``K`` episodes of the current policies ``pi`` (nothing else is played):

(a) :func:`trust_region_step`: every seat's predicted policy ``pi_hat``: ``trust_steps`` ascent
    steps on its importance-weighted return minus ``kl_coef`` times the mean KL from the current
    policy at the visited states (Eq. 2's penalised form); the first step's KL gradient vanishes,
    so with ``trust_steps = 1`` it is the policy-gradient step;
(b) :func:`score_round` (every seat's actions under its current and predicted parameters, once
    per round), then :func:`round_metagame`: the ``2**n`` meta-game of expected advantage gains from the same
    episodes (``league.matrl.estimators.importance_weighted_metagame``);
(c) :func:`nash_weights`: a verified meta-game Nash equilibrium (``select_equilibrium`` over the
    configured solvers) as each seat's probability ``w`` of its predicted policy; ``w = 0``
    (keep the current policy) where none verifies;
(d) :func:`peer_log_ratios` and :func:`best_response_step`: each seat's ascent step on the
    truncated best-response objective against its peers' **policy mixtures**
    ``pi_bar_j = (1 - w_j) pi_j + w_j pi_hat_j`` (the paper's mixture; the authors' deep code
    interpolates parameters instead), reweighting the peers' actions by
    ``prod_{j != i} pi_bar_j / pi_j`` (``truncated_best_response_objective``).

The peers' mixture reaches a seat as that per-step log-ratio ``[B, K, H]`` on the round's own
episodes, which is all step (d) needs whatever the policy class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from league.games.iterated import IteratedMatrixGame
from league.matrl.estimators import importance_weighted_metagame, truncated_best_response_objective
from league.nash.solvers import select_equilibrium
from league.policies.base import Params, Policy, policy_sequence
from league.rollout import Episodes, sample_episodes, score, seat_logp

__all__ = ["SampledMATRLConfig", "RoundResult", "MatrlTrustRegion", "trust_region_step", "RoundScores",
           "score_round", "round_metagame", "nash_weights", "peer_log_ratios", "best_response_step", "matrl_round",
           "run_sampled_matrl"]


@dataclass(frozen=True)
class SampledMATRLConfig:
    """Hyperparameters of sampled MATRL rounds (one config for the embedded run and the league:
    the coordinator's ``--experiment`` TOML holds these fields)."""

    env: str = "rps"
    """Game: a name in ``league.games.GAMES`` (its iterated matrix game; tabular policies)."""
    n_players: int = 2
    """Seats per game (``rps`` takes 2..4, ``ipd`` 2); the league's ``referee.n_players``."""
    trajectories: int = 64
    """K: episodes per round per group (the trust-region step's batch, reused by the meta-game
    and the best response)."""
    horizon: int = 1
    """H: steps per episode (1: the one-shot matrix game)."""
    gamma: float = 0.96
    """Discount of returns (the league's ``referee.gamma``, which the agents learn with)."""
    lr: list[float] = field(default_factory=lambda: [1.0])
    """Trust-region step size per seat (the last value repeats; in the league, each agent's
    ``lr``)."""
    kl_coef: float = 1.0
    """Coefficient of the mean ``KL(pi || pi_theta)`` at the visited states in the trust-region
    objective (acts from the second inner step on)."""
    trust_steps: int = 1
    """Inner ascent steps of the trust-region step."""
    br_lr: float = 1.0
    """Step size of the best response against the peers' mixtures."""
    clip: float = 0.5
    """``c_bar``: the peers' importance weight of the best response is clipped to
    ``[1 - clip, 1 + clip]``."""
    solvers: list[str] = field(default_factory=lambda: ["pure", "support-enumeration", "lyapunov"])
    """Meta-game Nash solvers tried in order (``league.nash.NASH_SOLVERS``; 2-player-only solvers
    are skipped for more seats)."""
    nash_eps: float = 1e-6
    """A meta-game profile is used only if no pure deviation gains more than this."""
    rounds: int = 10
    """MATRL rounds (the coordinator's ``--iterations`` replaces it in the league)."""

    def seat_lr(self, seat: int) -> float:
        """Seat ``seat``'s trust-region step size."""
        return self.lr[min(seat, len(self.lr) - 1)]

    def solvers_for(self, n: int) -> list[str]:
        """The configured solvers that apply to an ``n``-seat meta-game."""
        two_only = {"closed-form-2x2", "support-enumeration", "nashpy"}
        return [s for s in self.solvers if n == 2 or s not in two_only]


def _surrogate(logp: torch.Tensor, logp_behaviour: torch.Tensor, peer_log_ratio: torch.Tensor,
               rewards: torch.Tensor, gamma: float, clip: float) -> torch.Tensor:
    """``truncated_best_response_objective`` per chain ``[B]`` (its inputs ``[B, K, H]``)."""
    zeros = torch.zeros_like(peer_log_ratio[0])
    return torch.stack([truncated_best_response_objective(logp[b], logp_behaviour[b], peer_log_ratio[b], zeros,
                                                          rewards[b], gamma, clip)
                        for b in range(logp.shape[0])])


def _ascend(params: Params, objective: torch.Tensor, lr: float) -> Params:
    names = list(params)
    grads = torch.autograd.grad(objective.sum(), [params[n] for n in names])
    return {n: (params[n] + lr * g).detach() for n, g in zip(names, grads)}


def _leaf(params: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def trust_region_step(policy: Policy, params: Params, episodes: Episodes, seat: int, lr: float, gamma: float,
                      kl_coef: float = 1.0, steps: int = 1) -> Params:
    """Step (a): seat ``seat``'s predicted parameters from the episodes its current ``params``
    played: ``steps`` ascent steps of size ``lr`` on
    ``mean_k sum_t gamma^t (pi_theta / pi)(a_t) (G_t - b_t) - kl_coef * mean_{k,t} KL(pi(.|s_t) || pi_theta(.|s_t))``
    (``G`` the seat's return-to-go, ``b`` the leave-one-out mean over episodes)."""
    rewards = episodes.rewards[..., seat]
    behaviour = {k: v.detach() for k, v in params.items()}
    with torch.no_grad():
        logp_b = seat_logp(policy, behaviour, episodes, seat)
        log_probs_b = policy.distribution(behaviour, policy_sequence(policy, behaviour, episodes.obs_of(seat))).log_probs
    no_peers = torch.zeros_like(logp_b)
    current = behaviour
    for _ in range(steps):
        live = _leaf(current)
        logp = seat_logp(policy, live, episodes, seat)
        gain = _surrogate(logp, logp_b, no_peers, rewards, gamma, clip=float("inf"))
        log_probs = policy.distribution(live, policy_sequence(policy, live, episodes.obs_of(seat))).log_probs
        kl = (log_probs_b.exp() * (log_probs_b - log_probs)).sum(-1).mean(dim=(1, 2))  # [B]
        current = _ascend(live, gain - kl_coef * kl, lr)
    return current


@dataclass(frozen=True)
class RoundScores:
    """Every seat's log-probabilities of its own actions on a round's episodes under its current
    and under its predicted parameters, each ``[n, B, K, H]``, without a graph (padding 0): all
    that steps (b) and (d) read of the policies, so a round scores each pair once."""

    current: torch.Tensor
    """``[n, B, K, H]`` under the current (behaviour) parameters."""
    predicted: torch.Tensor
    """``[n, B, K, H]`` under the predicted parameters."""


def score_round(policies: Sequence[Policy], current: Sequence[Params], predicted: Sequence[Params],
                episodes: Episodes, current_logp: Sequence[torch.Tensor] | None = None) -> RoundScores:
    """The round's :class:`RoundScores`; ``current_logp`` (each seat's ``[B, K, H]``), if the
    caller already scored the current parameters (a PPO step's ``logp_old``), is used as it is."""
    with torch.no_grad():
        lc = (torch.stack(score(policies, current, episodes).logp) if current_logp is None
              else torch.stack([x.detach() for x in current_logp]))
        lp = torch.stack(score(policies, predicted, episodes).logp)
    return RoundScores(lc, lp)


def round_metagame(scores: RoundScores, episodes: Episodes, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Step (b): the meta-game ``[B, n, 2, ..., 2]`` and its standard error from the round's
    episodes ``[B, K, H, ...]`` and their :class:`RoundScores`."""
    lc, lp = (x.movedim(0, -1).contiguous() for x in (scores.current, scores.predicted))  # [B, K, H, n]
    out = [importance_weighted_metagame(episodes.rewards[b], lc[b], lp[b], gamma) for b in range(lc.shape[0])]
    return torch.stack([m for m, _ in out]), torch.stack([s for _, s in out])


def nash_weights(meta: torch.Tensor, solvers: Sequence[str], eps: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Step (c): per meta-game ``meta [B, n, 2, ..., 2]`` a verified Nash equilibrium as the
    probability of the predicted policy per seat, ``(w [B, n], found [B], solver names)``;
    ``w = 0`` (keep the current policies) and solver ``""`` where no solver's profile verifies."""
    B, n = meta.shape[:2]
    w = torch.zeros(B, n, dtype=meta.dtype)
    found = torch.zeros(B, dtype=torch.bool)
    names = []
    for b in range(B):
        profile, name = select_equilibrium(meta[b].double(), solvers, eps)
        if profile is not None:
            w[b] = torch.stack([p[1] for p in profile]).to(meta.dtype)
            found[b] = True
        names.append(name or "")
    return w, found, names


def peer_log_ratios(scores: RoundScores, weights: torch.Tensor) -> torch.Tensor:
    """Step (d), the coordinator's half: for every seat ``i`` the peers' log importance weight
    ``sum_{j != i} log(pi_bar_j(a_j|s) / pi_j(a_j|s))`` at every step, ``[n, B, K, H]``, with the
    policy mixture ``pi_bar_j = (1 - w_j) pi_j + w_j pi_hat_j`` (``weights [B, n]``)."""
    lc, lp = scores.current, scores.predicted
    w = weights.T.reshape(*weights.T.shape, 1, 1).to(lc.dtype)  # [n, B, 1, 1]
    mixed = torch.logaddexp(torch.log1p(-w) + lc, torch.log(w) + lp)  # log pi_bar_j(a_j | s)
    own = mixed - lc
    return own.sum(0, keepdim=True) - own


def best_response_step(policy: Policy, params: Params, episodes: Episodes, seat: int, peer_log_ratio: torch.Tensor,
                       lr: float, clip: float, gamma: float) -> Params:
    """Step (d), the seat's half: one ascent step of size ``lr`` from the current ``params`` on
    the truncated best-response objective against the peers' mixtures (``peer_log_ratio [B, K, H]``
    from :func:`peer_log_ratios`)."""
    live = _leaf(params)
    logp = seat_logp(policy, live, episodes, seat)
    objective = _surrogate(logp, logp.detach(), peer_log_ratio, episodes.rewards[..., seat], gamma, clip)
    return _ascend(live, objective, lr)


@dataclass
class RoundResult:
    """What one MATRL round computed (``B`` groups)."""

    predicted: list[Params]
    """Each seat's predicted (trust-region) parameters."""
    metagame: torch.Tensor
    """``[B, n, 2, ..., 2]`` importance-weighted meta-game."""
    stderr: torch.Tensor
    """Its standard error, same shape."""
    weights: torch.Tensor
    """``[B, n]`` Nash probability of the predicted policy (0 where none verified)."""
    found: torch.Tensor
    """``[B]`` whether a verified equilibrium was found."""
    solvers: list[str]
    """Per group, the solver whose profile verified (``""``: none)."""
    params: list[Params]
    """Each seat's parameters after the best response."""


def matrl_round(policies: Sequence[Policy], params: Sequence[Params], episodes: Episodes,
                cfg: SampledMATRLConfig) -> RoundResult:
    """One MATRL round from episodes the current ``params`` played: steps (a) to (d)."""
    n = len(policies)
    predicted = [trust_region_step(policies[k], params[k], episodes, k, cfg.seat_lr(k), cfg.gamma, cfg.kl_coef,
                                   cfg.trust_steps) for k in range(n)]
    scores = score_round(policies, params, predicted, episodes)
    meta, se = round_metagame(scores, episodes, cfg.gamma)
    w, found, names = nash_weights(meta, cfg.solvers_for(n), cfg.nash_eps)
    ratios = peer_log_ratios(scores, w)
    new = [best_response_step(policies[k], params[k], episodes, k, ratios[k], cfg.br_lr, cfg.clip, cfg.gamma)
           for k in range(n)]
    return RoundResult(predicted, meta, se, w, found, names, new)


def run_sampled_matrl(game: IteratedMatrixGame, policies: Sequence[Policy], groups: Sequence[Sequence[Params]],
                      cfg: SampledMATRLConfig, generator: torch.Generator, rounds: int | None = None
                      ) -> tuple[list[list[Params]], list[dict[str, Any]]]:
    """The embedded run: ``rounds`` (default ``cfg.rounds``) MATRL rounds of every group of
    ``n`` seats, groups in order within a round, each group's episodes drawn from ``generator``
    in turn (the order in which the ``matrl`` coordinator mode asks the referee). Returns every
    group's final parameters and one record per round and group."""
    params = [list(g) for g in groups]
    history = []
    for r in range(cfg.rounds if rounds is None else rounds):
        for g in range(len(params)):
            episodes = sample_episodes(game, policies, params[g], 1, cfg.trajectories, cfg.horizon, generator)
            out = matrl_round(policies, params[g], episodes, cfg)
            params[g] = out.params
            history.append({"round": r + 1, "group": g, "weights": out.weights[0].tolist(),
                            "metagame": out.metagame[0].flatten().tolist(), "solver": out.solvers[0],
                            "mean_reward": episodes.rewards.mean(dim=(0, 1, 2)).tolist()})
    return params, history


@dataclass(frozen=True)
class MatrlTrustRegion:
    """The ``matrl`` update rule (``league.updates.UPDATE_RULES``): a seat's MATRL trust-region
    step, returning its *predicted* parameters. An agent process with this rule publishes them
    as kind ``predicted`` and waits for the coordinator's meta-game mixture before its best
    response (``agents/matrl.py``); the rule needs the seat's ``policy`` to re-score its
    episodes between inner steps."""

    learns = True
    needs_rollouts = False
    policy: Any = None
    """The seat's policy (``league.policies``); required by ``update``."""
    gamma: float = 0.96
    """Discount of the seat's returns."""
    kl_coef: float = 1.0
    """See :class:`SampledMATRLConfig`."""
    trust_steps: int = 1
    """See :class:`SampledMATRLConfig`."""

    def update(self, evaluator: Any, params: Sequence[Params], data: Any, k: int, lrs: Sequence[torch.Tensor],
               step: int, create_graph: bool) -> Params:
        if self.policy is None:
            raise ValueError("the matrl rule re-scores its episodes: build it with the seat's policy "
                             "(make_update_rule('matrl', policy=...))")
        lr = lrs[k]
        if lr is None:
            raise ValueError(f"seat {k} learns but has no learning rate")
        return trust_region_step(self.policy, params[k], data, k, float(lr.flatten()[0]), self.gamma,
                                 self.kl_coef, self.trust_steps)
