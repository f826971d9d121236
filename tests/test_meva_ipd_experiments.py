"""The pieces the MeVa IPD experiments add: a naive best response to a held policy (against
closed-form IPD values), per-seat learning rates in ``optimise`` (against one hand-made
step), and the shipped-model loader (MeVa-U with gamma 0 is the naive learner)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from league.games.differentiable import ExactIPD
from league.meva.play import naive_best_response, optimise
from league.meva.rules import make_rule, simultaneous_gradient

ROOT = Path(__file__).resolve().parents[1]
BIG = 12.0  # logit of an (almost) deterministic choice
# own-perspective states [s0, CC, CD, DC, DD]; tit-for-tat copies the opponent's last move
TIT_FOR_TAT = torch.tensor([BIG, BIG, -BIG, BIG, -BIG], dtype=torch.float64)
ALL_C = torch.full((5,), BIG, dtype=torch.float64)
ALL_D = -ALL_C


def _respond(fixed: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """Normalised values [2] after a naive responder (from P(C) = 1/2 everywhere) trains
    against ``fixed`` with LOLA's exact-IPD step (lr 1 on the unnormalised value)."""
    game = ExactIPD()
    x = naive_best_response(game, fixed.unsqueeze(0), torch.zeros(1, 5, dtype=torch.float64), steps,
                            lr=1.0 / (1.0 - game.gamma))
    assert torch.equal(x[0, 0], fixed), "the held policy must not move"
    return game.values(x)[0]


def test_best_response_to_unconditional_cooperation_defects():
    """Against all-C the best response always defects: the responder gets DC = 0 each step and
    the held cooperator CD = -3 (normalised, LOLA's payoff)."""
    v = _respond(ALL_C)
    torch.testing.assert_close(v, torch.tensor([-3.0, 0.0], dtype=torch.float64), atol=2e-2, rtol=0)


def test_best_response_to_unconditional_defection_defects():
    """Against all-D the best response defects too: DD = -2 for both."""
    v = _respond(ALL_D)
    torch.testing.assert_close(v, torch.tensor([-2.0, -2.0], dtype=torch.float64), atol=2e-2, rtol=0)


def test_best_response_to_tit_for_tat_cooperates():
    """Against tit-for-tat at gamma 0.96 cooperating forever (-1) beats every deviation (always
    defecting: (1 - g) * 0 + g * (-2) = -1.92): the best response cooperates, as the paper's
    non-exploitability test expects of a retaliating agent."""
    v = _respond(TIT_FOR_TAT)
    torch.testing.assert_close(v, torch.tensor([-1.0, -1.0], dtype=torch.float64), atol=2e-2, rtol=0)


def test_optimise_takes_one_learning_rate_per_seat():
    """``lr [n, 1]``: seat i moves by lr_i times its own direction (one step, by hand)."""
    game = ExactIPD()
    x0 = torch.randn(4, 2, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lr = torch.tensor([[25.0], [2.0]], dtype=torch.float64)
    x1, _ = optimise(game, [make_rule("naive"), make_rule("naive")], x0, 1, lr)
    g = simultaneous_gradient(game, x0).detach()
    torch.testing.assert_close(x1[:, 0], x0[:, 0] + 25.0 * g[:, 0])
    torch.testing.assert_close(x1[:, 1], x0[:, 1] + 2.0 * g[:, 1])


def test_shipped_ipd_model_loads_and_gamma_zero_is_naive():
    """The committed MeVa IPD weights load with the config's shape; with gamma 0 the U
    follower is the naive learner, whatever the model says."""
    from league.meva.config import load_ipd_model

    model = load_ipd_model(ROOT / "configs/meva/ipd.toml", ROOT / "results/meva_ipd/meva_model_seed0.pt")
    assert not any(p.requires_grad for p in model.parameters())
    game = ExactIPD()
    x = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(1))
    meva = make_rule("meva", model=model, gamma=torch.tensor([0.0, 0.0]), formulation="U")
    torch.testing.assert_close(meva(game, x), make_rule("naive")(game, x))
    shaped = make_rule("meva", model=model, gamma=torch.tensor([0.9, 0.0]), formulation="U")(game, x)
    assert not torch.allclose(shaped[:, 0], make_rule("naive")(game, x)[:, 0]), "gamma 0.9 must use the model"


def _chain_points():
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(5, generator=gen, dtype=torch.float64)
    peers = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return start, torch.tensor(2.5, dtype=torch.float64), peers


@pytest.mark.parametrize("peer_learning", [True, False])
def test_chain_meta_value_gradient_matches_finite_differences(peer_learning):
    """The exact meta-gradient (Meta-MAPG: through both players' steps) against central
    differences of J itself; without the peer-learning term (Meta-PG) against differences
    of J with the peers' trajectory held as it was at the base point."""
    from league.meva.meta_start import chain_meta_value

    game = ExactIPD()
    start, lr, peers = _chain_points()
    length, peer_lr = 3, 25.0
    s, r = start.clone().requires_grad_(True), lr.clone().requires_grad_(True)
    g_start, g_lr = torch.autograd.grad(chain_meta_value(game, s, r, peers, length, peer_lr, peer_learning), [s, r])

    def j(start_: torch.Tensor, lr_: torch.Tensor) -> float:
        if peer_learning:
            return chain_meta_value(game, start_, lr_, peers, length, peer_lr).item()
        # Meta-PG's objective: the peer replays its base-point trajectory, only the meta-agent moves
        return _replayed_peer_value(game, start_, lr_, start, lr, peers, length, peer_lr)

    h = 1e-5
    fd_start = torch.tensor([(j(start + h * e, lr) - j(start - h * e, lr)) / (2 * h)
                             for e in torch.eye(5, dtype=torch.float64)], dtype=torch.float64)
    fd_lr = (j(start, lr + h) - j(start, lr - h)) / (2 * h)
    torch.testing.assert_close(g_start, fd_start, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(g_lr.item(), fd_lr, atol=1e-6, rtol=1e-4)


def _replayed_peer_value(game, start, lr, base_start, base_lr, peers, length, peer_lr) -> float:
    """J when the peers follow the trajectory they took against (base_start, base_lr) and the
    meta-agent (start, lr) ascends naively against those recorded peer policies."""
    from league.meva.rules import simultaneous_gradient

    base = torch.stack([base_start.expand_as(peers), peers], dim=-2)
    mine = start.expand_as(peers)
    values = [game.values(torch.stack([mine, base[:, 1]], dim=-2))[:, 0]]
    for _ in range(length):
        now = torch.stack([mine, base[:, 1]], dim=-2)
        mine = mine + lr * simultaneous_gradient(game, now).detach()[:, 0]
        lrs = torch.tensor([[float(base_lr)], [peer_lr]], dtype=base.dtype)
        base = base + lrs * simultaneous_gradient(game, base).detach()
        values.append(game.values(torch.stack([mine, base[:, 1]], dim=-2))[:, 0])
    return torch.stack(values).mean().item()


def test_meta_start_training_raises_the_meta_value():
    """A few Adam steps raise J above the value at the zero start (a sanity check of the
    sign: the meta-agent maximises)."""
    from league.meva.meta_start import MetaStartConfig, train_meta_start

    game = ExactIPD()
    _, _, hist = train_meta_start(game, MetaStartConfig(length=2, peers=16, iterations=15, outer_lr=0.2))
    assert hist[-1]["meta_value"] > hist[0]["meta_value"] + 0.05
