"""A ``ppo-matrl`` seat's learner-local state (:class:`~league.matrl.deep.PPOTrustRegion`: the
critic's weights, the critic's Adam state and the seat's generator) as plain tensors, and the
working copy a round updates until it completes.

Why: an agent process checkpoints this state with its policy after every completed round and
restores it on restart, so a restarted seat continues as the embedded ``run_deep_matrl`` would
(which never restarts); and a round that the coordinator voids must leave the committed state
untouched, so the round's PPO step runs on a copy (:func:`working_copy`) that becomes the
seat's state only when the round completes.

Written here rather than as methods of ``PPOTrustRegion``/``Critic`` (``deep.py``, ``ppo.py``)
only because those modules were being edited elsewhere at the time; they read nothing but the
public fields ``critic.weights``, ``critic.optimizer`` and ``generator``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from league.matrl.deep import PPOTrustRegion

__all__ = ["rule_state", "load_rule_state", "working_copy"]


def _clone_generator(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None:
        return None
    clone = torch.Generator()
    clone.set_state(generator.get_state())
    return clone


def rule_state(rule: PPOTrustRegion) -> dict[str, Any]:
    """The rule's learner-local state, sharing no tensor with the rule (safe to keep while the
    rule learns on): ``critic`` (the weights, in order), ``critic_optimizer`` (Adam's state
    dict: moments and step counts), ``generator`` (``Generator.get_state()``, None if the rule
    has none)."""
    if rule.critic is None:
        raise ValueError("the rule has no critic (PPOTrustRegion.for_seat builds one)")
    return {"critic": [w.detach().clone() for w in rule.critic.weights],
            "critic_optimizer": copy.deepcopy(rule.critic.optimizer.state_dict()),
            "generator": None if rule.generator is None else rule.generator.get_state().clone()}


def load_rule_state(rule: PPOTrustRegion, state: dict[str, Any]) -> None:
    """Put :func:`rule_state`'s ``state`` into ``rule`` (built for the same seat and critic
    shape): the weights in place, Adam's state, the generator's state. ValueError if the
    critic's shapes differ."""
    if rule.critic is None:
        raise ValueError("the rule has no critic (PPOTrustRegion.for_seat builds one)")
    weights = rule.critic.weights
    saved = state["critic"]
    if [tuple(w.shape) for w in weights] != [tuple(s.shape) for s in saved]:
        raise ValueError(f"saved critic shapes {[tuple(s.shape) for s in saved]} do not fit the critic's "
                         f"{[tuple(w.shape) for w in weights]}")
    with torch.no_grad():
        for w, s in zip(weights, saved):
            w.copy_(s)
    # Adam keeps the loaded moment tensors and updates them in place: give it copies
    rule.critic.optimizer.load_state_dict(copy.deepcopy(state["critic_optimizer"]))
    if (state["generator"] is None) != (rule.generator is None):
        raise ValueError("the saved state and the rule disagree on having a generator")
    if rule.generator is not None:
        rule.generator.set_state(state["generator"])


def working_copy(rule: PPOTrustRegion, **changes: Any) -> PPOTrustRegion:
    """A copy of ``rule`` that shares no mutable state with it (critic weights, Adam state,
    generator), with dataclass fields replaced by ``changes`` (e.g. this round's ``ppo``): a
    round's step runs on it and it replaces the seat's rule only when the round completes."""
    critic = copy.deepcopy(rule.critic)  # the copied optimizer refers to the copied weights (deepcopy's memo)
    return dataclasses.replace(rule, critic=critic, generator=_clone_generator(rule.generator), **changes)
