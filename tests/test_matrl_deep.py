"""Deep MATRL rounds (league/matrl/deep.py): the meta-game built from the PPO step's own episodes
against the exact normal-form meta-game (3 players), verified Nash weights, the variants'
outputs, the best response's truncated weights against a closed form, and a 4-agent grid world."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from league.envs import make_env
from league.envs.base import flat_dim
from league.matrl.deep import DeepMATRLConfig, best_response_loss, deep_round
from league.matrl.ppo import Critic, PPOConfig
from league.nash.metagame import exact_metagame
from league.nash.solvers import is_epsilon_nash
from league.policies import Tabular, make_policy
from league.rollout import Episodes, play_episodes, score

torch.set_num_threads(1)
F64 = torch.float64


def _setup(env, policy_name, seed, **kwargs):
    g = torch.Generator().manual_seed(seed)
    policies = [make_policy(policy_name, env.observation_spaces[k], env.action_spaces[k], **kwargs)
                for k in range(env.n_agents)]
    params = [p.init_params(g) for p in policies]
    return policies, params, g


def test_three_player_metagame_from_the_ppo_episodes_is_the_exact_one_and_its_nash_verifies():
    """One-shot 3-player RPS, tabular policies from random logits, 25 000 episodes: every entry
    of the importance-weighted meta-game is the exact meta-game of the current and PPO-predicted
    policies within 4.5 standard errors; the Nash weights verify on it; ``matrl_no_br``
    interpolates the parameters by them."""
    env = make_env("rps", n_players=3, horizon=1)
    policies, _, g = _setup(env, "tabular", 0)
    params = [{"logits": 0.7 * torch.randn(1, *policies[0].init_params(g)["logits"].shape[1:], generator=g)}
              for _ in range(3)]
    cfg = DeepMATRLConfig(variant="matrl_no_br", ppo=PPOConfig(epochs=5, lr=0.05, hidden=8),
                          solvers=["pure", "lyapunov"])
    critics = [Critic(flat_dim(env.observation_spaces[k]), cfg.ppo, g) for k in range(3)]
    episodes = play_episodes(env, policies, params, 1, 25_000, g)
    out = deep_round(policies, params, critics, episodes, cfg, [g] * env.n_agents)
    s0 = int(episodes.obs[0, 0, 0].argmax())
    cur = [torch.softmax(p["logits"][0, s0].double(), -1) for p in params]
    pred = [torch.softmax(p["logits"][0, s0].double(), -1) for p in out.predicted]
    assert max(float((c - p).abs().max()) for c, p in zip(cur, pred)) > 0.02  # the PPO step moved the policies
    game = make_env("rps", n_players=3, horizon=1).game
    exact = exact_metagame(game.payoff.double(), cur, pred)
    z = (out.metagame.double() - exact) / out.stderr.double().clamp_min(1e-12)
    print("max |z|", float(z.abs().max()), "meta", out.metagame.flatten().tolist())
    assert float(z.abs().max()) < 4.5
    assert out.solver and out.metagame.shape == (3, 2, 2, 2)
    profile = [torch.stack([1 - w, w]).double() for w in out.weights]
    assert bool(is_epsilon_nash(out.metagame.double(), profile, 1e-5))
    for k in range(3):
        w = out.weights[k]
        assert torch.allclose(out.params[k]["logits"], (1 - w) * params[k]["logits"] + w * out.predicted[k]["logits"])


def test_best_response_weights_are_truncated_importance_weights():
    """At the behaviour policy the best-response gradient is ``-mean_k c_k A_k grad log pi(a_k)``
    with ``c_k = clip(pi_bar_-i / pi_-i, 1 - 0.1, 1 + 0.1)``: here 2 -> 1.1, 0.5 -> 0.9, 1.05 -> 1.05."""
    policy = Tabular(1, 3, dtype=F64)
    logits = torch.tensor([0.2, -0.4, 0.1], dtype=F64)
    params = {"logits": logits.reshape(1, 1, 3).clone().requires_grad_(True)}
    actions, adv = [0, 2, 1], torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    ep = Episodes(obs=torch.ones(1, 3, 1, 1, dtype=F64), actions=torch.tensor(actions).reshape(1, 3, 1, 1),
                  rewards=torch.zeros(1, 3, 1, 1, dtype=F64))
    logp = score([policy], [params], ep).logp[0]
    peer = torch.log(torch.tensor([2.0, 0.5, 1.05], dtype=F64)).reshape(1, 3, 1)
    loss = best_response_loss(logp, logp.detach(), peer, adv.reshape(1, 3, 1), torch.ones(1, 3, 1, dtype=F64),
                              ratio_clip=0.1, peer_clip=0.1)
    grad = torch.autograd.grad(loss, params["logits"])[0].flatten()
    p = torch.softmax(logits, -1)
    c = torch.tensor([1.1, 0.9, 1.05], dtype=F64)
    expected = -sum(c[k] * adv[k] * (torch.nn.functional.one_hot(torch.tensor(a), 3).to(F64) - p)
                    for k, a in enumerate(actions)) / 3
    print("gradient", grad.tolist(), "closed form", expected.tolist())
    assert torch.allclose(grad, expected, atol=1e-12)


@pytest.mark.parametrize("variant", ["il", "il_pp", "matrl_no_br", "matrl"])
def test_every_variant_runs_a_round_on_four_agent_switch(variant):
    """Switch with 4 agents (16-entry meta-game per seat, real termination): IL's next policies
    are exactly PPO's predictions; IL-PP responds to the peers' predictions (w = 1, no
    meta-game); MATRL's weights are a verified Nash equilibrium of its meta-game; the best
    responses differ from the predictions."""
    env = make_env("switch", n_players=4)
    policies, params, g = _setup(env, "mlp_categorical", 1, hidden=16)
    cfg = DeepMATRLConfig(variant=variant, env="switch", n_players=4, episodes=6,
                          ppo=PPOConfig(epochs=2, hidden=16, critic_epochs=2))
    critics = [Critic(flat_dim(env.observation_spaces[k]), cfg.ppo, g) for k in range(4)]
    episodes = play_episodes(env, policies, params, 1, cfg.episodes, g)
    out = deep_round(policies, params, critics, episodes, cfg, [g] * env.n_agents)
    assert len(out.params) == 4
    if variant == "il":
        assert all(all(torch.equal(a[n], b[n]) for n in a) for a, b in zip(out.params, out.predicted))
        assert out.weights is None and out.metagame is None
    if variant == "il_pp":
        assert torch.equal(out.weights, torch.ones(4)) and out.metagame is None
    if variant in ("matrl", "matrl_no_br"):
        assert out.metagame.shape == (4, 2, 2, 2, 2)
        if out.solver:
            profile = [torch.stack([1 - w, w]).double() for w in out.weights]
            assert bool(is_epsilon_nash(out.metagame.double(), profile, 1e-5))
        else:
            assert torch.equal(out.weights, torch.zeros(4))
    if variant in ("il_pp", "matrl"):
        assert any(not torch.equal(a["out_w"], b["out_w"]) for a, b in zip(out.params, out.predicted))


def test_the_shipped_grid_world_configs_build():
    """configs/matrl/gridworlds.toml and switch.toml (scripts/matrl_gridworlds.py) hold a valid
    base DeepMATRLConfig, known variants and registered environments."""
    from league.config import build, read_table
    from league.envs import ENVIRONMENTS
    from league.matrl.deep import VARIANTS, DeepMATRLConfig

    root = Path(__file__).resolve().parents[1] / "configs" / "matrl"
    for name in ("gridworlds.toml", "switch.toml"):
        table = read_table(root / name, [])
        build(DeepMATRLConfig, table.get("base", {}), "base")
        assert set(table["variants"]) <= set(VARIANTS) and table["seeds"]
        for task in table["task"]:
            assert task["env"] in ENVIRONMENTS and set(task.get("variants", [])) <= set(VARIANTS)
