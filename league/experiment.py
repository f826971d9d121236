"""Algorithm 1 (meta-training with validation-based checkpoint selection) and Algorithm 2
(meta-testing) for one (method, seed), and a whole experiment over methods x seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from league.chain import unroll
from league.config import ExperimentConfig
from league.devices import seeded_generator, to_cpu, to_device
from league.meta_training import MetaTraining
from league.methods import Method, make_method
from league.personas import Pool, pool_size, take
from league.setting import Setting, build_setting

# Offsets that keep each phase's random stream apart for a given training seed.
VALIDATION_STREAM, TEST_STREAM = 1_000_003, 2_000_003
EVAL_CHUNK = 20  # personas per batched evaluation chain (bounds memory)


@dataclass
class Checkpoint:
    """A meta-agent: initial policy parameters and per-step inner learning rates (on the CPU
    when made by :func:`train_one`, whatever device trained them)."""

    method: str
    seed: int
    iteration: int
    policy: dict[str, torch.Tensor]
    lr: torch.Tensor
    val_score: float

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``torch.save``; tensors on the CPU, so the file loads anywhere."""
        return {"method": self.method, "seed": self.seed, "iteration": self.iteration,
                "policy": to_cpu(self.policy), "lr": to_cpu(self.lr), "val_score": self.val_score}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Checkpoint":
        return cls(**d)


@dataclass
class Adaptation:
    """Meta-test results over ``N`` personas: rewards ``[L+1, N, n]`` per chain step and, in a
    matrix game, per-state action probabilities ``[L+1, N, n, S, A]`` (NaN where a state was
    unseen; None in an environment without discrete states, e.g. HalfCheetah)."""

    rewards: np.ndarray
    action_probs: np.ndarray | None


def _state_action_probs(data) -> torch.Tensor:
    """Mean action probabilities per visited state: ``[B, n, S, A]``."""
    obs = data.obs
    counts = obs.sum(dim=(1, 2))  # [B, S]
    out = []
    for probs in data.probs:
        sums = torch.einsum("bkhs,bkha->bsa", obs, probs)
        out.append(sums / counts.unsqueeze(-1))
    return torch.stack(out, dim=1)


def adapt(setting: Setting, method: Method, policy: dict[str, torch.Tensor], lr: torch.Tensor,
          personas: Pool, generator: torch.Generator) -> Adaptation:
    """Algorithm 2: the meta-agent starts from ``policy`` against each persona of ``personas``
    (a pool of ``setting.population``, or tabular probabilities) and every seat learns along
    the chain (first-order inner steps, no meta-gradient). Runs on ``setting.device`` (where
    ``generator`` must be; ``policy`` and ``lr`` are moved there); the results come back as
    numpy arrays."""
    L = setting.cfg.chain.length
    policy, lr = to_device(policy, setting.device), to_device(lr, setting.device)
    rewards, probs = [], []
    evaluator = setting.evaluator(generator)
    groups = setting.peer_groups(personas)
    n_groups = pool_size(groups)
    for start in range(0, n_groups, EVAL_CHUNK):
        chunk = take(groups, torch.arange(start, min(start + EVAL_CHUNK, n_groups), device=setting.device))
        n = pool_size(chunk)
        peers = setting.peer_params(chunk)
        meta = {k: v.detach().expand(n, *v.shape[1:]) for k, v in policy.items()}
        rules = [method.meta_rule] + [method.real_peer_rule] * setting.n_peers
        lrs = [lr.detach().expand(n, -1), *setting.peer_lrs(n)]
        steps = unroll(evaluator, [meta, *peers], rules, lrs, L, differentiable=False)
        rewards.append(torch.stack([evaluator.mean_rewards(s.data) for s in steps]).detach())
        if setting.game is not None:  # per-state action probabilities exist where states are discrete
            probs.append(torch.stack([_state_action_probs(s.data) for s in steps]))
        del steps
    return Adaptation(torch.cat(rewards, dim=1).double().cpu().numpy(),
                      torch.cat(probs, dim=1).double().cpu().numpy() if probs else None)


def adaptation_score(adaptation: Adaptation) -> float:
    """Validation score: the meta-agent's mean per-step reward summed over phi_1..phi_L."""
    return float(adaptation.rewards[1:, :, 0].mean(axis=1).sum())


@dataclass
class TrainResult:
    best: Checkpoint
    final: Checkpoint
    metrics: list[dict[str, Any]] = field(default_factory=list)


def train_one(cfg: ExperimentConfig, method_name: str, seed: int,
              progress: Callable[[int, int], None] | None = None,
              on_record: Callable[[dict], None] | None = None) -> TrainResult:
    """Meta-train one meta-agent (Algorithm 1) and keep the best validated checkpoint.
    ``on_record`` sees every metrics record (iteration or validation) as it is made.
    ``grad_norm`` in a record is the combined meta-gradient's norm before clipping. Learning
    runs on ``cfg.device``; the checkpoints come back on the CPU."""
    mt = MetaTraining.build(cfg, method_name, seed)
    setting, method, learner = mt.setting, mt.method, mt.learner
    metrics: list[dict[str, Any]] = []

    def snapshot(iteration: int, score: float) -> Checkpoint:
        return Checkpoint(method_name, seed, iteration,
                          {k: v.detach().to("cpu", copy=True) for k, v in learner.policy.items()},
                          learner.lr.detach().to("cpu", copy=True), score)

    def validate(iteration: int) -> Checkpoint:
        vg = seeded_generator(VALIDATION_STREAM + seed, setting.device)  # same episodes each pass
        score = adaptation_score(adapt(setting, method, learner.policy, learner.lr, setting.population.val, vg))
        metrics.append({"method": method_name, "seed": seed, "iteration": iteration, "val_score": score})
        if on_record is not None:
            on_record(metrics[-1])
        return snapshot(iteration, score)

    best = validate(0)
    for it in range(1, cfg.train.iterations + 1):
        stats = mt.iterate(mt.evaluator, mt.sample_peers())
        metrics.append({"method": method_name, "seed": seed, "iteration": it, **stats})
        if on_record is not None:
            on_record(metrics[-1])
        if it % cfg.train.validate_every == 0 or it == cfg.train.iterations:
            candidate = validate(it)
            if candidate.val_score > best.val_score:
                best = candidate
        if progress is not None:
            progress(it, cfg.train.iterations)
    final = snapshot(cfg.train.iterations, metrics[-1].get("val_score", float("nan")))
    return TrainResult(best=best, final=final, metrics=metrics)


def meta_test(cfg: ExperimentConfig, checkpoint: Checkpoint) -> Adaptation:
    """Algorithm 2 on every test persona, with the test stream of the checkpoint's seed."""
    setting = build_setting(cfg)
    method = make_method(checkpoint.method, cfg.agent.lookahead)
    g = seeded_generator(TEST_STREAM + checkpoint.seed, setting.device)
    return adapt(setting, method, checkpoint.policy, checkpoint.lr, setting.population.test, g)
