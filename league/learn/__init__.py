"""Learning utilities: returns, DiCE, baselines, GAE and PCGrad."""

from .baseline import baseline_features, linear_feature_baseline
from .dice import dice_objective, magic_box
from .gae import gae_advantages
from .pcgrad import pcgrad, pcgrad_mean
from .returns import discount_weights, discounted_returns

__all__ = [
    "baseline_features",
    "dice_objective",
    "discount_weights",
    "discounted_returns",
    "gae_advantages",
    "linear_feature_baseline",
    "magic_box",
    "pcgrad",
    "pcgrad_mean",
]
