"""Which broadcast batches an agent learns together: every batch of a round that seats it.

The referee broadcasts a round's batches one match at a time, so a meta-agent with N chains
gets N batches a few milliseconds apart. Learned one by one they cost N steps of B = 1;
learned together, one step of B = N (chains as the tensor dimension, the same numbers). Each
batch's header says how many batches of its round seat the agent (``Seat.round_batches``),
so ``RoundInbox.take`` waits for exactly those, bounded by ``round_wait`` seconds from the
first one: a batch that never comes (a match voided after the header was written, a stream
cut off and re-subscribed) delays learning by at most that, and then the agent learns what it
has. A batch of a later round ends the wait at once (the referee plays rounds in order, so the
earlier round is complete). A header without a count (0: a referee from before the field, or a
``PlayMatches`` reply) keeps the older rule: whatever arrives within ``UNSTATED_GAP`` seconds of
the previous batch."""

from __future__ import annotations

import logging
import queue
import time

from services.gen.league.v1 import referee_pb2

UNSTATED_GAP = 0.002
"""Seconds to wait for one more batch when the header does not state a count."""

log = logging.getLogger("league.agent")


def round_batches(batch: referee_pb2.TrajectoryBatch, agent_id: str) -> int:
    """How many batches of ``batch``'s round seat ``agent_id``, as its header states (0: not
    stated, or the agent is not seated in it)."""
    return next((s.round_batches for s in batch.seats if s.agent_id == agent_id), 0)


class RoundInbox:
    """The agent's queue of broadcast batches (``put`` from the stream reader, ``None`` when
    the broadcast ends) and the learner's ``take`` of the next round's batches."""

    def __init__(self, agent_id: str, round_wait: float) -> None:
        self.agent_id = agent_id
        self.round_wait = round_wait
        self._queue: queue.Queue = queue.Queue()
        self._held: referee_pb2.TrajectoryBatch | None = None  # the first batch of the next round, seen early

    def put(self, batch: referee_pb2.TrajectoryBatch | None) -> None:
        self._queue.put(batch)

    def _get(self, timeout: float | None):
        """The next batch (the held one first); ``queue.Empty`` after ``timeout`` seconds."""
        if self._held is not None:
            batch, self._held = self._held, None
            return batch
        if timeout is not None and timeout <= 0:
            raise queue.Empty
        return self._queue.get(timeout=timeout)

    def take(self) -> tuple[list[referee_pb2.TrajectoryBatch], bool]:
        """Block for the next batch, then gather the rest of its round; return the batches to
        learn as one step and whether the broadcast has ended (a ``None`` was taken)."""
        first = self._get(None)
        if first is None:
            return [], True
        expected = round_batches(first, self.agent_id)
        batches = [first]
        if expected == 0:  # not stated: what arrives within UNSTATED_GAP of the previous batch
            while True:
                try:
                    batch = self._get(UNSTATED_GAP)
                except queue.Empty:
                    return batches, False
                if batch is None:
                    return batches, True
                batches.append(batch)
        deadline = time.monotonic() + self.round_wait
        while len(batches) < expected:
            try:
                batch = self._get(deadline - time.monotonic())
            except queue.Empty:
                log.warning("%s: %d of the %d batches of round %d arrived within %gs: learning those",
                            self.agent_id, len(batches), expected, first.round, self.round_wait)
                return batches, False
            if batch is None:
                return batches, True
            if batch.round != first.round:  # a later round began: this one is complete as it is
                self._held = batch
                return batches, False
            batches.append(batch)
        return batches, False
