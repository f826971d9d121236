"""The table sampler of iterated matrix games (``league.rollout._play_tables``): the inverse
CDF against its exact intervals, the law of whole episodes against exact enumeration
(chi-square), and the played data against stepping the environment with the sampled actions."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy import stats

from league.envs.matrix import MatrixGameEnv
from league.games import ipd, rps
from league.policies import LSTMCategorical, Tabular
from league.policies.base import categorical_cdf, sample_categorical, sample_inverse_cdf
from league.rollout import play, sample_episodes, score

pytestmark = pytest.mark.timeout(120)


def test_inverse_cdf_gives_each_action_exactly_its_interval() -> None:
    """On a grid of ``N`` evenly spaced uniforms, action ``i`` is returned for a fraction of
    the grid within ``1 / N`` of ``p_i`` (the interval ``[cdf_{i-1}, cdf_i)``), zero-probability
    actions (first, middle, last) never, and never an index ``>= A``."""
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5], [0.3, 0.0, 0.7], [1.0, 0.0, 0.0],
                          [0.1, 0.9 - 1e-7, 1e-7], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    cdf = categorical_cdf(torch.log(probs))
    assert torch.equal(cdf[:, -1], torch.ones(len(probs), dtype=torch.float64))
    N = 100_000
    u = (torch.arange(N, dtype=torch.float64) / N).reshape(N, 1).expand(N, len(probs))
    actions = sample_inverse_cdf(cdf.expand(N, -1, -1), u)  # [N, rows]
    for r, p in enumerate(probs):
        freq = torch.bincount(actions[:, r], minlength=3).double() / N
        assert freq.shape == (3,), f"row {r}: an action index >= A was returned"
        assert torch.all((freq - p).abs() <= 1.0 / N + 1e-12), f"row {r}: {freq.tolist()} vs {p.tolist()}"
        assert torch.all(freq[p == 0] == 0), f"row {r}: a zero-probability action was sampled"


def _episode_law(game, tables: list[torch.Tensor], horizon: int) -> dict[tuple, float]:
    """Exact probability of every sequence of joint actions of ``horizon`` rounds, by
    enumeration: each round, seat ``k`` plays action ``a`` with ``tables[k][state, a]``."""
    A, n = game.n_actions, game.n_agents
    law = {}
    for seq in itertools.product(itertools.product(range(A), repeat=n), repeat=horizon):
        prob, state = 1.0, 0
        for joint in seq:
            for k, a in enumerate(joint):
                prob *= float(tables[k][state, a])
            state = 1 + sum(a * A ** (n - 1 - k) for k, a in enumerate(joint))
        law[seq] = prob
    return law


@pytest.mark.parametrize("game_fn,horizon", [(ipd, 3), (lambda: rps(2), 2)])
def test_episodes_follow_the_policies_law(game_fn, horizon: int) -> None:
    """Chi-square of the sampled episodes (whole joint-action sequences) against their exact
    law, with two chains whose tables differ (one chain's seat 1 shares a table, ``B == 1``)."""
    game = game_fn()
    S, A = game.n_states, game.n_actions
    g = torch.Generator().manual_seed(0)
    logits0 = torch.randn(2, S, A, generator=g) * 1.5
    logits1 = torch.randn(1, S, A, generator=g) * 1.5
    logits1[0, 0, 0] = -float("inf")  # a zero-probability action in s0
    K = 40_000
    traj = play(MatrixGameEnv(game, horizon), [Tabular(S, A)] * 2, [{"logits": logits0}, {"logits": logits1}],
                2, K, torch.Generator().manual_seed(1))
    joint = torch.stack(traj.actions, dim=-1)  # [B, K, H, n]
    assert not bool((joint[:, :, 0, 1] == 0).any())  # never the zero-probability action
    for b in range(2):
        law = _episode_law(game, [torch.softmax(logits0[b], -1), torch.softmax(logits1[0], -1)], horizon)
        keys = list(law)
        index = {key: i for i, key in enumerate(keys)}
        counts = torch.zeros(len(keys))
        for ep in joint[b].tolist():
            counts[index[tuple(tuple(step) for step in ep)]] += 1
        expected = torch.tensor([law[key] for key in keys]) * K
        keep = expected > 0
        assert counts[~keep].sum() == 0  # nothing of probability zero
        # pool the rare sequences so every cell expects >= 5
        rare = expected < 5
        obs = torch.cat([counts[keep & ~rare], counts[keep & rare].sum().reshape(1)])
        exp = torch.cat([expected[keep & ~rare], expected[keep & rare].sum().reshape(1)])
        obs, exp = (obs, exp) if exp[-1] > 0 else (obs[:-1], exp[:-1])
        p_value = stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue
        print(f"chain {b}: {len(obs)} cells, chi-square p = {p_value:.3g}")
        assert p_value > 1e-3, f"chain {b}: sampled episodes do not follow the policies (p = {p_value:.3g})"


def test_played_data_equal_stepping_the_environment_with_the_sampled_actions() -> None:
    """Observations, rewards and dones of the table sampler are exactly what the environment
    returns when it is stepped with the sampled actions (3-player RPS, chains and seats differ)."""
    game = rps(3)
    S, A, H, B, K = game.n_states, game.n_actions, 7, 3, 5
    g = torch.Generator().manual_seed(2)
    params = [{"logits": torch.randn(B, S, A, generator=g)} for _ in range(3)]
    env = MatrixGameEnv(game, H)
    traj = play(env, [Tabular(S, A)] * 3, params, B, K, torch.Generator().manual_seed(3))
    assert all(o is traj.obs[0] for o in traj.obs)  # one shared state
    ts = env.reset((B, K))
    for t in range(H):
        assert torch.equal(traj.obs[0][:, :, t], torch.eye(S)[ts.obs[0]])
        ts = env.step([a[:, :, t] for a in traj.actions])
        assert torch.equal(traj.rewards[:, :, t], ts.rewards) and torch.equal(traj.dones[:, :, t], ts.dones)


def test_each_step_is_the_inverse_cdf_of_its_uniform() -> None:
    """The loop's fused step (one weighted count over all seats) against the definition:
    from the same uniforms ``u[H, B, K, n]`` (the generator's first draw), seat ``k`` plays
    ``sample_inverse_cdf(cdf_k[state], u[t, ..., k])`` and the state becomes the joint action
    + 1, for 3 seats, 3 actions, two chains and a shared (``B == 1``) table."""
    game = rps(3)
    S, A, H, B, K = game.n_states, game.n_actions, 6, 2, 9
    g = torch.Generator().manual_seed(4)
    logits = [torch.randn(B, S, A, generator=g), torch.randn(1, S, A, generator=g), torch.randn(B, S, A, generator=g)]
    traj = play(MatrixGameEnv(game, H), [Tabular(S, A)] * 3, [{"logits": x} for x in logits], B, K,
                torch.Generator().manual_seed(6))
    u = torch.rand((H, B, K, 3, 1), generator=torch.Generator().manual_seed(6), dtype=torch.float64)[..., 0]
    state = torch.zeros(B, K, dtype=torch.long)
    chain = torch.arange(B).reshape(B, 1).expand(B, K)
    for t in range(H):
        want = [sample_inverse_cdf(categorical_cdf(x).expand(B, S, A)[chain, state], u[t, :, :, k])
                for k, x in enumerate(logits)]
        for k in range(3):
            assert torch.equal(traj.actions[k][:, :, t], want[k]), f"step {t}, seat {k}"
        state = 1 + want[0] * 9 + want[1] * 3 + want[2]


def test_scores_of_sampled_episodes_are_each_seats_table_entries() -> None:
    """``score`` on the sampler's episodes: seat ``k``'s log-probability at every step is
    ``log softmax(table_k)[state, a_k]`` read off by hand, and its gradient is the count of
    visits minus the expected count, a closed form per (state, action)."""
    game = ipd()
    S, A, B, K, H = game.n_states, game.n_actions, 2, 16, 10
    g = torch.Generator().manual_seed(7)
    params = [{"logits": torch.randn(B, S, A, generator=g).requires_grad_(True)} for _ in range(2)]
    episodes = sample_episodes(game, [Tabular(S, A)] * 2, params, B, K, H, torch.Generator().manual_seed(8))
    batch = score([Tabular(S, A)] * 2, params, episodes)
    state = episodes.obs.argmax(-1)  # [B, K, H]
    chain = torch.arange(B).reshape(B, 1, 1).expand(B, K, H)
    for k in range(2):
        logp = torch.log_softmax(params[k]["logits"].detach(), -1)
        want = logp[chain, state, episodes.actions[..., k]]
        torch.testing.assert_close(batch.logp[k], want, rtol=0, atol=1e-6)
        grad, = torch.autograd.grad(batch.logp[k].sum(), params[k]["logits"])
        visits = torch.zeros(B, S, A)
        visits.index_put_((chain, state, episodes.actions[..., k]), torch.ones(B, K, H), accumulate=True)
        expected = visits.sum(-1, keepdim=True) * logp.exp()
        torch.testing.assert_close(grad, visits - expected, rtol=1e-5, atol=1e-5)


def test_non_table_policies_still_step() -> None:
    """A seat that is not a table (an LSTM) sends the whole game through the stepping loop,
    with the Gumbel-max stream it always had: the first round's actions are
    ``sample_categorical`` of each seat's first logits, seat after seat, from the generator."""
    game = ipd()
    lstm = LSTMCategorical(obs_dim=game.n_states, out_dim=2, hidden=4)
    table = Tabular(game.n_states, 2)
    params = [lstm.init_params(torch.Generator().manual_seed(0)),
              {"logits": torch.randn(1, game.n_states, 2, generator=torch.Generator().manual_seed(1))}]
    episodes = sample_episodes(game, [lstm, table], params, 1, 64, 6, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    s0 = torch.eye(game.n_states)[torch.zeros(1, 64, dtype=torch.long)]
    out0, _ = lstm.step(params[0], s0, lstm.initial_state(params[0], (1, 64)))
    assert torch.equal(episodes.actions[:, :, 0, 0], sample_categorical(out0.expand(1, 64, 2), g))
    out1, _ = table.step(params[1], s0, None)
    assert torch.equal(episodes.actions[:, :, 0, 1], sample_categorical(out1, g))
