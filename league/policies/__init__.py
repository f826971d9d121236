"""Functional policies: parameters are passed in explicitly, so adapted parameters can stay
in the autograd graph of an inner-loop update."""

from league.policies.base import Params, Policy, sample_categorical
from league.policies.lstm import LSTMCategorical, LSTMValue
from league.policies.tabular import Tabular

__all__ = ["Params", "Policy", "sample_categorical", "LSTMCategorical", "LSTMValue", "Tabular"]
