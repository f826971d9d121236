"""The agent side of a MATRL round (rules ``matrl`` and ``ppo-matrl``; the coordinator's ``matrl``
mode drives it).

1. The referee broadcasts the round's episodes (a coordinator match: no chain, ``step`` = the
   coordinator's round ``r``, played at the agent's current ``policy`` version ``v``). The agent
   takes its trust-region step and publishes the predicted parameters as kind ``predicted`` at
   version ``r``. It keeps the round (``v``, its parameters, the episodes, what its step
   computed) pending and opens kind ``matrl-mixture`` for the coordinator's push, sized to the
   round (``[1, K, H]``). The step's settings are kind ``matrl-trust``, which the coordinator
   pushes before every round (the agent starts with the rule's defaults).
2. The coordinator pushes ``matrl-mixture``: the round ``r``, the agent's Nash weight, the
   peers' mixture as their per-step log importance weight on the round's episodes, and the
   best response's step size and clip (each validated at the push: structure, finite, ranges
   of ``services.limits.PUSHED_RANGES``). The agent computes its response from the pending
   round and holds it **prepared** (:class:`PreparedRound`: nothing committed, published or
   checkpointed), writes it to ``<checkpoint_dir>/<id>.prepared.pt`` (temporary file, fsync,
   rename), and only then publishes kind ``matrl-prepared`` at version ``r``: its acceptance,
   which the coordinator waits for from every agent of the group.
3. Only then does the coordinator push ``matrl-commit`` (the round ``r``). The agent commits
   the prepared round (its learner-local state), checkpoints, removes the prepared file and
   publishes ``policy`` version ``v + 1``. A mixture for another round than the pending one, or a
   commit for another round than the prepared one, is ignored (logged): the coordinator voided
   that round.

**Learner-local state and voided rounds.** A rule's state that the next round reads (rule
``ppo-matrl``: the critic, its Adam state, the seat's generator) is *committed* only at step 3:
step 1 works on a copy (:meth:`league.matrl.deep.PPOTrustRegion.working_copy`) kept with the
pending round, step 2 adds the response to it, and step 3 makes both the seat's. A round the
coordinator voids before step 3 (its mixture or its commit never comes; the next broadcast
replaces the pending round, prepared or not) therefore leaves policy and committed state as the
last completed round left them, in every agent of the group, whether the mixture had reached it
or not, and in one that restarted. Step 3 writes the checkpoint (policy ``v + 1`` and the
committed state, one file, renamed into place) *before* it publishes ``policy`` ``v + 1``, so a
round the coordinator saw complete is on disk; a restarted agent resumes from it
(:meth:`CoordinatedSeat.state_dict`, :meth:`CoordinatedSeat.load_state_dict`).

**A commit that arrives after a restart.** The coordinator pushes the commits one agent after
another and re-sends, before the group's next round, a commit an agent did not acknowledge
(``services.coordinator_matrl``). An agent restarted between its ``matrl-prepared`` and its
``matrl-commit`` restores its checkpoint (the last completed round, policy ``v``) and, when
``<id>.prepared.pt`` holds a round prepared at that policy version, holds it prepared again and
serves ``matrl-prepared`` at its round; the re-sent commit then takes the same
:meth:`CoordinatedSeat.commit_round` as one that never stopped: the prepared round's learner
state (``PreparedRound.learner``, :meth:`CoordinatedSeat.load_state_dict`, the path a live
commit takes too), the checkpoint, the file removed, ``policy`` ``v + 1``. A prepared file at
another policy version than the checkpoint's (its round was committed; the agent died before it
removed the file) is dropped at start, and the next broadcast drops a prepared round that was
never committed (voided), file included.

Two rules share that protocol (:data:`COORDINATED_RULES`), each a :class:`CoordinatedSeat`:

- ``matrl`` (:class:`MatrlSeat`, tabular policies on the matrix games): the trust-region step is
  ``league.matrl.sampled.trust_region_step`` (through ``seat_step``), the best response
  ``best_response_step``; ``matrl-trust`` holds ``kl_coef`` and ``trust_steps``.
- ``ppo-matrl`` (:class:`PPOMatrlSeat`, deep MATRL on any environment the referee steps): the
  trust-region step is ``league.matrl.deep.PPOTrustRegion`` (PPO with a critic the agent keeps,
  and the seat's generator ``seat_generator(seed, seat)``), the best response
  ``league.matrl.deep.best_response`` from the PPO step's own advantages and behaviour
  log-probabilities, or the parameters interpolated by its Nash weight for the ablations without
  a best response (``il``, ``matrl_no_br``: :data:`league.matrl.variant_protocol.PROTOCOLS`);
  ``matrl-trust`` holds every ``PPOConfig`` field, the run's ``seed``, ``br_steps`` and the
  ``response`` (:func:`ppo_trust_message`).

The math is ``league.matrl``'s; this module only keeps the round between the messages."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from prometheus_client import Gauge

from league.matrl.deep import DeepMATRLConfig, PPOTrustRegion, best_response, interpolate
from league.matrl.ppo import PPOConfig
from league.matrl.sampled import best_response_step
from league.matrl.variant_protocol import RESPONSES
from league.policies.base import Params
from league.policies.mlp import ACTIVATIONS
from league.rollout import Episodes
from league.updates import make_update_rule, seat_step
from services.durable import write_atomically

if TYPE_CHECKING:
    from agents.runtime import AgentProcess

log = logging.getLogger("league.agent")

PREDICTED = "predicted"
"""Kind of the trust-region step's predicted parameters (version = the coordinator's round)."""
TRUST = "matrl-trust"
"""Kind the coordinator pushes before each round: the trust-region step's settings (rule
``matrl``: ``kl_coef [1]`` and ``trust_steps`` int64 ``[1]``; rule ``ppo-matrl``:
:func:`ppo_trust_message`); the agent starts with the rule's defaults."""
MIXTURE = "matrl-mixture"
"""Kind the coordinator pushes: ``round`` int64 ``[1]``, ``nash_weight [1]``, ``peer_log_ratio
[1, K, H]``, ``br_lr [1]``, ``clip [1]``; the agent prepares its response."""
PREPARED = "matrl-prepared"
"""Kind the agent publishes at version = the round once its response to that round's mixture is
prepared (``round`` int64 ``[1]``): the coordinator's sign that the agent accepted the mixture."""
COMMIT = "matrl-commit"
"""Kind the coordinator pushes once every agent of the group prepared: ``round`` int64 ``[1]``;
the agent commits the prepared round and publishes ``policy`` ``v + 1``."""


