"""Functional policies: parameters are passed in explicitly, so adapted parameters can stay
in the autograd graph of an inner-loop update. Each policy maps parameters and an
observation to an action distribution (:mod:`league.policies.distributions`).

``make_policy(name, observation_space, action_space, **kwargs)`` builds a registered policy
sized from an environment seat's gymnasium spaces and says clearly when they do not fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from league.policies.base import Params, Policy, sample_categorical
from league.policies.distributions import Categorical, DiagGaussian, Distribution
from league.policies.gaussian import LSTMGaussian, MLPGaussian
from league.policies.lstm import LSTMCategorical, LSTMValue
from league.policies.mlp import MLPCategorical
from league.policies.tabular import Tabular

__all__ = ["Params", "Policy", "sample_categorical", "LSTMCategorical", "LSTMValue", "Tabular", "LSTMGaussian",
           "MLPGaussian", "MLPCategorical", "Categorical", "DiagGaussian", "Distribution", "POLICIES", "make_policy"]

if TYPE_CHECKING:
    from gymnasium import Space
# gymnasium and league.envs are imported where a policy is made from spaces, not here: every
# agent process imports this package and should not pay for them.


def flat_dim(space: Space) -> int:
    from league.envs.base import flat_dim as _flat_dim

    return _flat_dim(space)


def _discrete(space: Space, name: str, what: str) -> int:
    import gymnasium

    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ValueError(f"policy {name!r} needs a Discrete {what} space, got {space}")
    return int(space.n)


def _box_vector(space: Space, name: str, what: str) -> int:
    import gymnasium

    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"policy {name!r} needs a 1-d Box {what} space, got {space}")
    return int(space.shape[0])


def _tabular(obs: Space, act: Space, dtype: torch.dtype) -> Tabular:
    return Tabular(_discrete(obs, "tabular", "observation"), _discrete(act, "tabular", "action"), dtype=dtype)


def _lstm_categorical(obs: Space, act: Space, dtype: torch.dtype, hidden: int = 64) -> LSTMCategorical:
    return LSTMCategorical(obs_dim=flat_dim(obs), out_dim=_discrete(act, "lstm_categorical", "action"),
                           hidden=hidden, dtype=dtype)


def _lstm_gaussian(obs: Space, act: Space, dtype: torch.dtype, hidden: int = 64,
                   init_log_std: float = 0.0) -> LSTMGaussian:
    return LSTMGaussian(obs_dim=flat_dim(obs), out_dim=_box_vector(act, "lstm_gaussian", "action"), hidden=hidden,
                        dtype=dtype, init_log_std=init_log_std)


def _mlp_gaussian(obs: Space, act: Space, dtype: torch.dtype, hidden: int = 64, layers: int = 2,
                  init_log_std: float = 0.0, activation: str = "relu", mean_scale: float = 1.0) -> MLPGaussian:
    return MLPGaussian(obs_dim=flat_dim(obs), action_dim=_box_vector(act, "mlp_gaussian", "action"), hidden=hidden,
                       layers=layers, init_log_std=init_log_std, dtype=dtype, activation=activation,
                       mean_scale=mean_scale)


def _mlp_categorical(obs: Space, act: Space, dtype: torch.dtype, hidden: int = 128, layers: int = 2,
                     activation: str = "leaky_relu") -> MLPCategorical:
    return MLPCategorical(obs_dim=flat_dim(obs), n_actions=_discrete(act, "mlp_categorical", "action"), hidden=hidden,
                          layers=layers, activation=activation, dtype=dtype)


#: Policy classes by name: ``(observation_space, action_space, dtype, **kwargs) -> Policy``.
POLICIES: dict[str, Callable[..., Policy]] = {
    "tabular": _tabular,
    "lstm_categorical": _lstm_categorical,
    "lstm_gaussian": _lstm_gaussian,
    "mlp_gaussian": _mlp_gaussian,
    "mlp_categorical": _mlp_categorical,
}


def make_policy(name: str, observation_space: Space, action_space: Space, dtype: torch.dtype = torch.float32,
                **kwargs: Any) -> Policy:
    """A registered policy for one seat of an environment (observations are read flattened,
    see ``league.envs.flat_obs``)."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy class {name!r}; known: {', '.join(sorted(POLICIES))}") from None
    return factory(observation_space, action_space, dtype, **kwargs)
