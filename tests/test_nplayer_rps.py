"""n-player RPS (Meta-MAPG Figure 4b): personas sized from the game, peers drawn from the
whole population independently per seat, config validation, and a meta-gradient that carries
a peer-learning term for every peer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from league.config import ConfigError, load_config
from league.experiment import adapt, train_one
from league.meta import Critic, meta_objective, per_chain_gradients
from league.methods import make_method
from league.personas import make_personas, rps_personas
from league.setting import build_setting

CONFIGS = Path(__file__).parents[1] / "configs"
TINY = ["chain.trajectories=4", "chain.horizon=4", "chain.length=1", "agent.hidden=8",
        "train.meta_batch=2", "train.iterations=2", "train.validate_every=2", "agent.inner_lr=0.5",
        "agent.peer_lr=0.5"]


def _cfg(n: int, extra=()):
    return load_config(None, ["game.name=rps", f"game.n_players={n}", *TINY, *extra])


@pytest.mark.parametrize("n, states", [(2, 10), (3, 28), (4, 82)])
def test_personas_are_sized_from_the_game(n, states):
    ps = rps_personas(seed=0, n_per_type=20, sizes=(30, 6, 6), n_players=n)
    assert ps.train.shape == (30, states, 3) and ps.test.shape == (6, states, 3)
    dom = torch.tensor([ps.type_names.index(t) for t in ps.train_types])
    assert torch.equal(ps.train.argmax(-1), dom[:, None].expand(-1, states))
    setting = build_setting(_cfg(n))
    assert setting.game.n_states == setting.personas.train.shape[1] == states
    assert setting.meta_policy.obs_dim == states


def test_two_player_personas_unchanged_by_the_player_count():
    a, b = rps_personas(seed=3), rps_personas(seed=3, n_players=2)
    assert torch.equal(a.train, b.train) and a.test_types == b.test_types


def test_sampled_peers_are_independent_uniform_draws_per_seat():
    """Chi-square on the joint (seat 1, seat 2, seat 3) persona indices of a 4-player game:
    every seat uniform over the whole pool and the seats independent. A sampler that gave every
    peer of a chain the same persona puts all mass on the diagonal and fails."""
    setting = build_setting(_cfg(4))
    n_pool, count = 4, 64_000
    pool = torch.arange(n_pool, dtype=torch.float32).reshape(n_pool, 1, 1).expand(n_pool, 82, 3)
    peers = setting.sample_peers(pool, count, torch.Generator().manual_seed(0))
    assert peers.shape == (count, 3, 82, 3)
    idx = peers[:, :, 0, 0].long()  # [count, 3] pool index of every peer seat
    cells = (idx * torch.tensor([16, 4, 1])).sum(-1)
    observed = torch.bincount(cells, minlength=64).double()
    expected = count / 64
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 120.0, chi2  # 63 dof: P(chi2 > 120) < 1e-5 under independence


def test_two_player_sampling_draws_what_it_drew_before():
    setting = build_setting(_cfg(2))
    pool = setting.personas.train
    peers = setting.sample_peers(pool, 8, torch.Generator().manual_seed(5))
    idx = torch.randint(pool.shape[0], (8,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(peers[:, 0], pool[idx])


def test_evaluation_groups_keep_every_persona_at_seat_one_and_are_fixed():
    setting = build_setting(_cfg(3))
    test = setting.personas.test
    groups = setting.peer_groups(test)
    assert groups.shape == (test.shape[0], 2, 28, 3)
    assert torch.equal(groups[:, 0], test)
    assert torch.equal(groups, build_setting(_cfg(3)).peer_groups(test))  # same for every method/seed
    assert not torch.equal(groups[:, 1], test)  # the second peer is drawn, not copied


@pytest.mark.parametrize("override, message", [
    (["game.name=rps", "game.n_players=5"], r"game 'rps' takes 2\.\.4 players, got n_players=5"),
    (["game.name=rps", "game.n_players=1"], r"2\.\.4 players, got n_players=1"),
    (["game.name=ipd", "game.n_players=3"], r"game 'ipd' takes 2 players, got n_players=3"),
    (["game.name=rps", "population.out_of_distribution=true"], "IPD split"),
])
def test_config_rejects_games_that_do_not_fit(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


@pytest.mark.parametrize("name, n", [("rps3.toml", 3), ("rps4.toml", 4)])
def test_shipped_configs_follow_figure_4b(name, n):
    cfg = load_config(CONFIGS / name)
    assert cfg.game.n_players == n and set(cfg.methods) == {"meta-mapg", "meta-pg"}
    assert "Figure 4b" in cfg.paper and "budget" in cfg.paper


def test_unknown_population_is_a_clear_error():
    with pytest.raises(ValueError, match="no persona population for game 'chess'"):
        make_personas("chess", 0)


def _per_seat_terms(n: int, method_name: str):
    """Meta-gradient of a one-step chain and, from the same data and advantages, the gradient of
    every seat's own score term ``logp_m(tau_1; phi_1^m) * A`` w.r.t. the meta-agent's phi_0."""
    cfg = _cfg(n, ["chain.trajectories=16", "chain.horizon=6"])
    setting = build_setting(cfg)
    g = torch.Generator().manual_seed(1)
    method = make_method(method_name)
    policy = {k: v.requires_grad_(True) for k, v in setting.meta_policy.init_params(g).items()}
    lr = torch.full((1, 1), cfg.agent.inner_lr, requires_grad=True)
    critic = Critic(setting.value_net, setting.value_net.init_params(g), cfg.chain.gamma)
    peers = setting.peer_params(setting.sample_peers(setting.personas.train, 3, g))
    result = meta_objective(method, setting.evaluator(torch.Generator().manual_seed(2)), policy, lr, peers,
                            setting.peer_lrs(3), 1, critic, include_initial=False)
    data = result.steps[1].data
    adv, _ = critic.advantages_and_loss(data)
    terms = []
    for m in range(n):
        term = setting.evaluator(g).outer_objective(data, 0, {m}, adv)
        grads = torch.autograd.grad(term.sum(), [result.handles[k] for k in policy], retain_graph=True,
                                    allow_unused=True)
        terms.append(torch.cat([(torch.zeros_like(result.handles[k]) if gr is None else gr).flatten()
                                for k, gr in zip(policy, grads)]))
    total = per_chain_gradients(result)  # last: it frees the graph
    flat_total = torch.cat([total[k].flatten() for k in policy])
    return flat_total, terms


@pytest.mark.parametrize("n", [3, 4])
def test_meta_gradient_has_a_peer_learning_term_for_every_peer(n):
    mapg_total, mapg_terms = _per_seat_terms(n, "meta-mapg")
    pg_total, pg_terms = _per_seat_terms(n, "meta-pg")
    # the objective is linear in the live seats' score terms: own + every peer, nothing missing
    assert torch.allclose(mapg_total, sum(mapg_terms), atol=1e-6)
    assert torch.allclose(pg_total, pg_terms[0], atol=1e-6)
    scale = mapg_terms[0].norm()
    for m in range(1, n):  # every peer's learning depends on the meta-agent: a nonzero term each
        assert mapg_terms[m].norm() > 1e-3 * scale, (m, mapg_terms[m].norm(), scale)
        assert torch.equal(pg_terms[m], torch.zeros_like(pg_terms[m]))  # Meta-PG: peers learn blind
    # same data (the first-order inner step is the same), so the methods differ by the peer terms
    assert torch.allclose(mapg_terms[0], pg_terms[0], atol=1e-6)
    assert torch.allclose(mapg_total - pg_total, sum(mapg_terms[1:]), atol=1e-6)
    assert (mapg_total - pg_total).norm() > 1e-3 * scale


@pytest.mark.parametrize("n", [3, 4])
def test_tiny_meta_training_and_meta_test_run(n):
    cfg = _cfg(n)
    result = train_one(cfg, "meta-mapg", seed=0)
    steps = [m for m in result.metrics if "grad_norm" in m]
    assert len(steps) == 2 and all(np.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in steps)
    assert result.best.policy["in_w"].shape[-1] == 1 + 3**n
    setting = build_setting(cfg)
    out = adapt(setting, make_method("meta-mapg"), result.best.policy, result.best.lr,
                setting.personas.test[:5], torch.Generator().manual_seed(0))
    assert out.rewards.shape == (2, 5, n)
    assert np.allclose(out.rewards.sum(-1), 0.0, atol=1e-5)  # zero-sum, every seat counted
    assert np.all(np.abs(out.rewards) <= 1.0)