@dataclass
class PendingRound:
    """A round between the trust-region step and the coordinator's mixture."""

    round: int
    behaviour_version: int
    seat: int
    params: Params
    episodes: Episodes
    step: Any = None
    """What the rule's trust-region step computed that its response reuses (``ppo-matrl``: the
    ``PPOStep`` with its predicted parameters, GAE advantages and behaviour log-probabilities, the
    round's ``PPOTrust`` settings, and the working copy of the rule, whose state the commit makes
    the seat's: :attr:`PreparedRound.learner`)."""


@dataclass
class PreparedRound:
    """A round's prepared response, held for the coordinator's commit: everything the commit
    makes the seat's, and what ``<checkpoint_dir>/<id>.prepared.pt`` holds, so an agent restarted
    between its ``matrl-prepared`` and its ``matrl-commit`` commits the same round."""

    round: int
    """The coordinator's round number (the commit's ``round``)."""
    behaviour_version: int
    """The ``policy`` version the round was played at: the commit publishes ``v + 1``."""
    response: Params
    """The next parameters prepared from the coordinator's mixture."""
    nash_weight: float
    """The pushed Nash weight of the prepared response."""
    learner: dict[str, Any] | None = None
    """The learner-local state the commit makes the seat's, in :meth:`CoordinatedSeat.state_dict`'s
    layout (``ppo-matrl``: the round's working copy; None: the rule keeps none)."""


def prepared_path(agent: "AgentProcess") -> Path:
    """Where ``agent`` keeps its prepared round: ``<checkpoint_dir>/<id>.prepared.pt``."""
    return agent.checkpoint.with_name(f"{agent.spec.id}.prepared.pt")


def trust_message(kl_coef: float, trust_steps: int) -> dict[str, torch.Tensor]:
    """The ``matrl-trust`` parameter set: the trust-region step's settings."""
    return {"kl_coef": torch.tensor([kl_coef], dtype=torch.float32),
            "trust_steps": torch.tensor([trust_steps], dtype=torch.int64)}


