"""league.nash: normal-form values and the MATRL meta-game against brute-force enumeration, and
every Nash solver against known equilibria, each result checked by the verifier."""

from __future__ import annotations

import itertools

import pytest
import torch

from league.nash import (
    NASH_SOLVERS,
    action_values,
    build_metagame,
    corner_choices,
    equilibria_2x2,
    exact_metagame,
    is_epsilon_nash,
    nash_regret,
    normal_form_value,
    select_equilibrium,
    solve_2x2_batched,
)
from league.nash.solvers import pure_equilibria

F64 = torch.float64
MATCHING_PENNIES = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]]], dtype=F64)
# prisoner's dilemma, action 0 = cooperate, 1 = defect: the only equilibrium is (D, D)
PRISONERS_DILEMMA = torch.tensor([[[3.0, 0.0], [5.0, 1.0]], [[3.0, 5.0], [0.0, 1.0]]], dtype=F64)


def jordan_game() -> torch.Tensor:
    """Jordan's 3-player matching pennies: seat 0 wants to match seat 1, seat 1 to match seat 2,
    seat 2 to mismatch seat 0 (payoff 1 or -1). Its unique equilibrium: everyone mixes 1/2."""
    pay = torch.zeros(3, 2, 2, 2, dtype=F64)
    for a in itertools.product(range(2), repeat=3):
        pay[(0, *a)] = 1.0 if a[0] == a[1] else -1.0
        pay[(1, *a)] = 1.0 if a[1] == a[2] else -1.0
        pay[(2, *a)] = 1.0 if a[2] != a[0] else -1.0
    return pay


def brute_value(payoff: torch.Tensor, probs: list[torch.Tensor]) -> list[float]:
    """Every seat's expected payoff by an explicit sum over joint actions (one game)."""
    n = len(probs)
    total = [0.0] * n
    for joint in itertools.product(*(range(p.shape[-1]) for p in probs)):
        weight = 1.0
        for k, a in enumerate(joint):
            weight *= float(probs[k][a])
        for i in range(n):
            total[i] += weight * float(payoff[(i, *joint)])
    return total


def random_profile(sizes, g):
    return [torch.softmax(torch.randn(a, generator=g, dtype=F64) * 2, -1) for a in sizes]


@pytest.mark.parametrize("sizes", [(2, 3), (3, 2, 2), (2, 2, 3, 2)])
def test_normal_form_value_and_action_values_match_enumeration(sizes):
    g = torch.Generator().manual_seed(len(sizes))
    n = len(sizes)
    payoff = torch.randn(n, *sizes, generator=g, dtype=F64)
    probs = random_profile(sizes, g)
    assert torch.allclose(normal_form_value(payoff, probs), torch.tensor(brute_value(payoff, probs), dtype=F64))
    q = action_values(payoff, probs)
    for k in range(n):
        for a in range(sizes[k]):
            pure = [p if j != k else torch.nn.functional.one_hot(torch.tensor(a), sizes[k]).to(F64)
                    for j, p in enumerate(probs)]
            assert q[k][a].item() == pytest.approx(brute_value(payoff, pure)[k], abs=1e-12)


def test_values_batch_and_broadcast():
    g = torch.Generator().manual_seed(0)
    payoff = torch.randn(5, 2, 2, 3, generator=g, dtype=F64)
    probs = [torch.softmax(torch.randn(5, 2, generator=g, dtype=F64), -1), torch.softmax(torch.randn(1, 3, generator=g, dtype=F64), -1)]
    v = normal_form_value(payoff, probs)
    assert v.shape == (5, 2)
    for b in range(5):
        assert torch.allclose(v[b], torch.tensor(brute_value(payoff[b], [probs[0][b], probs[1][0]]), dtype=F64))


