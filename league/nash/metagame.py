"""Normal-form values and the MATRL policy-space meta-game, generic in the number of players.

Payoff tensors follow :class:`league.games.IteratedMatrixGame`: ``payoff[*batch, k, a_0, ...,
a_{n-1}]`` is seat ``k``'s payoff for the joint action ``(a_0, ..., a_{n-1})``. A mixed
profile is a list of ``n`` per-seat probability tensors ``[*batch, A_k]``.

The meta-game of MATRL gives each seat two pure strategies, ``0 = current policy`` and
``1 = predicted policy``; entry ``M[*batch, i, c_0, ..., c_{n-1}]`` is seat ``i``'s gain
``V_i(corner c) - V_i(all current)``, the expected advantage gain of the paper's Eq. 3 (for a
one-state game the two coincide exactly). Corners are enumerated as one tensor dimension of
size ``2**n`` (seat 0 the most significant bit), so no code depends on ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["normal_form_value", "action_values", "corner_choices", "build_metagame", "exact_metagame"]

def _check_profile(payoff: torch.Tensor, probs: Sequence[torch.Tensor]) -> int:
    n = len(probs)
    if n < 1:
        raise ValueError("need at least one seat")
    if payoff.dim() < n + 1 or payoff.shape[-n - 1] != n:
        raise ValueError(f"payoff must be [*batch, n={n}, A_0..A_{n - 1}], got {tuple(payoff.shape)}")
    for k, p in enumerate(probs):
        if p.shape[-1] != payoff.shape[-n + k]:
            raise ValueError(f"probs[{k}] has {p.shape[-1]} actions, payoff axis has {payoff.shape[-n + k]}")
    return n


def _contract_tail(t: torch.Tensor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract the last ``len(probs)`` axes of ``t`` with ``probs`` (in order), last axis first,
    keeping one axis before them; batch dimensions of ``t`` and ``probs`` broadcast. Pairwise
    contractions keep every intermediate no larger than ``t`` (a many-operand einsum without a
    path optimiser builds far larger ones)."""
    for i in range(len(probs) - 1, -1, -1):
        p = probs[i]
        t = (t * p.reshape(*p.shape[:-1], *([1] * (i + 1)), p.shape[-1])).sum(-1)
    return t


def normal_form_value(payoff: torch.Tensor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every seat's expected payoff ``V_k(sigma)`` under the mixed profile ``probs``:
    ``[*batch, n]``. Batch dimensions broadcast; differentiable in ``payoff`` and ``probs``."""
    _check_profile(payoff, probs)
    return _contract_tail(payoff, probs)


def action_values(payoff: torch.Tensor, probs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``Q_k(a) = V_k(a, sigma_-k)`` for every seat ``k`` and own action ``a``: a list of
    ``[*batch, A_k]``. Since ``V_k`` is linear in ``sigma_k``, ``Q_k`` is also its exact
    gradient with respect to ``sigma_k``."""
    n = _check_profile(payoff, probs)
    out = []
    for k in range(n):
        own_first = payoff.select(-n - 1, k).movedim(-n + k, -n)  # [*batch, A_k, A_others...]
        out.append(_contract_tail(own_first, [p for j, p in enumerate(probs) if j != k]))
    return out


def corner_choices(n: int, device: torch.device | None = None) -> torch.Tensor:
    """``[2**n, n]`` bool: row ``r`` says which seats play their predicted policy at corner ``r``
    (the binary digits of ``r``, seat 0 most significant)."""
    rows = torch.arange(2**n, device=device)
    bits = torch.arange(n - 1, -1, -1, device=device)
    return ((rows.unsqueeze(-1) >> bits) & 1).bool()


def build_metagame(
    value_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    current: Sequence[torch.Tensor],
    predicted: Sequence[torch.Tensor],
) -> torch.Tensor:
    """The ``[*batch, n, 2, ..., 2]`` meta-game of gains ``V_i(corner) - V_i(current)``.

    ``current[k]`` and ``predicted[k]`` are seat ``k``'s two policies (any shape with the
    batch dimensions first, the same for both). ``value_fn(policies)`` returns every seat's
    value ``[..., n]`` for a joint policy whose tensors carry one extra leading dimension (the
    ``2**n`` corners); it is called once for all corners.
    """
    n = len(current)
    if len(predicted) != n:
        raise ValueError(f"{n} current policies but {len(predicted)} predicted ones")
    choose = corner_choices(n, current[0].device)
    policies = []
    for k, (cur, pred) in enumerate(zip(current, predicted)):
        if cur.shape != pred.shape:
            raise ValueError(f"seat {k}: current {tuple(cur.shape)} and predicted {tuple(pred.shape)} differ")
        mask = choose[:, k].reshape(-1, *([1] * cur.dim()))
        policies.append(torch.where(mask, pred.unsqueeze(0), cur.unsqueeze(0)))
    values = value_fn(policies)  # [2**n, *batch, n]
    gains = values - values[:1]
    return gains.movedim(0, -1).reshape(*gains.shape[1:], *([2] * n))


def exact_metagame(payoff: torch.Tensor, current: Sequence[torch.Tensor],
                   predicted: Sequence[torch.Tensor]) -> torch.Tensor:
    """The meta-game of :func:`build_metagame` for a normal-form game ``payoff``, computed
    without enumerating corners: ``V`` is multilinear, so contracting every action axis ``k`` of
    the payoff tensor with the ``[2, A_k]`` basis ``(current_k, predicted_k)`` gives every
    corner's value at once (``n * A**n * 2`` multiplications for the first axis, fewer after)."""
    n = _check_profile(payoff, current)
    if len(predicted) != n:
        raise ValueError(f"{n} current policies but {len(predicted)} predicted ones")
    t = payoff
    for k in range(n - 1, -1, -1):
        basis = torch.stack([current[k], predicted[k]], -2)  # [*batch, 2, A_k]
        t = t.movedim(-(n - k), -1)  # [*b, n, A_0..A_{k-1}, c_{k+1}..c_{n-1}, A_k]
        t = (t.unsqueeze(-2) * basis.reshape(*basis.shape[:-2], *([1] * n), 2, basis.shape[-1])).sum(-1)
        t = t.movedim(-1, -(n - k))  # [*b, n, A_0..A_{k-1}, c_k..c_{n-1}]
    flat = t.reshape(*t.shape[: t.dim() - n], 2**n)
    return (flat - flat[..., :1]).reshape(t.shape)