CHOICES = {"activation": tuple(ACTIVATIONS)}
"""``PPOConfig`` fields that hold a name: pushed as its index in these choices."""


def ppo_trust_message(ppo: PPOConfig, seed: int, br_steps: int, response: str = "best_response"
                      ) -> dict[str, torch.Tensor]:
    """The ``matrl-trust`` parameter set of rule ``ppo-matrl``: every ``PPOConfig`` field as a
    ``[1]`` tensor (integers and flags int64, numbers float64 so they arrive exact, a name as
    its index in :data:`CHOICES`, ``target_kl`` None as -1), the run's ``seed`` (the seat
    generators'), the best response's ``br_steps`` and the variant's ``response`` (its index in
    ``league.matrl.variant_protocol.RESPONSES``: best response or interpolation)."""
    message = {}
    for f in fields(PPOConfig):
        value = getattr(ppo, f.name)
        if f.name in CHOICES:
            message[f.name] = torch.tensor([CHOICES[f.name].index(value)], dtype=torch.int64)
        elif f.name == "target_kl":
            message[f.name] = torch.tensor([-1.0 if value is None else value], dtype=torch.float64)
        elif isinstance(value, int):  # bool too
            message[f.name] = torch.tensor([int(value)], dtype=torch.int64)
        else:
            message[f.name] = torch.tensor([value], dtype=torch.float64)
    message["seed"] = torch.tensor([seed], dtype=torch.int64)
    message["br_steps"] = torch.tensor([br_steps], dtype=torch.int64)
    message["response"] = torch.tensor([RESPONSES.index(response)], dtype=torch.int64)
    return message


@dataclass(frozen=True)
class PPOTrust:
    """What :func:`ppo_trust_settings` reads back from a ``matrl-trust`` push."""

    ppo: PPOConfig
    """The PPO step's coefficients."""
    seed: int
    """The run's seed (the seat generators')."""
    br_steps: int
    """The best response's Adam steps."""
    response: str = "best_response"
    """The agent's next parameters from its Nash weight (``RESPONSES``)."""


def ppo_trust_settings(message: dict[str, torch.Tensor]) -> PPOTrust:
    """The settings back from :func:`ppo_trust_message`'s parameter set."""
    default, values = PPOConfig(), {}
    for f in fields(PPOConfig):
        x = message[f.name].flatten()[0]
        if f.name in CHOICES:
            values[f.name] = CHOICES[f.name][int(x)]
        elif f.name == "target_kl":
            values[f.name] = None if float(x) < 0 else float(x)
        else:
            values[f.name] = type(getattr(default, f.name))(x.item())
    return PPOTrust(PPOConfig(**values), int(message["seed"][0]), int(message["br_steps"][0]),
                    RESPONSES[int(message["response"][0])])


def mixture_message(round_: int, nash_weight: float, peer_log_ratio: torch.Tensor, br_lr: float, clip: float
                    ) -> dict[str, torch.Tensor]:
    """The ``matrl-mixture`` parameter set (what the coordinator pushes, and the shape the agent
    opens for it); ``peer_log_ratio [1, K, H]``."""
    return {"round": torch.tensor([round_], dtype=torch.int64),
            "nash_weight": torch.tensor([nash_weight], dtype=torch.float32),
            "peer_log_ratio": peer_log_ratio.to(torch.float32).reshape(1, *peer_log_ratio.shape[-2:]),
            "br_lr": torch.tensor([br_lr], dtype=torch.float32),
            "clip": torch.tensor([clip], dtype=torch.float32)}


def round_message(round_: int) -> dict[str, torch.Tensor]:
    """The ``matrl-commit`` (and ``matrl-prepared``) parameter set: ``round`` int64 ``[1]``."""
    return {"round": torch.tensor([round_], dtype=torch.int64)}


