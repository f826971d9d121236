"""The Meta-MAPG meta-gradient estimators against the exact meta-value gradient of chains
small enough to enumerate (``league.exact_meta``): 2 and 3 seats, H = 1 or 2, K = 1 or 2,
L = 1..3, tabular seats, every inner step a plain function of its data in the target.

- ``score`` is unbiased: its exact expectation equals the exact gradient to float64
  precision, and its sampled mean lies within 4 standard errors of it.
- ``dice`` converges to its own target, which differs from the exact gradient by a bias
  that shrinks faster than the inner learning rate.
- ``authors`` converges to its own target, which is biased.
"""

import pytest
import torch

from league.exact_meta import ChainSpec
from league.games.iterated import ipd, matrix_game
from league.methods import make_method

F64 = torch.float64


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([grads["logits"].flatten(), grads["lr"].flatten()])


def _flat_samples(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([grads["logits"].flatten(1), grads["lr"].flatten(1)], dim=1)


def _three_player_game():
    g = torch.Generator().manual_seed(3)
    return matrix_game(torch.rand(3, 2, 2, 2, generator=g, dtype=F64) * 2 - 1, "random3")


def _spec(seats: int, horizon: int, episodes: int, length: int, lr: float, include_initial: bool = True,
          seed: int = 0) -> ChainSpec:
    game = ipd(F64) if seats == 2 else _three_player_game()
    g = torch.Generator().manual_seed(seed)
    shape = (game.n_states, game.n_actions)
    meta = torch.randn(shape, generator=g, dtype=F64) * 0.5
    peers = [torch.randn(shape, generator=g, dtype=F64) * 0.5 for _ in range(seats - 1)]
    return ChainSpec(game, meta, torch.full((length,), lr, dtype=F64), peers, peer_lr=lr, length=length,
                     n_episodes=episodes, horizon=horizon, gamma=0.96, include_initial=include_initial)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _max_z(samples: torch.Tensor, target: torch.Tensor) -> float:
    """Largest |mean - target| / SE over components; a zero-variance component must match."""
    mean = samples.mean(0)
    se = samples.std(0) / samples.shape[0] ** 0.5
    fixed = se == 0
    assert torch.allclose(mean[fixed], target[fixed], atol=1e-12)
    return float(((mean - target).abs()[~fixed] / se[~fixed]).max())


CASES = [  # seats, H, K, L
    (2, 1, 1, 1), (2, 1, 1, 3), (2, 2, 1, 2), (2, 1, 2, 2), (3, 1, 1, 2), (3, 2, 1, 1),
]


@pytest.mark.parametrize("seats,horizon,episodes,length", CASES)
@pytest.mark.parametrize("lr", [0.8, 0.2])
@pytest.mark.parametrize("include_initial", [True, False])
def test_score_expectation_is_the_exact_gradient(seats, horizon, episodes, length, lr, include_initial):
    spec = _spec(seats, horizon, episodes, length, lr, include_initial)
    exact = _flat(spec.exact_gradient())
    expected = _flat(spec.estimator_expectation(make_method("meta-mapg", estimator="score")))
    assert exact.norm() > 1e-3
    assert _rel(expected, exact) < 1e-10


@pytest.mark.parametrize("seats,horizon,episodes,length,lr,baseline", [
    (2, 1, 1, 2, 0.8, True), (2, 2, 1, 2, 0.4, False), (2, 1, 1, 3, 0.2, True), (3, 1, 1, 2, 0.8, True),
])
def test_score_samples_match_the_exact_gradient(seats, horizon, episodes, length, lr, baseline):
    spec = _spec(seats, horizon, episodes, length, lr)
    exact = _flat(spec.exact_gradient())
    samples = _flat_samples(spec.sampled_gradients(make_method("meta-mapg", estimator="score"), 40_000, seed=11,
                                                   chain_baseline=baseline))
    assert _max_z(samples, exact) < 4.0
    se = samples.std(0) / samples.shape[0] ** 0.5
    assert float((exact.abs() / se.clamp_min(1e-30)).max()) > 8  # the test can tell the gradient from zero


@pytest.mark.parametrize("estimator", ["dice", "authors"])
@pytest.mark.parametrize("seats,horizon,length", [(2, 2, 2), (3, 1, 2)])
def test_dice_and_authors_samples_match_their_own_targets(estimator, seats, horizon, length):
    spec = _spec(seats, horizon, 1, length, 0.8)
    method = make_method("meta-mapg", estimator=estimator)
    target = _flat(spec.estimator_expectation(method))
    samples = _flat_samples(spec.sampled_gradients(method, 40_000, seed=5))
    assert _max_z(samples, target) < 4.0


@pytest.mark.parametrize("seats,horizon,episodes,length", [(2, 1, 1, 1), (2, 2, 1, 2), (2, 1, 2, 2), (3, 1, 1, 2)])
def test_dice_bias_vanishes_faster_than_the_learning_rate(seats, horizon, episodes, length):
    """DiCE's target differs from the exact gradient (second-order terms in the inner
    learning rate): dividing the rate by 8 divides the relative bias by more than 4."""
    method = make_method("meta-mapg", estimator="dice")
    bias = {}
    for lr in (0.8, 0.1):
        spec = _spec(seats, horizon, episodes, length, lr)
        bias[lr] = _rel(_flat(spec.estimator_expectation(method)), _flat(spec.exact_gradient()))
    assert bias[0.8] > 1e-3  # a real bias, not rounding
    assert bias[0.1] < bias[0.8] / 4


def test_authors_form_is_biased_even_for_small_learning_rates():
    """The authors' form pairs the advantages of tau_l with earlier log-probabilities per
    time step and keeps DiCE inner steps: against the exact gradient it is off by a share
    of the learning-induced part that does not shrink with the inner learning rate."""
    method = make_method("meta-mapg", estimator="authors")
    for lr in (0.8, 0.1):
        spec = _spec(2, 2, 1, 2, lr, include_initial=False)
        still = _spec(2, 2, 1, 2, 0.0, include_initial=False)
        exact, frozen = _flat(spec.exact_gradient()), _flat(still.exact_gradient())
        authors = _flat(spec.estimator_expectation(method))
        learning = (exact - frozen)[:-2].norm()  # the part of the policy gradient due to learning
        assert float((authors - exact)[:-2].norm() / learning) > 0.1


def test_method_definitions_in_each_form():
    """Meta-PG equals Meta-MAPG in the score form (with plain inner steps a peer's update
    does not take the meta-agent's parameters as input, so the peer-learning term is zero
    and the meta-agent's own scores carry its influence on its peers); in the DiCE forms
    it cuts the peer-learning path and differs. No-own-learning differs in every form."""
    spec = _spec(2, 2, 1, 2, 0.5)
    grads = {(m, e): _flat(spec.estimator_expectation(make_method(m, estimator=e)))
             for m in ("meta-mapg", "meta-pg", "no-own-learning") for e in ("dice", "authors", "score")}
    assert torch.allclose(grads["meta-pg", "score"], grads["meta-mapg", "score"], rtol=0, atol=1e-14)
    for e in ("dice", "authors"):
        assert _rel(grads["meta-pg", e], grads["meta-mapg", e]) > 0.01
    for e in ("dice", "authors", "score"):
        assert _rel(grads["no-own-learning", e], grads["meta-mapg", e]) > 0.01


def test_estimator_is_a_config_choice():
    from league.config import ConfigError, load_config

    assert load_config(None, ["train.estimator=score"]).train.estimator == "score"
    with pytest.raises(ConfigError, match="unknown train.estimator"):
        load_config(None, ["train.estimator=magic"])
    with pytest.raises(ValueError, match="unknown estimator"):
        make_method("meta-mapg", estimator="magic")
