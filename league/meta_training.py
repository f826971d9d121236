"""The Meta-MAPG family's meta-training state for one (method, seed), built in one place.

Embedded training (:func:`league.experiment.train_one`) and the coordinator's ``meta-mapg``
mode both build a :class:`MetaTraining` and call :meth:`MetaTraining.iterate`; only the
evaluator differs (sampled in-process, or played by the league's referee). Building it here
once is what keeps the two paths drawing the same random numbers in the same order, so an
embedded run and a league run of the same config and seed give the same numbers::

    mt = MetaTraining.build(cfg, "meta-mapg", seed)
    for it in range(cfg.train.iterations):
        stats = mt.iterate(mt.evaluator, mt.sample_peers())
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from league.config import ExperimentConfig
from league.evaluators import Evaluator, SampledEvaluator
from league.learner import MetaLearner
from league.meta import Critic, meta_objective
from league.opponent_model import InferredPeers, random_init
from league.methods import Method, make_method
from league.policies.base import Params
from league.setting import Setting, build_setting


@dataclass
class PeerDraw:
    """The peers of one meta-batch: per peer seat, tabular parameters ``[B, S, A]``, and
    per peer seat its learning rates ``[B, L]``."""

    params: list[Params]
    lrs: list[torch.Tensor]


@dataclass
class MetaTraining:
    """Setting, method, meta-learner (initial policy, inner learning rates, critic) and the
    random stream of one meta-training run."""

    cfg: ExperimentConfig
    method_name: str
    setting: Setting
    method: Method
    learner: MetaLearner
    evaluator: SampledEvaluator
    generator: torch.Generator

    @classmethod
    def build(cls, cfg: ExperimentConfig, method_name: str, seed: int) -> "MetaTraining":
        """Draw the initial policy, then the critic (for chain methods), from the seed's stream."""
        setting = build_setting(cfg)
        method = make_method(method_name, cfg.agent.lookahead, cfg.train.estimator)
        g = torch.Generator().manual_seed(seed)
        policy = setting.meta_policy.init_params(g)
        critic = None
        if method.outer == "chain":
            critic = Critic(setting.value_net, setting.value_net.init_params(g), cfg.chain.gamma,
                            cfg.train.gae_lambda)
        learner = MetaLearner(policy, setting.meta_lrs(), method.learn_lr, critic, cfg.train.outer, g)
        return cls(cfg, method_name, setting, method, learner, setting.evaluator(g), g)

    def sample_peers(self) -> PeerDraw:
        """A meta-batch of training personas, every peer seat drawn from the whole population."""
        B = self.cfg.train.meta_batch
        probs = self.setting.sample_peers(self.setting.personas.train, B, self.generator)
        return PeerDraw(self.setting.peer_params(probs), self.setting.peer_lrs(B))

    def iterate(self, evaluator: Evaluator, peers: PeerDraw) -> dict[str, Any]:
        """One meta-update (Algorithm 1's inner body) on chains that ``evaluator`` plays.
        Returns the learner's statistics plus ``meta_reward`` (the meta-agent's mean reward over
        the chain) and ``seconds``."""
        t0 = time.perf_counter()
        c = self.cfg
        replica, om = peers.params, None
        if self.method.peer_access == "inferred":  # opponent modeling: the replica never sees the peers
            om = InferredPeers(evaluator, peers.params, peers.lrs, c.train.opponent_model)  # type: ignore[arg-type]
            B, scale = len(peers.lrs[0]), c.train.opponent_model.init_scale
            replica = [random_init(self.setting.peer_policy, B, self.generator, scale) for _ in peers.params]
            evaluator = om
        result = meta_objective(self.method, evaluator, self.learner.policy, self.learner.lr, replica,
                                peers.lrs, c.chain.length, self.learner.critic, c.train.entropy_weight,
                                c.train.include_initial, c.train.per_step)
        meta_reward = float(torch.stack([evaluator.mean_rewards(s.data)[:, 0] for s in result.steps]).mean())
        stats = self.learner.step(result)
        del result
        if om is not None:  # the model's error along the chain, measured against the true peers
            for l, errors in enumerate(om.errors):
                stats[f"om_fit_error_step{l}"] = sum(errors["fit"]) / len(errors["fit"])
                stats[f"om_predicted_error_step{l}"] = sum(errors["predicted"]) / len(errors["predicted"])
        return {"meta_reward": meta_reward, **stats, "seconds": time.perf_counter() - t0}
