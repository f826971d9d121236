"""n-player leagues of real processes (referee + agent processes over gRPC on 127.0.0.1):
a meta-agent with 2 (3-player RPS) and 3 (4-player RPS) persona processes runs Algorithm 2
with the same numbers as the embedded ``league.experiment.adapt`` of the same config and
seed; learners play rounds in random groups of n."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from league.config import load_config
from league.experiment import adapt
from league.methods import make_method
from league.setting import build_setting
from tests.league_procs import ROOT, env

pytestmark = pytest.mark.timeout(600)

K, H, L, SEED, N = 8, 20, 2, 12345, 2  # N meta-test chains


def _up(tmp_path, toml: str) -> dict:
    league_toml = tmp_path / "league.toml"
    league_toml.write_text(toml)
    proc = subprocess.run([sys.executable, "-m", "services.cli", "up", str(league_toml), "--out",
                           str(tmp_path / "run"), "--json", "--insecure"],
                          env={**env(), "LEAGUE_STATE": str(tmp_path / "up.json")}, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


@pytest.mark.parametrize("config, use_teams", [("rps3.toml", False),
                                               pytest.param("rps4.toml", True, marks=pytest.mark.slow)])
def test_n_player_meta_test_chains_equal_embedded(tmp_path, config, use_teams):
    cfg = load_config(ROOT / "configs" / config, [f"chain.trajectories={K}", f"chain.horizon={H}",
                                                   f"chain.length={L}", "agent.peer_lr=1.0", "agent.hidden=16"])
    setting = build_setting(cfg)
    n = setting.game.n_agents
    policy = setting.meta_policy.init_params(torch.Generator().manual_seed(7))
    lr = torch.tensor([[0.3, 0.2]])
    ckpt = tmp_path / "meta.pt"
    torch.save({"best": {"policy": policy, "lr": lr}}, ckpt)

    embedded = adapt(setting, make_method("meta-mapg"), policy, lr, setting.personas.test[:N],
                     torch.Generator().manual_seed(SEED))
    embedded_curve = embedded.rewards[:, :, 0]  # [L+1, N]

    # one persona process per peer seat of each chain, seated as the embedded run seats them
    groups = setting.peer_group_indices(N).tolist()  # [N, n-1] indices into personas.test
    agents = ['[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm"\nhidden = 16\n'
              f'init = "checkpoint:{ckpt}"\n']
    teams, personas = [], []
    for c, group in enumerate(groups):
        ids = [f"c{c}s{s + 1}" for s in range(n - 1)]
        teams.append(["meta", *ids])
        personas += [f'[[agents]]\nid = "{a}"\nrole = "persona"\ninit = "persona:test:{p}"\nlr = [1.0]\n'
                     for a, p in zip(ids, group)]
    if use_teams:  # personas listed in reverse: the teams, not league order, seat them
        agents += personas[::-1]
        teams_toml = "teams = " + json.dumps(teams) + "\n"
    else:  # the default grouping: consecutive personas in league order
        agents += personas
        teams_toml = ""
    summary = _up(tmp_path, f'name = "nseat"\npopulation_seed = 0\n{teams_toml}[referee]\nenv = "rps"\n'
                            f'n_players = {n}\ntrajectories = {K}\nhorizon = {H}\ngamma = {cfg.chain.gamma}\n'
                            f'chain_length = {L}\nrounds = {L + 1}\nchains = 1\nseed = {SEED}\n\n'
                            + "\n".join(agents))
    assert summary["aborted_matches"] == 0
    chains = {tuple(c["personas"]): c["rewards"] for c in summary["chains"]}
    assert all("persona" not in c for c in summary["chains"])  # n seats: personas only
    order = [tuple(t[1:]) for t in teams]
    assert sorted(chains) == sorted(order)
    league_curve = np.array([chains[g] for g in order]).T  # [L+1, N]
    np.testing.assert_allclose(league_curve, embedded_curve, atol=1e-5, rtol=0)
    assert np.abs(np.diff(embedded_curve, axis=0)).max() > 1e-3  # the chain really adapted


@pytest.mark.slow
def test_learners_play_rounds_in_random_groups_of_three(tmp_path):
    agents = "".join(f'\n[[agents]]\nid = "l{i}"\nrole = "learner"\ninit = "random:{i}"\nlr = [0.5]\n'
                     for i in range(6))
    summary = _up(tmp_path, f'name = "groups"\n[referee]\nenv = "rps"\nn_players = 3\ntrajectories = 4\n'
                            f'horizon = 10\nrounds = 4\nseed = 2\n{agents}')
    assert summary["aborted_matches"] == 0 and summary["rounds"] == 4
    members = {m["agent_id"]: m for m in summary["members"]}
    # 6 learners in 2 groups of 3 every round: every learner played every round and learned
    assert all(members[f"l{i}"]["matches"] == 4 and members[f"l{i}"]["episodes"] == 16 for i in range(6))
    assert all(members[f"l{i}"]["policy_version"] >= 3 for i in range(6))
