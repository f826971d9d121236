"""The MATRL meta-game estimated from the trust-region step's own trajectories (no extra
rollouts), by importance weighting.

Entry ``(i, c)`` of the meta-game is seat ``i``'s expected advantage gain (the paper's Eq. 3) when
the seats with ``c_k = 1`` switch to their predicted policies:

    g_i(c) = sum_t gamma^t E_{s_t, a_t ~ pi}[ w_c(t) A_i^pi(s_t, a_t) ],
    w_c(t) = prod_{k: c_k = 1} pi_hat_k(a_{k,t} | s_t) / pi_k(a_{k,t} | s_t).

Since ``E[w_c(t) | s_t] = 1``, ``E[(w_c(t) - 1) (G_{i,t} - b_{i,t})] = E[w_c(t) A_i(s_t, a_t)]`` for the
return-to-go ``G`` and any baseline ``b`` independent of the episode's actions, so the estimator
needs no critic. The default baseline is the leave-one-out mean of the other episodes'
returns-to-go at the same time step; a critic's ``V(s_t)`` may be passed instead. Samples are
per-episode sums, so the standard error is their standard deviation over ``sqrt(K)``.
"""

from __future__ import annotations

import torch

from league.nash.metagame import corner_choices

__all__ = ["returns_to_go", "importance_weighted_metagame", "truncated_best_response_objective"]


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_{l >= t} gamma^(l - t) r_l`` along dimension 1 of ``rewards [K, H, n]``."""
    out = torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        acc = rewards[:, t] + gamma * acc
        out[:, t] = acc
    return out


def importance_weighted_metagame(
    rewards: torch.Tensor,
    logp_current: torch.Tensor,
    logp_predicted: torch.Tensor,
    gamma: float,
    baseline: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The meta-game estimate ``[n, 2, ..., 2]`` and its standard error, from ``K`` episodes.

    ``rewards [K, H, n]``; ``logp_current [K, H, n]``: each seat's log-probability of its own
    action under its current (behaviour) policy; ``logp_predicted [K, H, n]``: the same action
    under its predicted policy (the policies condition on the observations already, so the
    observations themselves are not needed); ``baseline [K, H, n]``: optional state values
    ``V_i(s_t)`` (default: the leave-one-out mean of ``G`` at each step); ``mask [K, H]``: steps
    that happened (default: all).
    """
    if rewards.dim() != 3 or logp_current.shape != rewards.shape or logp_predicted.shape != rewards.shape:
        raise ValueError(f"rewards and log-probs must all be [K, H, n], got {tuple(rewards.shape)}, "
                         f"{tuple(logp_current.shape)}, {tuple(logp_predicted.shape)}")
    K, H, n = rewards.shape
    if K < 2:
        raise ValueError("need at least 2 episodes (a baseline and a standard error)")
    m = torch.ones(K, H, dtype=rewards.dtype) if mask is None else mask.to(rewards.dtype)
    G = returns_to_go(rewards * m.unsqueeze(-1), gamma)
    if baseline is None:
        baseline = (G.sum(0, keepdim=True) - G) / (K - 1)
    choose = corner_choices(n, rewards.device).to(rewards.dtype)  # [C, n]
    log_ratio = (logp_predicted - logp_current) * m.unsqueeze(-1)  # [K, H, n]
    w = torch.exp(log_ratio @ choose.T)  # [K, H, C]
    disc = gamma ** torch.arange(H, dtype=rewards.dtype, device=rewards.device)
    adv = (G - baseline) * m.unsqueeze(-1)  # [K, H, n]
    samples = torch.einsum("t,ktc,kti->kic", disc, w - 1.0, adv)  # [K, n, C]
    est = samples.mean(0)
    se = samples.std(0, unbiased=True) / K**0.5
    shape = (n, *([2] * n))
    return est.reshape(shape), se.reshape(shape)


def truncated_best_response_objective(
    logp_own: torch.Tensor,
    logp_own_behaviour: torch.Tensor,
    logp_peers_mixture: torch.Tensor,
    logp_peers_behaviour: torch.Tensor,
    rewards: torch.Tensor,
    gamma: float,
    clip: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """A surrogate whose gradient in the agent's own parameters (through ``logp_own``, at the
    behaviour policy) estimates the best-response direction ``grad V_i(pi_i, pi_bar_-i)`` of MATRL's
    Eq. 6 from the trust-region step's own trajectories, sampled under the current policies.

    The peers' actions are reweighted from their current policies to their meta-game mixtures by
    the truncated importance weight ``c = clip(prod_{j != i} pi_bar_j / pi_j, 1 - clip, 1 + clip)``
    (the paper's ``c_{-i}``, written as target over behaviour); the agent's own ratio
    ``exp(logp_own - logp_own_behaviour)`` carries the gradient. Advantages are returns-to-go less
    the leave-one-out mean over episodes. Shapes: ``[K, H]`` for the log-probs (the peers' summed
    over peers), ``rewards [K, H]`` the agent's own. Without truncation (a large ``clip``) the
    gradient is unbiased; with it, it is the gradient of the truncated expectation.
    """
    K, H = rewards.shape
    m = torch.ones(K, H, dtype=rewards.dtype) if mask is None else mask.to(rewards.dtype)
    G = returns_to_go((rewards * m).unsqueeze(-1), gamma).squeeze(-1)
    adv = (G - (G.sum(0, keepdim=True) - G) / (K - 1)) * m
    c = torch.exp(logp_peers_mixture - logp_peers_behaviour).clamp(1 - clip, 1 + clip).detach()
    own = torch.exp(logp_own - logp_own_behaviour.detach())
    disc = gamma ** torch.arange(H, dtype=rewards.dtype)
    return (disc * own * c * adv).sum(1).mean()
