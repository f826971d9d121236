"""Action distributions, functional and batched: built per step from tensors that carry the
autograd graph back to the policy parameters, sampled through an explicit generator.

``log_prob`` and ``entropy`` reduce the event dimension (a Gaussian's action vector), so both
return the batch shape; the closed forms are tested against ``torch.distributions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from league.policies.base import sample_categorical

__all__ = ["Distribution", "Categorical", "DiagGaussian"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Distribution(Protocol):
    def log_prob(self, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self) -> torch.Tensor: ...

    def sample(self, generator: torch.Generator) -> torch.Tensor: ...


@dataclass
class Categorical:
    """Categorical over the last dimension of ``logits [*batch, A]``; actions are long ``[*batch]``."""

    logits: torch.Tensor

    @property
    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        logp = self.log_probs
        actions = actions.long().expand(logp.shape[:-1])
        return logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        logp = self.log_probs
        return -(logp.exp() * logp).sum(-1)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return sample_categorical(self.logits, generator)


@dataclass
class DiagGaussian:
    """Independent normals per action dimension: ``mean [*batch, D]``, ``log_std`` broadcast to it
    (a state-independent ``[B, 1, D]`` parameter, say); actions are float ``[*batch, D]``."""

    mean: torch.Tensor
    log_std: torch.Tensor

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z**2 - self.log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 + _HALF_LOG_2PI).expand_as(self.mean).sum(-1)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        mean = self.mean.detach()
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(self.log_std.detach()) * noise