class CoordinatedSeat(ABC):
    """An agent process's MATRL rounds (see the module docstring); a rule supplies
    ``default_trust`` (its ``matrl-trust`` before the first push), ``predict`` (step 1) and
    ``respond`` (step 2)."""

    def __init__(self, agent: "AgentProcess") -> None:
        self.agent = agent
        default = self.default_trust()
        if TRUST not in agent.store.kinds() or set(agent.store.snapshot(TRUST)[1]) != set(default):
            agent.store.set(TRUST, default)  # new, or a checkpoint of an older message layout (pushes must fit)
        if PREDICTED not in agent.store.kinds():  # served from the start (version 0), so the coordinator's
            # long poll for round r waits for the first step instead of finding no such kind
            agent.store.restore(PREDICTED, 0, agent.store.snapshot("policy")[1])
        for kind in (PREPARED, COMMIT):  # served (prepared: long-polled at version r) and open for pushes
            if kind not in agent.store.kinds():
                agent.store.restore(kind, 0, round_message(0))
        self.pending: PendingRound | None = None
        """The round between its trust-region step and the coordinator's mixture (or its commit)."""
        self.prepared: PreparedRound | None = self._restore_prepared()
        """The prepared round awaiting the coordinator's commit (restored from disk after a restart)."""
        labels = ["agent_id"]
        self.weight = Gauge("league_agent_matrl_nash_weight", "This agent's MATRL meta-game Nash weight (probability "
                            "of its predicted policy) in its last completed round", labels,
                            registry=agent.metrics.registry)

    @abstractmethod
    def default_trust(self) -> dict[str, torch.Tensor]:
        """The rule's ``matrl-trust`` settings before the coordinator's first push."""

    @abstractmethod
    def predict(self, params: Params, episodes: Episodes, seat: int, trust: dict[str, torch.Tensor]
                ) -> tuple[Params, Any]:
        """The predicted parameters, and what the best response will reuse."""

    @abstractmethod
    def respond(self, p: PendingRound, mix: dict[str, torch.Tensor]) -> Params:
        """The next parameters of the pending round given the pushed mixture (a best response, or
        for ``ppo-matrl`` whatever the variant's ``response`` says)."""

    def prepared_learner(self, p: PendingRound) -> dict[str, Any] | None:
        """The learner-local state committing ``p`` would make the seat's, in :meth:`state_dict`'s
        layout (None by default: the rule keeps none)."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """The committed learner-local state the next round reads, for the agent's checkpoint
        (None: the rule keeps none beyond its parameter kinds)."""
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Resume from :meth:`state_dict`'s output (a restarted agent's checkpoint, or a committed
        round's :attr:`PreparedRound.learner`)."""

    # -- the prepared round on disk ---------------------------------------------------------
    def _write_prepared(self, p: PreparedRound) -> None:
        """``<id>.prepared.pt`` holds ``p`` (temporary file, fsync, rename)."""
        write_atomically(prepared_path(self.agent), lambda f: torch.save(asdict(p), f))

    def _drop_prepared(self) -> None:
        """No prepared round, in memory or on disk (committed, or voided by the next broadcast)."""
        self.prepared = None
        prepared_path(self.agent).unlink(missing_ok=True)

    def _restore_prepared(self) -> PreparedRound | None:
        """The prepared round of a restarted agent: ``<id>.prepared.pt`` if it was prepared at the
        restored ``policy`` version (one at another version was committed, the checkpoint says so:
        the file is removed); ``matrl-prepared`` is served at its round again."""
        path, a = prepared_path(self.agent), self.agent
        if not path.exists():
            return None
        p = PreparedRound(**torch.load(path, weights_only=True))
        if p.behaviour_version != a.store.version("policy"):
            log.info("%s: prepared round %d was played at policy %d, the checkpoint holds %d: already committed, "
                     "dropped", a.spec.id, p.round, p.behaviour_version, a.store.version("policy"))
            path.unlink()
            return None
        if a.store.version(PREPARED) < p.round:
            a.store.restore(PREPARED, p.round, round_message(p.round))
        log.info("%s: holds round %d prepared from %s (awaiting the coordinator's commit)", a.spec.id, p.round, path)
        return p

    # -- the round's three messages ---------------------------------------------------------
    def observe(self, items: list[tuple]) -> None:
        """Step 1 for the broadcast batches of this agent's seats (normally one per round); a new
        round voids the prepared one, if any."""
        a, m = self.agent, self.agent.metrics
        with a._lock:
            for chain, batch, seat, _source, _target, episodes in items:
                version, params = a.store.snapshot("policy")
                if chain or version != batch.seats[seat].behaviour_version:
                    continue  # not a MATRL round at the current policy: stale or another schedule's
                if self.prepared is not None:
                    self._drop_prepared()  # the coordinator moved on: that round was voided
                predicted, step = self.predict(params, episodes, seat, a.store.snapshot(TRUST)[1])
                self.pending = PendingRound(batch.step, version, seat, params, episodes, step)
                K, H = episodes.shape[1:3]
                a.store.set(MIXTURE, mixture_message(0, 0.0, torch.zeros(1, K, H), 0.0, 0.0))  # opened for this round
                a.store.restore(PREDICTED, batch.step, predicted)
                m.updates.labels(*m.values).inc()
                m.last_update.labels(*m.values).set(time.time())

    def on_push(self, kind: str) -> bool:
        """Steps 2 and 3 (called under the agent's lock): :meth:`prepare` on the coordinator's
        mixture, :meth:`commit_round` on its commit. True when the push made it write the
        agent's checkpoint (a committed round), so the agent need not write it again."""
        handler = {MIXTURE: self.prepare, COMMIT: self.commit_round}.get(kind)
        return handler is not None and handler(int(self.agent.store.snapshot(kind)[1]["round"][0]))

    def prepare(self, round_: int) -> bool:
        """Step 2: the response to the pushed mixture, held prepared (nothing committed, published
        or checkpointed) and written to ``<id>.prepared.pt``, then ``matrl-prepared`` at version
        ``round_``. False: the checkpoint was not written."""
        p = self.pending
        if p is None or p.round != round_:
            log.warning("%s: a MATRL mixture for round %d, but the pending round is %s: ignored", self.agent.spec.id,
                        round_, p.round if p is not None else "none")
            return False
        _, mix = self.agent.store.snapshot(MIXTURE)
        prepared = PreparedRound(round_, p.behaviour_version, self.respond(p, mix), float(mix["nash_weight"][0]),
                                 self.prepared_learner(p))
        self._write_prepared(prepared)  # on disk before the coordinator may decide to commit it
        self.prepared = prepared
        self.agent.store.restore(PREPARED, round_, round_message(round_))
        return False

    def commit_round(self, round_: int) -> bool:
        """Step 3: the prepared round becomes the seat's (learner-local state, then the checkpoint,
        then ``policy`` ``v + 1``), whether it was prepared in this process or restored from disk.
        True when it committed (and so checkpointed)."""
        a, m, p = self.agent, self.agent.metrics, self.prepared
        if p is None or p.round != round_:
            pending = self.pending is not None and self.pending.round == round_
            log.warning("%s: a MATRL commit for round %d, %s: ignored", a.spec.id, round_,
                        "which has no mixture yet" if pending else
                        f"but the prepared round is {p.round if p is not None else 'none'}")
            return False
        if p.behaviour_version != a.store.version("policy"):  # never after _restore_prepared; kept as a guard
            log.warning("%s: prepared round %d was played at policy %d, the agent holds %d: ignored", a.spec.id,
                        round_, p.behaviour_version, a.store.version("policy"))
            return False
        self.load_state_dict(p.learner)
        self.pending = None
        a.save(publishing={"policy": (p.behaviour_version + 1, p.response)})  # on disk before anyone sees v + 1
        self._drop_prepared()  # a crash before this line leaves a file the restored policy version voids
        version = a.store.set("policy", p.response)
        self.weight.labels(*m.values).set(p.nash_weight)
        m.version.labels(*m.values).set(version)
        return True


