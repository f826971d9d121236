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
from league.devices import seeded_generator, to_cpu, to_device
from league.estimators import get_estimator
from league.evaluators import Evaluator, SampledEvaluator
from league.learner import MetaLearner
from league.meta import Critic, MetaObjective, meta_objective
from league.opponent_model import InferredPeers, random_init
from league.methods import Method, make_method
from league.policies.base import Params
from league.setting import Setting, build_setting


@dataclass
class PeerDraw:
    """The peers of one meta-batch: per peer seat, its policy's parameters ``{name: [B, ...]}``
    (tabular logits ``[B, S, A]`` in the matrix games), and per peer seat its learning rates ``[B, L]``."""

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
        """Draw the initial policy, then the critic (for chain methods), from the seed's stream,
        all on ``cfg.device`` (the stream too)."""
        setting = build_setting(cfg)
        method = make_method(method_name, cfg.agent.lookahead, cfg.train.estimator)
        g = seeded_generator(seed, setting.device)
        policy = setting.meta_policy.init_params(g)
        critic = None
        if method.outer == "chain":
            critic = Critic(setting.value_net, setting.value_net.init_params(g), cfg.chain.gamma,
                            cfg.train.gae_lambda)
        learner = MetaLearner(policy, setting.meta_lrs(), method.learn_lr, critic, cfg.train.outer, g)
        return cls(cfg, method_name, setting, method, learner, setting.evaluator(g), g)

    def state_dict(self) -> dict[str, Any]:
        """Everything a later :meth:`iterate` depends on, as plain tensors and dicts
        (``torch.save``-able), on the CPU: the initial policy, the inner learning rates, the
        critic's parameters, both optimisers' states (Adam's moments) and the random stream
        (its state is a CPU byte tensor on every device). A :class:`MetaTraining` built from
        the same config, method and seed and given this through :meth:`load_state_dict`
        continues exactly where this one stands."""
        learner = self.learner
        return to_cpu({"policy": {k: v.detach().clone() for k, v in learner.policy.items()},
                       "lr": learner.lr.detach().clone(),
                       "critic": ({k: v.detach().clone() for k, v in learner.critic.params.items()}
                                  if learner.critic is not None else None),
                       "actor_opt": learner.actor_opt.state_dict(),
                       "critic_opt": learner.critic_opt.state_dict() if learner.critic_opt is not None else None,
                       "generator": self.generator.get_state()})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into this (freshly built) run, in place: the
        optimisers keep pointing at the same leaf tensors, so their restored moments apply
        to the restored parameters (moved to this run's device; the optimisers' moments follow
        their parameters' device on load). Raises ValueError when the shapes are not this run's."""
        learner = self.learner
        state = {**state, **to_device({k: state[k] for k in ("policy", "lr", "critic")}, self.setting.device)}
        with torch.no_grad():
            for name, value in state["policy"].items():
                _copy_into(learner.policy, name, value, "policy")
            if learner.lr.shape != state["lr"].shape:
                raise ValueError(f"saved lr has shape {tuple(state['lr'].shape)}, this run's {tuple(learner.lr.shape)}")
            learner.lr.copy_(state["lr"])
            if (state["critic"] is None) != (learner.critic is None):
                raise ValueError("the saved state and this run disagree on having a critic")
            if learner.critic is not None:
                for name, value in state["critic"].items():
                    _copy_into(learner.critic.params, name, value, "critic")
        learner.actor_opt.load_state_dict(state["actor_opt"])
        if learner.critic_opt is not None:
            learner.critic_opt.load_state_dict(state["critic_opt"])
        self.generator.set_state(state["generator"])

    def sample_peers(self) -> PeerDraw:
        """A meta-batch of training personas, every peer seat drawn from the whole population."""
        B = self.cfg.train.meta_batch
        peers = self.setting.sample_peers(self.setting.population.train, B, self.generator)
        return PeerDraw(self.setting.peer_params(peers), self.setting.peer_lrs(B))

    def iterate(self, evaluator: Evaluator, peers: PeerDraw) -> dict[str, Any]:
        """One meta-update (Algorithm 1's inner body) on chains that ``evaluator`` plays, all
        at once or ``train.micro_batch`` chains at a time. Returns the learner's statistics
        plus ``meta_reward`` (the meta-agent's mean reward over the chain) and ``seconds``."""
        t0 = time.perf_counter()
        B = peers.lrs[0].shape[0]
        micro = self.cfg.train.micro_batch
        parts: list[tuple[int, float, list[dict[str, list[float]]]]] = []  # (chains, meta reward, OM errors)

        def chains(start: int, stop: int) -> MetaObjective:
            part = PeerDraw([{k: v[start:stop] for k, v in p.items()} for p in peers.params],
                            [lr[start:stop] for lr in peers.lrs])
            result, reward, errors = self._objective(evaluator, part)
            parts.append((stop - start, reward, errors))
            return result

        if micro and micro < B:
            if get_estimator(self.method.estimator).couples_chains:
                raise ValueError(f"train.micro_batch: the {self.method.estimator!r} estimator couples the chains "
                                 "of a meta-batch; build them at once (micro_batch = 0)")
            stats = self.learner.step_micro_batched(chains, B, micro)
        else:
            result = chains(0, B)
            stats = self.learner.step(result)
            del result
        meta_reward = sum((n / B) * r for n, r, _ in parts)  # exactly r for one part
        for l in range(len(parts[0][2])):  # the opponent model's error along the chain, against the true peers
            for model in ("fit", "predicted"):
                stats[f"om_{model}_error_step{l}"] = sum(
                    (n / B) * (sum(errors[l][model]) / len(errors[l][model])) for n, _, errors in parts)
        return {"meta_reward": meta_reward, **stats, "seconds": time.perf_counter() - t0}

    def _objective(self, evaluator: Evaluator, peers: PeerDraw
                   ) -> tuple[MetaObjective, float, list[dict[str, list[float]]]]:
        """The meta-objective of the chains against ``peers``, the meta-agent's mean reward
        over them, and (opponent modeling) the model's errors along the chain."""
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
        return result, meta_reward, (om.errors if om is not None else [])


def _copy_into(params: Params, name: str, value: torch.Tensor, what: str) -> None:
    """Copy a saved tensor into the live leaf ``params[name]`` (shape checked)."""
    if name not in params or params[name].shape != value.shape:
        have = tuple(params[name].shape) if name in params else "no such parameter"
        raise ValueError(f"saved {what} {name!r} has shape {tuple(value.shape)}; this run: {have}")
    params[name].copy_(value)
