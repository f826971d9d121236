"""Trajectory batches on the wire (the n-seat contract of ``TrajectoryBatch``, see
proto/league/v1/referee.proto and docs/league.md): the tensors of one match's episodes, a
batch sent whole or, over the one-message limit, as checksummed parts, and a stream of
messages read back into whole batches.

A batch's tensors are a named tensor set like a parameter set, so a chunked batch reuses the
parameter codec of :mod:`services.wire` as it is: ``chunk_parameters`` cuts the payload into
``CHUNK_BYTES`` pieces with a CRC32C of the whole payload in the first piece's header, and
``assemble_parameters`` validates names, sizes, order and the checksum before any tensor is
handed out. No sockets here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import torch

from league.rollout import Episodes
from services.gen.league.v1 import referee_pb2
from services.server import MAX_MESSAGE_BYTES
from services.wire import (CHUNK_BYTES, WireError, assemble_parameters, chunk_parameters, decode_tensor,
                           encode_tensor, nbytes, wire_dtype)

KIND = "trajectory"
"""Kind of the ParameterChunk parts of a chunked batch."""
BATCH_CHUNK_LIMIT = MAX_MESSAGE_BYTES - 256 * 1024
"""Tensor bytes above which a batch travels in parts (the rest of a message stays far below
the 256 KiB margin: ids, seats and a part's header)."""
MAX_BATCH_BYTES = 64 * 1024 * 1024
"""Largest batch (tensor bytes) a referee plays and a receiver reassembles: 16x the message
limit, room for 64 MaMuJoCo episodes of 1000 steps."""
MAX_PLAY_BYTES = 256 * 1024 * 1024
"""Largest PlayMatches reply (all its batches)."""
SEAT_OBS = "seat_obs/"
_SINGLE = ("obs", "actions", "rewards", "dones")


def batch_tensors(obs: Sequence[torch.Tensor], actions: Sequence[torch.Tensor], rewards: torch.Tensor,
                  dones: torch.Tensor) -> dict[str, torch.Tensor]:
    """The named tensors of one match: ``obs[k] [K, H, D_k]`` and ``actions[k]`` (long
    ``[K, H]`` or float ``[K, H, *shape]``) per seat, ``rewards [K, H, n]``, ``dones [K, H]``.
    Observations equal at every seat are sent once as ``obs`` (lossless: the iterated matrix
    games' joint state), else seat by seat; actions are stacked on dim 2, so every seat's
    actions must share one shape and dtype."""
    if len(obs) != len(actions) or len(obs) != rewards.shape[-1]:
        raise ValueError(f"{len(obs)} seats of observations, {len(actions)} of actions, {rewards.shape[-1]} of rewards")
    kinds = {(a.dtype, tuple(a.shape)) for a in actions}
    if len(kinds) != 1:
        raise ValueError(f"the seats' actions differ in dtype or shape {sorted(map(str, kinds))}: the wire's "
                         "actions tensor stacks them")
    shared = all(o.shape == obs[0].shape and torch.equal(o, obs[0]) for o in obs[1:])
    seen = {"obs": obs[0]} if shared else {f"{SEAT_OBS}{k}": o for k, o in enumerate(obs)}
    return {**seen, "actions": torch.stack(list(actions), dim=2), "rewards": rewards, "dones": dones.to(torch.bool)}


def batch_step_bytes(game) -> int:
    """Wire bytes one step of one episode adds to an iterated matrix game's trajectory batch
    (the shared observation, int64 actions and float rewards per seat, a done flag)."""
    item = torch.finfo(game.dtype).bits // 8
    return item * game.obs_dim + (8 + item) * game.n_agents + 1


def env_step_bytes(env, dtype: torch.dtype = torch.float32) -> int:
    """Wire bytes one step of one episode adds, at most, to a trajectory batch of any
    environment: every seat's flat observation (counted per seat, though seats that share
    one state send it once), its action (int64 for ``Discrete``, ``dtype`` for ``Box``), a
    reward per seat and a done flag."""
    import gymnasium

    from league.envs.base import flat_dim

    item = torch.finfo(dtype).bits // 8
    obs = sum(flat_dim(space) for space in env.observation_spaces) * item
    actions = sum(8 if isinstance(space, gymnasium.spaces.Discrete) else item * math.prod(space.shape)
                  for space in env.action_spaces)
    return obs + actions + item * env.n_agents + 1


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Wire size of a batch's tensors."""
    return sum(nbytes(wire_dtype(t.dtype), list(t.shape)) for t in tensors.values())


def encode_batch(header: referee_pb2.TrajectoryBatch, tensors: dict[str, torch.Tensor],
                 limit: int = BATCH_CHUNK_LIMIT, chunk_bytes: int = CHUNK_BYTES) -> list[referee_pb2.TrajectoryBatch]:
    """The messages of one batch: ``header`` (ids, seats, chain fields; no tensors) with its
    tensors, whole when they fit in ``limit`` bytes, else as consecutive parts."""
    if tensor_bytes(tensors) <= limit:
        batch = referee_pb2.TrajectoryBatch()
        batch.CopyFrom(header)
        _fill(batch, tensors)
        return [batch]
    messages = []
    for chunk in chunk_parameters(KIND, 0, tensors, chunk_bytes=chunk_bytes, checksum="crc32c"):
        if chunk.index == 0:
            first = referee_pb2.TrajectoryBatch()
            first.CopyFrom(header)
            first.part.CopyFrom(chunk)
            messages.append(first)
        else:
            messages.append(referee_pb2.TrajectoryBatch(match_id=header.match_id, part=chunk))
    return messages


def _fill(batch: referee_pb2.TrajectoryBatch, tensors: dict[str, torch.Tensor]) -> None:
    """Set a batch's tensor fields from named tensors (names checked)."""
    seats = sorted(int(name[len(SEAT_OBS):]) for name in tensors if name.startswith(SEAT_OBS)
                   and name[len(SEAT_OBS):].isdigit())
    unknown = set(tensors) - set(_SINGLE) - {f"{SEAT_OBS}{k}" for k in seats}
    missing = {"actions", "rewards", "dones"} - set(tensors)
    if unknown or missing or ("obs" in tensors) == bool(seats) or seats != list(range(len(seats))):
        raise WireError(f"a trajectory batch holds tensors {sorted(tensors)}: expected actions, rewards, dones and "
                        f"either obs or {SEAT_OBS}0..n-1")
    for name in _SINGLE:
        if name in tensors:
            getattr(batch, name).CopyFrom(encode_tensor(tensors[name]))
    batch.seat_obs.extend(encode_tensor(tensors[f"{SEAT_OBS}{k}"]) for k in seats)


def read_batches(messages: Iterable[referee_pb2.TrajectoryBatch],
                 max_bytes: int = MAX_BATCH_BYTES) -> Iterator[referee_pb2.TrajectoryBatch]:
    """Whole batches from a stream of messages: a batch sent whole passes through; the parts
    of a chunked one are pulled as they arrive, validated (order, sizes, checksum, tensor
    names) and returned as one batch with its tensor fields set. WireError on any breach."""
    stream = iter(messages)
    for message in stream:
        if not message.HasField("part"):
            yield message
            continue
        head = message

        def parts() -> Iterator:
            yield head.part
            for _ in range(head.part.count - 1):
                nxt = next(stream, None)
                if nxt is None:
                    return  # assemble_parameters reports the missing parts
                if not nxt.HasField("part") or nxt.match_id != head.match_id:
                    raise WireError(f"batch {head.match_id}: a part of another batch (or a whole batch) arrived "
                                    "before its last part")
                yield nxt.part

        got = assemble_parameters(parts(), max_bytes)
        if got.kind != KIND or got.params is None:
            raise WireError(f"batch {head.match_id}: parts of kind {got.kind!r}, expected {KIND!r}")
        batch = referee_pb2.TrajectoryBatch()
        batch.CopyFrom(head)
        batch.ClearField("part")
        _fill(batch, got.params)
        yield batch


def response_messages(batches: Sequence[referee_pb2.TrajectoryBatch], rng_state: bytes = b"",
                      limit: int = BATCH_CHUNK_LIMIT) -> Iterator[referee_pb2.PlayMatchesResponse]:
    """PlayMatches replies: batch messages packed in order, each reply under ``limit`` bytes
    (a message larger than that alone is a part or a whole batch under the limit already);
    ``rng_state`` rides on the last reply."""
    pending: list[referee_pb2.TrajectoryBatch] = []
    size = 0
    for batch in batches:
        n = batch.ByteSize()
        if pending and size + n > limit:
            yield referee_pb2.PlayMatchesResponse(batches=pending)
            pending, size = [], 0
        pending.append(batch)
        size += n
    yield referee_pb2.PlayMatchesResponse(batches=pending, rng_state=rng_state)


def episodes_of(batch: referee_pb2.TrajectoryBatch) -> Episodes:
    """One batch's episodes (a leading chain dimension of 1) as ``league.rollout.Episodes``:
    the shared observation or every seat's own, joint discrete actions or every seat's
    ``Box`` actions, and the dones (which mask the padding after an episode's end)."""
    actions = decode_tensor(batch.actions, "actions").unsqueeze(0)  # [1, K, H, n, *shape]
    rewards = decode_tensor(batch.rewards, "rewards").unsqueeze(0)
    dones = decode_tensor(batch.dones, "dones").unsqueeze(0) if batch.HasField("dones") else None
    seat_obs = [decode_tensor(t, f"seat_obs[{k}]").unsqueeze(0) for k, t in enumerate(batch.seat_obs)] or None
    obs = seat_obs[0] if seat_obs else decode_tensor(batch.obs, "obs").unsqueeze(0)
    discrete = actions.dtype == torch.long
    return Episodes(obs, actions if discrete else None, rewards, dones, seat_obs,
                    None if discrete else list(actions.unbind(3)))