class MatrlSeat(CoordinatedSeat):
    """Rule ``matrl``: sampled MATRL for tabular policies (``league.matrl.sampled``)."""

    def default_trust(self) -> dict[str, torch.Tensor]:
        defaults = make_update_rule("matrl")
        return trust_message(defaults.kl_coef, defaults.trust_steps)

    def predict(self, params: Params, episodes: Episodes, seat: int, trust: dict[str, torch.Tensor]
                ) -> tuple[Params, Any]:
        a = self.agent
        lr = a.store.snapshot("lr")[1]["lr"][:, 0]
        rule = make_update_rule("matrl", policy=a.policy, gamma=a.cfg.gamma, kl_coef=float(trust["kl_coef"][0]),
                                trust_steps=int(trust["trust_steps"][0]))
        return seat_step(rule, a.evaluator, a.policy, params, episodes, seat, lr), None

    def respond(self, p: PendingRound, mix: dict[str, torch.Tensor]) -> Params:
        a = self.agent
        return best_response_step(a.policy, p.params, p.episodes, p.seat, mix["peer_log_ratio"],
                                  float(mix["br_lr"][0]), float(mix["clip"][0]), a.cfg.gamma)


class PPOMatrlSeat(CoordinatedSeat):
    """Rule ``ppo-matrl``: deep MATRL (``league.matrl.deep``). The seat's critic and generator
    are learner-local state, built at its first round from the pushed settings (seed, seat) and
    kept across rounds, as the embedded run keeps them; the PPO step's learning rate, discount
    and every other coefficient come from the pushed ``matrl-trust``. A round's step runs on a
    working copy of that state, committed when the round completes (module docstring)."""

    def __init__(self, agent: "AgentProcess") -> None:
        super().__init__(agent)
        self.rule: PPOTrustRegion | None = None
        """The committed rule: critic, Adam state and generator as the last completed round left them."""
        self.built_for: tuple | None = None
        """``(seed, seat, critic shape, critic lr)`` the rule was built for; other settings rebuild it."""
        self.responses = {"best_response": self._best_response, "interpolate": self._interpolate}
        """The agent's next parameters by the variant's ``response`` (``RESPONSES``)."""

    def default_trust(self) -> dict[str, torch.Tensor]:
        return ppo_trust_message(PPOConfig(), 0, DeepMATRLConfig().br_steps)  # the embedded run's defaults

    @staticmethod
    def _key(ppo: PPOConfig, seed: int, seat: int) -> tuple:
        return (seed, seat, ppo.hidden, ppo.layers, ppo.activation, ppo.critic_lr)

    def _build(self, ppo: PPOConfig, seed: int, seat: int) -> PPOTrustRegion:
        return PPOTrustRegion.for_seat(self.agent.policy, self.agent.env.observation_spaces[seat], ppo, seed, seat)

    def predict(self, params: Params, episodes: Episodes, seat: int, trust: dict[str, torch.Tensor]
                ) -> tuple[Params, Any]:
        settings = ppo_trust_settings(trust)
        key = self._key(settings.ppo, settings.seed, seat)
        if self.rule is None or self.built_for != key:  # a fresh rule is a function of the key alone
            self.rule, self.built_for = self._build(settings.ppo, settings.seed, seat), key
        working = self.rule.working_copy(ppo=settings.ppo)
        step = working.step(params, episodes, seat)
        return step.params, (step, settings, working)

    def respond(self, p: PendingRound, mix: dict[str, torch.Tensor]) -> Params:
        return self.responses[p.step[1].response](p, mix)

    def _best_response(self, p: PendingRound, mix: dict[str, torch.Tensor]) -> Params:
        step, settings, _ = p.step
        return best_response(self.agent.policy, step.params, p.episodes, p.seat, step.logp_old, step.advantages,
                             mix["peer_log_ratio"], float(mix["br_lr"][0]), settings.br_steps, settings.ppo.clip,
                             float(mix["clip"][0]))

    def _interpolate(self, p: PendingRound, mix: dict[str, torch.Tensor]) -> Params:
        return interpolate(p.params, p.step[0].params, mix["nash_weight"][0])

    @staticmethod
    def _state_of(rule: PPOTrustRegion, built_for: tuple) -> dict[str, Any]:
        return {"built_for": built_for, "ppo": asdict(rule.ppo), "rule": rule.state_dict()}

    def prepared_learner(self, p: PendingRound) -> dict[str, Any] | None:
        _, settings, working = p.step
        return self._state_of(working, self._key(settings.ppo, settings.seed, p.seat))

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.rule is None else self._state_of(self.rule, self.built_for)

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        ppo = PPOConfig(**state["ppo"])
        seed, seat = state["built_for"][:2]
        rule = self._build(ppo, seed, seat)
        rule.load_state_dict(state["rule"])
        self.rule, self.built_for = rule, tuple(state["built_for"])


#: Rules whose rounds a coordinator drives (broadcast, mixture, commit), by rule name.
COORDINATED_RULES = {"matrl": MatrlSeat, "ppo-matrl": PPOMatrlSeat}
