"""A league of real processes (referee + agent processes over gRPC on 127.0.0.1) runs
Algorithm 2 with the same numbers as the embedded meta-test of the same config and seed."""

import json
import subprocess
import sys

import numpy as np
import torch

from league.config import load_config
from league.experiment import adapt
from league.methods import make_method
from league.setting import build_setting
from tests.league_procs import ROOT, env

K, H, L, SEED, N = 8, 20, 2, 12345, 4


def test_league_meta_test_equals_embedded(tmp_path):
    cfg = load_config(ROOT / "configs" / "ipd_quick.toml",
                      [f"chain.trajectories={K}", f"chain.horizon={H}", f"chain.length={L}"])
    setting = build_setting(cfg)
    g = torch.Generator().manual_seed(7)
    policy = setting.meta_policy.init_params(g)
    lr = torch.tensor([[0.3, 0.2]])
    ckpt = tmp_path / "meta.pt"
    torch.save({"best": {"policy": policy, "lr": lr}}, ckpt)

    embedded = adapt(setting, make_method("meta-mapg"), policy, lr, setting.personas.test[:N],
                     torch.Generator().manual_seed(SEED))
    embedded_curve = embedded.rewards[:, :, 0]  # [L+1, N]

    agents = [f'[[agents]]\nid = "meta"\nrole = "meta"\npolicy = "lstm"\ninit = "checkpoint:{ckpt}"\n']
    agents += [f'[[agents]]\nid = "p{i}"\nrole = "persona"\ninit = "persona:test:{i}"\nlr = [1.0]\n' for i in range(N)]
    league_toml = tmp_path / "league.toml"
    league_toml.write_text(
        f'name = "equivalence"\npopulation_seed = 0\n[referee]\nenv = "ipd"\ntrajectories = {K}\nhorizon = {H}\n'
        f'gamma = 0.96\nchain_length = {L}\nrounds = {L + 1}\nchains = 1\nseed = {SEED}\n\n' + "\n".join(agents))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "services.cli", "up", str(league_toml), "--out", str(run), "--json"],
                          env={**env(), "LEAGUE_STATE": str(tmp_path / "up.json")}, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads(proc.stdout)
    assert summary["aborted_matches"] == 0
    chains = {c["persona"]: c["rewards"] for c in summary["chains"]}
    league_curve = np.array([chains[f"p{i}"] for i in range(N)]).T  # [L+1, N]
    assert league_curve.shape == embedded_curve.shape
    np.testing.assert_allclose(league_curve, embedded_curve, atol=1e-5, rtol=0)
    # the chain really adapted: the meta-agent's reward moved along the chain
    assert np.abs(np.diff(embedded_curve, axis=0)).max() > 1e-3
