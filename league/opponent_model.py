"""Decentralized meta-training with opponent modeling (Meta-MAPG appendix D.1, Algorithms 3
and 4): the meta-agent never reads its peers' parameters. At every chain step it fits each
peer's policy to the peer's observed (state, action) pairs by maximum likelihood
(:func:`fit_policy`, Algorithm 4), replicates the peer's inner update by DiCE on the
inferred parameters (:class:`InferredPeerStep`, line 10), and the peer-learning term of the
meta-gradient flows through those replicated updates.

:class:`InferredPeers` is the evaluator of such a chain. The chain (``league.chain.unroll``)
holds the meta-agent's parameters and, for each peer seat, the *predicted* inferred
parameters ``hat phi_l`` (random at ``l = 0``, then the replicated update of the previous
step's fit). ``observe`` plays the step with the meta-agent against the *true* peers (the
environment's side: the peers act and learn on their own, first-order, from the same
episodes), fits ``hat phi_l`` warm-started from the prediction, and scores the episodes
with the prediction (so the meta-objective keeps its graph to ``phi_0``). The fit and the
true peers' parameters enter no gradient; the true ones are used only to play and to
measure the model's error from outside (:attr:`InferredPeers.errors`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

import torch

from league.evaluators import SampledEvaluator
from league.policies.base import Params, Policy
from league.rollout import Batch, Episodes, score, seat_logp
from league.updates import PolicyGradient, ascend, make_update_rule, seat_step

#: How the real peers of an opponent-modeling chain learn from each step's episodes.
_REAL_PEER_RULE = make_update_rule("pg")


@dataclass
class OpponentModelConfig:
    """Algorithm 4: a maximum-likelihood fit of a peer's policy to its observed actions."""

    max_iter: int = 100
    """Most L-BFGS iterations of one fit."""
    tolerance: float = 1e-6
    """Converged when the largest absolute gradient of the mean negative log-likelihood
    (per chain, per parameter) is below this."""
    init_scale: float = 0.1
    """Standard deviation of the random initial logits ``hat phi_0`` (Algorithm 3, line 5)."""


@dataclass
class FitInfo:
    """How a fit ended: L-BFGS iterations used, the largest absolute gradient left, and whether
    that is below the tolerance."""

    iterations: int
    max_grad: float
    converged: bool


def fit_policy(policy: Policy, init: Params, episodes: Episodes, seat: int,
               cfg: OpponentModelConfig) -> tuple[Params, FitInfo]:
    """Maximum-likelihood parameters of seat ``seat``'s policy (of class ``policy``) from its
    actions in ``episodes`` (``[B, K, H]``, one fit per chain), starting from ``init``.
    Minimises the per-chain mean negative log-likelihood with L-BFGS until every gradient
    component is below ``cfg.tolerance`` (or ``cfg.max_iter``). States never visited keep
    their initial parameters (the likelihood does not depend on them)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}

    def nll() -> torch.Tensor:
        return -seat_logp(policy, leaves, episodes, seat).mean(dim=(1, 2)).sum()  # sum over chains of means

    opt = torch.optim.LBFGS(list(leaves.values()), lr=1.0, max_iter=cfg.max_iter, tolerance_grad=cfg.tolerance,
                            tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    opt.step(closure)
    loss = nll()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    max_grad = max(float(g.abs().max()) for g in grads)
    iterations = int(opt.state[next(iter(leaves.values()))].get("n_iter", 0))
    return {k: v.detach() for k, v in leaves.items()}, FitInfo(iterations, max_grad, max_grad < cfg.tolerance)


def random_init(policy: Policy, n_chains: int, generator: torch.Generator, scale: float) -> Params:
    """Random initial inferred parameters: the policy's own initialisation plus Gaussian noise."""
    base = policy.init_params(generator)
    return {k: v.expand(n_chains, *v.shape[1:]) + scale * torch.randn(n_chains, *v.shape[1:], generator=generator,
                                                                       dtype=v.dtype, device=generator.device)
            for k, v in base.items()}


@dataclass
class InferredBatch(Batch):
    """A chain step's batch scored with the predicted inferred peers, plus the fits."""

    fitted: list[Params | None] = field(default_factory=list)
    """Per seat: the maximum-likelihood parameters fitted to this step's actions (``None`` for
    the meta-agent)."""