def test_corner_choices_enumerate_every_profile_seat0_most_significant():
    c = corner_choices(3)
    assert c.tolist() == [list(map(bool, bits)) for bits in itertools.product([0, 1], repeat=3)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_exact_metagame_entries_match_brute_force(n):
    """Every one of the n * 2**n entries is V_i(corner) - V_i(all current), computed here by
    explicit enumeration of joint actions, with 3 actions per seat."""
    g = torch.Generator().manual_seed(10 + n)
    sizes = (3,) * n
    payoff = torch.randn(n, *sizes, generator=g, dtype=F64)
    current, predicted = random_profile(sizes, g), random_profile(sizes, g)
    meta = exact_metagame(payoff, current, predicted)
    assert meta.shape == (n, *([2] * n))
    base = brute_value(payoff, current)
    for corner in itertools.product([0, 1], repeat=n):
        joint = [predicted[k] if c else current[k] for k, c in enumerate(corner)]
        want = [v - b for v, b in zip(brute_value(payoff, joint), base)]
        got = [meta[(i, *corner)].item() for i in range(n)]
        assert got == pytest.approx(want, abs=1e-12), f"corner {corner}"
    assert torch.all(meta[(slice(None), *([0] * n))] == 0)


def test_exact_metagame_equals_the_generic_corner_enumeration():
    g = torch.Generator().manual_seed(4)
    for n in (2, 3, 5):
        payoff = torch.randn(n, *([3] * n), generator=g, dtype=F64)
        cur, pred = random_profile((3,) * n, g), random_profile((3,) * n, g)
        generic = build_metagame(lambda pols: normal_form_value(payoff, pols), cur, pred)
        assert torch.allclose(exact_metagame(payoff, cur, pred), generic, atol=1e-12)


def test_exact_metagame_is_batched():
    g = torch.Generator().manual_seed(3)
    payoff = torch.randn(4, 2, 2, 2, generator=g, dtype=F64)
    cur = [torch.softmax(torch.randn(4, 2, generator=g, dtype=F64), -1) for _ in range(2)]
    pred = [torch.softmax(torch.randn(4, 2, generator=g, dtype=F64), -1) for _ in range(2)]
    meta = exact_metagame(payoff, cur, pred)
    for b in range(4):
        assert torch.allclose(meta[b], exact_metagame(payoff[b], [c[b] for c in cur], [p[b] for p in pred]))


def test_regret_and_epsilon_nash():
    half = [torch.tensor([0.5, 0.5], dtype=F64)] * 2
    assert torch.allclose(nash_regret(MATCHING_PENNIES, half), torch.zeros(2, dtype=F64))
    off = [torch.tensor([0.9, 0.1], dtype=F64), torch.tensor([0.2, 0.8], dtype=F64)]
    # seat 0: Q = (0.2 - 0.8, -0.2 + 0.8) = (-0.6, 0.6); V = 0.9 * -0.6 + 0.1 * 0.6 = -0.48; regret 1.08
    assert nash_regret(MATCHING_PENNIES, off)[0].item() == pytest.approx(1.08)
    assert not bool(is_epsilon_nash(MATCHING_PENNIES, off, 1e-6))
    near = [torch.tensor([0.501, 0.499], dtype=F64)] * 2
    assert not bool(is_epsilon_nash(MATCHING_PENNIES, near, 1e-6))
    assert bool(is_epsilon_nash(MATCHING_PENNIES, near, 1e-2))
    assert not bool(is_epsilon_nash(MATCHING_PENNIES, [torch.tensor([0.7, 0.7], dtype=F64)] * 2, 1.0)), "not a distribution"


TWO_PLAYER = ["closed-form-2x2", "support-enumeration", "nashpy", "lyapunov"]


@pytest.mark.parametrize("name", TWO_PLAYER)
def test_two_player_solvers_on_matching_pennies(name):
    prof = NASH_SOLVERS[name](MATCHING_PENNIES)
    assert prof is not None and bool(is_epsilon_nash(MATCHING_PENNIES, prof, 1e-8))
    for p in prof:
        assert p.tolist() == pytest.approx([0.5, 0.5], abs=1e-6)


@pytest.mark.parametrize("name", TWO_PLAYER + ["pure"])
def test_solvers_on_prisoners_dilemma_find_defect_defect(name):
    prof = NASH_SOLVERS[name](PRISONERS_DILEMMA)
    assert prof is not None and bool(is_epsilon_nash(PRISONERS_DILEMMA, prof, 1e-8))
    for p in prof:
        assert p.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_pure_solver_finds_no_equilibrium_in_matching_pennies_and_selection_falls_back():
    assert pure_equilibria(MATCHING_PENNIES) == []
    assert NASH_SOLVERS["pure"](MATCHING_PENNIES) is None
    assert select_equilibrium(MATCHING_PENNIES, ["pure"]) == (None, None)
    prof, name = select_equilibrium(MATCHING_PENNIES, ["pure", "closed-form-2x2"])
    assert name == "closed-form-2x2" and prof[0].tolist() == pytest.approx([0.5, 0.5])


def test_selection_rejects_a_solver_whose_profile_does_not_verify(monkeypatch):
    monkeypatch.setitem(NASH_SOLVERS, "bad", lambda p: [torch.tensor([1.0, 0.0], dtype=F64)] * 2)
    assert select_equilibrium(MATCHING_PENNIES, ["bad"]) == (None, None)


def test_three_player_jordan_game_lyapunov_finds_the_mixed_equilibrium():
    pay = jordan_game()
    assert pure_equilibria(pay) == []
    prof, name = select_equilibrium(pay, ["pure", "lyapunov"], eps=1e-6)
    assert name == "lyapunov"
    for p in prof:
        assert p.tolist() == pytest.approx([0.5, 0.5], abs=1e-4)


def test_three_player_pure_equilibrium_found_by_pure_and_lyapunov():
    """A 3-player coordination game with a known pure equilibrium: everyone gets 1 when all play
    action 1, 0.5 when all play 0, 0 otherwise: both unanimous profiles are equilibria and
    all-ones has the highest welfare."""
    pay = torch.zeros(3, 2, 2, 2, dtype=F64)
    pay[:, 1, 1, 1] = 1.0
    pay[:, 0, 0, 0] = 0.5
    assert sorted(pure_equilibria(pay)) == [(0, 0, 0), (1, 1, 1)]
    best = NASH_SOLVERS["pure"](pay)
    assert [p.tolist() for p in best] == [[0.0, 1.0]] * 3
    prof = NASH_SOLVERS["lyapunov"](pay)
    assert bool(is_epsilon_nash(pay, prof, 1e-6))


def test_our_support_enumeration_agrees_with_nashpy_on_random_games():
    g = torch.Generator().manual_seed(5)
    for trial in range(12):
        m, n = (2, 2) if trial < 4 else (3, 3) if trial < 8 else (3, 4)
        pay = torch.randn(2, m, n, generator=g, dtype=F64)
        ours, theirs = NASH_SOLVERS["support-enumeration"](pay), NASH_SOLVERS["nashpy"](pay)
        assert ours is not None and theirs is not None
        assert bool(is_epsilon_nash(pay, ours, 1e-9))
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-9), f"trial {trial}"


