"""When is MATRL's meta-game Nash weight strictly inside (0, 1)? The closed forms of
docs/matrl.md ("When is a Nash weight fractional?") against the code's exact meta-games
(``league.matrl.matrix.trust_region_step`` + ``league.nash.metagame.exact_metagame``) and the
closed-form 2x2 solver, and against sampled rounds' importance-weighted meta-games."""

import torch

from league.games import make_game
from league.matrl.matrix import MatrixMATRLConfig, trust_region_step
from league.matrl.random_games import random_games
from league.matrl.sampled import SampledMATRLConfig, run_sampled_matrl
from league.nash.metagame import action_values, exact_metagame
from league.nash.solvers import equilibria_2x2, pure_equilibria
from league.policies.tabular import Tabular

torch.set_num_threads(1)


def _interior_exists(meta: torch.Tensor) -> torch.Tensor:
    """Whether each meta-game ``[B, 2, 2, 2]`` (scaled to max |entry| 1) has a fully mixed equilibrium."""
    scale = meta.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-300)
    return equilibria_2x2(meta / scale, eps=1e-9, interior_only=True)[1][:, 4]


def test_exact_2x2_metagames_have_an_interior_equilibrium_exactly_where_the_closed_form_says():
    """2 players, 2 actions, one IGA step of size ``lr`` that stays inside [0, 1]: with ``g_k``
    seat k's derivative of its value in its probability of action 0 and ``e_k`` its payoff's
    interaction coefficient, the meta-game has a fully mixed equilibrium iff
    ``lr e0 g1 / g0 < -1`` and ``lr e1 g0 / g1 < -1`` (so never where ``lr**2 e0 e1 <= 1``, never
    in cyclic games). Checked on 3 x 400 random games x 6 step sizes, each from a random profile;
    the closed form must predict some interior equilibria and some pure-only meta-games."""
    g = torch.Generator().manual_seed(0)
    games = torch.cat([random_games(c, 400, seed=j)[0] for j, c in enumerate(["coordination", "anti-coordination",
                                                                              "cyclic"])])
    cyclic = torch.arange(games.shape[0]) >= 800
    e = games[:, :, 0, 0] - games[:, :, 0, 1] - games[:, :, 1, 0] + games[:, :, 1, 1]  # [B, 2]
    predicted_any, found_any, checked = 0, 0, 0
    for lr in [0.1, 0.5, 1.0, 2.0, 4.0, 8.0]:
        p = torch.rand(games.shape[0], 2, generator=g, dtype=torch.float64)
        pols = [torch.stack([p[:, k], 1 - p[:, k]], -1) for k in range(2)]
        q = action_values(games, pols)
        grad = torch.stack([q[k][:, 0] - q[k][:, 1] for k in range(2)], -1)  # dV_k / dp_k
        cfg = MatrixMATRLConfig(lr=lr)
        meta = exact_metagame(games, pols, trust_region_step(games, pols, cfg))
        exists = _interior_exists(meta)
        inside = ((p + lr * grad > 1e-9) & (p + lr * grad < 1 - 1e-9)).all(-1)  # no clipping
        closed = (lr * e[:, 0] * grad[:, 1] / grad[:, 0] < -1) & (lr * e[:, 1] * grad[:, 0] / grad[:, 1] < -1)
        bound = lr**2 * e.prod(-1) > 1
        assert not (exists & ~bound).any(), f"lr {lr}: interior equilibria where lr**2 e0 e1 <= 1"
        assert not (exists & cyclic).any(), f"lr {lr}: an interior equilibrium in a cyclic game"
        mismatch = (exists != closed) & inside
        assert not mismatch.any(), (f"lr {lr}: {int(mismatch.sum())} of {int(inside.sum())} unclipped games disagree "
                                    f"with the closed form (first: game {int(mismatch.nonzero()[0, 0])})")
        predicted_any, found_any, checked = (predicted_any + int((closed & inside).sum()), found_any + int(exists.sum()),
                                             checked + int(inside.sum()))
    print(f"interior meta-game equilibria: {found_any} found, {predicted_any} predicted among {checked} unclipped")
    assert predicted_any > 20 and checked - predicted_any > 20


def test_sampled_two_player_rps_metagames_are_zero_sum_with_gaining_steps_so_they_have_a_pure_equilibrium():
    """Two-player RPS rounds at step sizes up to 100x the league test's: the importance-weighted
    meta-game is exactly zero-sum (``M_0 = -M_1``), each seat's own step gains (``M_k`` at the
    corner where it alone moves is >= 0), and so a pure equilibrium exists and no fully mixed one
    (a fully mixed equilibrium of a zero-sum 2x2 game needs one seat's own gain to be negative)."""
    game = make_game("rps", n_players=2)
    policy = Tabular(game.obs_dim, game.n_actions)
    metas = []
    for scale in [1.0, 10.0, 100.0]:
        cfg = SampledMATRLConfig(env="rps", n_players=2, trajectories=8, horizon=3, lr=[0.5 * scale, scale],
                                 trust_steps=2, kl_coef=0.5, br_lr=0.8)
        for seed in range(3):
            inits = [policy.init_params(torch.Generator().manual_seed(10 * seed + k)) for k in range(2)]
            _, history = run_sampled_matrl(game, [policy] * 2, [inits], cfg, torch.Generator().manual_seed(seed), 3)
            metas += [torch.tensor(h["metagame"], dtype=torch.float64).reshape(2, 2, 2) for h in history]
    meta = torch.stack(metas)
    assert (meta[:, 0] + meta[:, 1]).abs().max() < 1e-6
    assert (meta[:, 0, 1, 0] >= 0).all() and (meta[:, 1, 0, 1] >= 0).all()
    assert all(pure_equilibria(m) for m in meta)
    assert not _interior_exists(meta).any()