@dataclass(frozen=True)
class InferredPeerStep(PolicyGradient):
    """The replica of a peer's inner update on its inferred parameters (Algorithm 3, line 10):
    a DiCE policy-gradient step from the step's fit ``hat phi_l`` on the same episodes, with
    every seat live, so the result is a differentiable function of the meta-agent's
    ``phi_l``. Needs an :class:`InferredBatch`."""

    def update(self, evaluator: Any, params: Sequence[Params], data: Any, k: int,
               lrs: Sequence[torch.Tensor], step: int, create_graph: bool) -> Params:
        if not isinstance(data, InferredBatch):
            raise TypeError("an inferred peer's update needs the opponent-modeling evaluator (InferredPeers)")
        fitted = {name: v.detach().requires_grad_(True) for name, v in data.fitted[k].items()}
        logp = list(data.logp)
        logp[k] = seat_logp(evaluator.policies[k], fitted, data, k)
        rescored = dataclasses.replace(data, logp=logp)
        objective = evaluator.inner_objective(rescored, k, range(evaluator.n_agents), plain=self.plain)
        return ascend(fitted, objective, lrs[k][:, step], create_graph)


@dataclass
class InferredPeers:
    """The evaluator of an opponent-modeling chain (see the module docstring). ``true_peers``
    and ``true_lrs`` (per peer seat, ``[B, ...]`` and ``[B, L]``) are the environment's side:
    they play and learn but never reach the meta-agent's gradient. After the chain,
    ``errors[l]`` holds, per peer seat, the mean total-variation distance between the true
    and the fitted (``fit``) or predicted (``predicted``) action probabilities over the states
    visited at step ``l``."""

    base: SampledEvaluator
    true_peers: list[Params]
    true_lrs: list[torch.Tensor]
    cfg: OpponentModelConfig
    errors: list[dict[str, list[float]]] = field(default_factory=list)
    _step: int = 0

    @property
    def n_agents(self) -> int:
        return self.base.n_agents

    @property
    def policies(self) -> Sequence[Policy]:
        return self.base.policies

    @property
    def gamma(self) -> float:
        return self.base.gamma

    def observe(self, params: Sequence[Params]) -> InferredBatch:
        b, n = self.base, self.base.n_agents
        true = [{k: v.detach() for k, v in params[0].items()}, *self.true_peers]
        episodes = b.play(true)  # in a league, the referee plays the peers' own published parameters
        batch = score(b.policies, params, episodes)
        fitted: list[Params | None] = [None]
        errors: dict[str, list[float]] = {"fit": [], "predicted": []}
        visited = episodes.obs.sum(dim=(1, 2)) > 0  # [B, S]
        for m in range(1, n):
            fit = self.infer(b.policies[m], params[m], episodes, m)
            fitted.append(fit)
            truth = torch.softmax(self.true_peers[m - 1]["logits"], -1)
            for key, guess in (("fit", fit), ("predicted", params[m])):
                tv = 0.5 * (torch.softmax(guess["logits"].detach(), -1) - truth).abs().sum(-1)  # [B, S]
                errors[key].append(float(tv[visited].mean()))
        self.errors.append(errors)
        # the true peers learn on their own from the same episodes (first-order, their own rule)
        self.true_peers = [seat_step(_REAL_PEER_RULE, b, b.policies[m], self.true_peers[m - 1], episodes, m,
                                     self.true_lrs[m - 1][:, min(self._step, self.true_lrs[m - 1].shape[1] - 1)])
                           for m in range(1, n)]
        self._step += 1
        return InferredBatch(**{f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}, fitted=fitted)

    def infer(self, policy: Policy, predicted: Params, episodes: Episodes, seat: int) -> Params:
        """Algorithm 4 for seat ``seat``, warm-started from the predicted parameters."""
        return fit_policy(policy, predicted, episodes, seat, self.cfg)[0]

    def inner_objective(self, data: Batch, k: int, live: Collection[int], plain: bool = False) -> torch.Tensor:
        return self.base.inner_objective(data, k, live, plain)

    def outer_objective(self, data: Batch, k: int, live: Collection[int],
                        advantages: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.outer_objective(data, k, live, advantages)

    def mean_rewards(self, data: Batch) -> torch.Tensor:
        return self.base.mean_rewards(data)
