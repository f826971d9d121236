"""The agent side of a MATRL round (rule ``matrl``; the coordinator's ``matrl`` mode drives it).

1. The referee broadcasts the round's episodes (a coordinator match: no chain, ``step`` = the
   coordinator's round ``r``, played at the agent's current ``policy`` version ``v``). The agent
   takes its trust-region step (``league.updates.UPDATE_RULES["matrl"]`` through
   ``seat_step``) and publishes the predicted parameters as kind ``predicted`` at version ``r``.
   It keeps the round (``v``, its parameters, the episodes) pending and opens kind
   ``matrl-mixture`` for the coordinator's push, sized to the round (``[1, K, H]``).
2. The coordinator pushes ``matrl-mixture``: the round ``r``, the agent's Nash weight, the
   peers' mixture as their per-step log importance weight on the round's episodes, and the
   best response's step size and clip (each validated at the push: structure, finite, ranges
   of ``services.limits.PUSHED_RANGES``). The agent takes its best-response step from the
   pending round and publishes ``policy`` version ``v + 1``. A mixture for another round than
   the pending one is ignored (logged): the coordinator voided that round.

The math is ``league.matrl.sampled``'s; this module only keeps the round between the two
messages."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from prometheus_client import Gauge

from league.matrl.sampled import best_response_step
from league.policies.base import Params
from league.rollout import Episodes
from league.updates import make_update_rule, seat_step

if TYPE_CHECKING:
    from agents.runtime import AgentProcess

log = logging.getLogger("league.agent")

PREDICTED = "predicted"
"""Kind of the trust-region step's predicted parameters (version = the coordinator's round)."""
MIXTURE = "matrl-mixture"
"""Kind the coordinator pushes: ``round`` int64 ``[1]``, ``nash_weight [1]``, ``peer_log_ratio
[1, K, H]``, ``br_lr [1]``, ``clip [1]``."""


@dataclass
class PendingRound:
    """A round between the trust-region step and the coordinator's mixture."""

    round: int
    behaviour_version: int
    seat: int
    params: Params
    episodes: Episodes


def mixture_message(round_: int, nash_weight: float, peer_log_ratio: torch.Tensor, br_lr: float, clip: float
                    ) -> dict[str, torch.Tensor]:
    """The ``matrl-mixture`` parameter set (what the coordinator pushes, and the shape the agent
    opens for it); ``peer_log_ratio [1, K, H]``."""
    return {"round": torch.tensor([round_], dtype=torch.int64),
            "nash_weight": torch.tensor([nash_weight], dtype=torch.float32),
            "peer_log_ratio": peer_log_ratio.to(torch.float32).reshape(1, *peer_log_ratio.shape[-2:]),
            "br_lr": torch.tensor([br_lr], dtype=torch.float32),
            "clip": torch.tensor([clip], dtype=torch.float32)}


class MatrlSeat:
    """An agent process's MATRL rounds (see the module docstring)."""

    def __init__(self, agent: "AgentProcess") -> None:
        self.agent = agent
        self.rule = make_update_rule("matrl", policy=agent.policy, gamma=agent.cfg.gamma)
        self.pending: PendingRound | None = None
        labels = ["agent_id"]
        self.weight = Gauge("league_agent_matrl_nash_weight", "This agent's MATRL meta-game Nash weight (probability "
                            "of its predicted policy) in its last completed round", labels,
                            registry=agent.metrics.registry)

    def observe(self, items: list[tuple]) -> None:
        """Step 1 for the broadcast batches of this agent's seats (normally one per round)."""
        a, m = self.agent, self.agent.metrics
        with a._lock:
            for chain, batch, seat, _source, _target, episodes in items:
                version, params = a.store.snapshot("policy")
                if chain or version != batch.seats[seat].behaviour_version:
                    continue  # not a MATRL round at the current policy: stale or another schedule's
                lr = a.store.snapshot("lr")[1]["lr"][:, 0]
                predicted = seat_step(self.rule, a.evaluator, a.policy, params, episodes, seat, lr)
                self.pending = PendingRound(batch.step, version, seat, params, episodes)
                K, H = episodes.shape[1:3]
                a.store.set(MIXTURE, mixture_message(0, 0.0, torch.zeros(1, K, H), 0.0, 0.0))  # opened for this round
                a.store.restore(PREDICTED, batch.step, predicted)
                m.updates.labels(*m.values).inc()
                m.last_update.labels(*m.values).set(time.time())

    def on_push(self, kind: str) -> None:
        """Step 2, when the coordinator's mixture arrives (called under the agent's lock)."""
        if kind != MIXTURE:
            return
        a, m = self.agent, self.agent.metrics
        _, mix = a.store.snapshot(MIXTURE)
        p, round_ = self.pending, int(mix["round"][0])
        if p is None or p.round != round_:
            log.warning("%s: a MATRL mixture for round %d, but the pending round is %s: ignored", a.spec.id, round_,
                        p.round if p is not None else "none")
            return
        new = best_response_step(a.policy, p.params, p.episodes, p.seat, mix["peer_log_ratio"],
                                 float(mix["br_lr"][0]), float(mix["clip"][0]), a.cfg.gamma)
        self.pending = None
        version = a.store.set("policy", new)
        self.weight.labels(*m.values).set(float(mix["nash_weight"][0]))
        m.version.labels(*m.values).set(version)


#: Rules whose rounds a coordinator drives in two messages (broadcast, then a push), by rule name.
COORDINATED_RULES = {"matrl": MatrlSeat}
