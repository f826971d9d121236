"""Appendix C of the Meta-MAPG paper: in the bilinear zero-sum game the meta-updates of
Meta-MAPG (eq. 19) and Meta-PG (eq. 20), produced by the general chain / meta-objective /
learner machinery, equal the closed forms."""

import pytest
import torch

from league.evaluators import ValueEvaluator
from league.games.zero_sum import bilinear_zero_sum_values
from league.learner import MetaLearner, OuterConfig
from league.meta import meta_objective
from league.methods import make_method

ALPHA, BETA = 0.75, 0.01


def _values(params):
    v_i, v_j = bilinear_zero_sum_values(params[0]["phi"][:, 0], params[1]["phi"][:, 0])
    return torch.stack([v_i, v_j], dim=-1)


def _meta_update(method_name: str, phi_i: float, phi_j: float) -> float:
    evaluator = ValueEvaluator(n_agents=2, value_fn=_values)
    lr = torch.full((1, 1), ALPHA, dtype=torch.float64)
    learner = MetaLearner({"phi": torch.tensor([[phi_i]], dtype=torch.float64)}, lr, learn_lr=False,
                          critic=None, cfg=OuterConfig(optimizer="sgd", actor_lr=BETA, pcgrad=False,
                                                       grad_clip=None), generator=torch.Generator())
    peer = {"phi": torch.tensor([[phi_j]], dtype=torch.float64)}
    result = meta_objective(make_method(method_name), evaluator, learner.policy, learner.lr, [peer],
                            [lr.clone()], length=1, include_initial=False)
    learner.step(result)
    return float(learner.policy["phi"].detach())


@pytest.mark.parametrize("seed", range(5))
def test_meta_mapg_and_meta_pg_match_closed_forms(seed):
    g = torch.Generator().manual_seed(seed)
    phi_i, phi_j = (torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1).tolist()
    phi1_i = phi_i + ALPHA * phi_j  # eq. 17
    phi1_j = phi_j - ALPHA * phi_i
    assert _meta_update("meta-mapg", phi_i, phi_j) == pytest.approx(
        phi_i + BETA * (phi1_j - ALPHA * phi1_i), abs=1e-9)  # eq. 19
    assert _meta_update("meta-pg", phi_i, phi_j) == pytest.approx(phi_i + BETA * phi1_j, abs=1e-9)  # eq. 20
    # The ablation keeps only the peer-learning path: d/dphi_i [phi1_i phi1_j] through phi1_j.
    assert _meta_update("no-own-learning", phi_i, phi_j) == pytest.approx(phi_i + BETA * (-ALPHA * phi1_i), abs=1e-9)


def test_meta_mapg_differs_from_meta_pg():
    """The peer-learning term is not zero in this game (a broken path would pass eq. 20 only)."""
    assert abs(_meta_update("meta-mapg", 0.3, -0.6) - _meta_update("meta-pg", 0.3, -0.6)) > 1e-3