def test_batched_2x2_solver_counts_match_nashpy_and_picks_a_verified_welfare_best():
    import nashpy

    g = torch.Generator().manual_seed(7)
    games = torch.randn(64, 2, 2, 2, generator=g, dtype=F64)
    cands, ok = equilibria_2x2(games, interior_only=True)
    w, found = solve_2x2_batched(games)
    assert bool(found.all())
    for b in range(games.shape[0]):
        eqs = list(nashpy.Game(games[b, 0].numpy(), games[b, 1].numpy()).support_enumeration())
        assert int(ok[b].sum()) == len(eqs)
        prof = [torch.stack([1 - w[b, k], w[b, k]]) for k in range(2)]
        assert bool(is_epsilon_nash(games[b], prof, 1e-9))
        best = max(sum(normal_form_value(games[b], [torch.as_tensor(x), torch.as_tensor(y)]).tolist()) for x, y in eqs)
        assert normal_form_value(games[b], prof).sum().item() == pytest.approx(best, abs=1e-9)


def test_batched_2x2_solver_reports_not_found_with_zero_weights():
    # an impossible tolerance: nothing verifies, so w = 0 (keep the current policy)
    w, found = solve_2x2_batched(MATCHING_PENNIES.unsqueeze(0), eps=-1.0)
    assert not bool(found[0]) and w.tolist() == [[0.0, 0.0]]
