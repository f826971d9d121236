from services.gen.league.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("agent_id", "address", "protocol_version", "role", "metrics_address")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    address: str
    protocol_version: int
    role: str
    metrics_address: str
    def __init__(self, agent_id: _Optional[str] = ..., address: _Optional[str] = ..., protocol_version: _Optional[int] = ..., role: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("lease_seconds", "round")
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: float
    round: int
    def __init__(self, lease_seconds: _Optional[float] = ..., round: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lease_seconds", "round")
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: float
    round: int
    def __init__(self, lease_seconds: _Optional[float] = ..., round: _Optional[int] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class Seat(_message.Message):
    __slots__ = ("agent_id", "behaviour_version", "round_batches")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_BATCHES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    behaviour_version: int
    round_batches: int
    def __init__(self, agent_id: _Optional[str] = ..., behaviour_version: _Optional[int] = ..., round_batches: _Optional[int] = ...) -> None: ...

class TrajectoryBatch(_message.Message):
    __slots__ = ("match_id", "round", "env", "seats", "obs", "actions", "rewards", "dones", "step", "chain_id", "last_step", "seat_obs", "part")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    OBS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    DONES_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    SEAT_OBS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    round: int
    env: str
    seats: _containers.RepeatedCompositeFieldContainer[Seat]
    obs: _tensor_pb2.Tensor
    actions: _tensor_pb2.Tensor
    rewards: _tensor_pb2.Tensor
    dones: _tensor_pb2.Tensor
    step: int
    chain_id: str
    last_step: bool
    seat_obs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    part: _tensor_pb2.ParameterChunk
    def __init__(self, match_id: _Optional[str] = ..., round: _Optional[int] = ..., env: _Optional[str] = ..., seats: _Optional[_Iterable[_Union[Seat, _Mapping]]] = ..., obs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., actions: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., rewards: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dones: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., step: _Optional[int] = ..., chain_id: _Optional[str] = ..., last_step: _Optional[bool] = ..., seat_obs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., part: _Optional[_Union[_tensor_pb2.ParameterChunk, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemberStatus(_message.Message):
    __slots__ = ("agent_id", "address", "role", "policy_version", "lease_remaining_seconds", "episodes", "mean_return", "matches")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    MEAN_RETURN_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    address: str
    role: str
    policy_version: int
    lease_remaining_seconds: float
    episodes: int
    mean_return: float
    matches: int
    def __init__(self, agent_id: _Optional[str] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., policy_version: _Optional[int] = ..., lease_remaining_seconds: _Optional[float] = ..., episodes: _Optional[int] = ..., mean_return: _Optional[float] = ..., matches: _Optional[int] = ...) -> None: ...

class LeagueStatus(_message.Message):
    __slots__ = ("round", "members", "aborted_matches", "protocol_version", "env", "n_players", "env_kwargs_json")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ABORTED_MATCHES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    N_PLAYERS_FIELD_NUMBER: _ClassVar[int]
    ENV_KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    round: int
    members: _containers.RepeatedCompositeFieldContainer[MemberStatus]
    aborted_matches: int
    protocol_version: int
    env: str
    n_players: int
    env_kwargs_json: str
    def __init__(self, round: _Optional[int] = ..., members: _Optional[_Iterable[_Union[MemberStatus, _Mapping]]] = ..., aborted_matches: _Optional[int] = ..., protocol_version: _Optional[int] = ..., env: _Optional[str] = ..., n_players: _Optional[int] = ..., env_kwargs_json: _Optional[str] = ...) -> None: ...

class PinnedSeat(_message.Message):
    __slots__ = ("agent_id", "kind", "version")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    kind: str
    version: int
    def __init__(self, agent_id: _Optional[str] = ..., kind: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class MatchSpec(_message.Message):
    __slots__ = ("match_id", "seats", "chain_id", "step", "last_step")
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SEATS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    match_id: str
    seats: _containers.RepeatedCompositeFieldContainer[PinnedSeat]
    chain_id: str
    step: int
    last_step: bool
    def __init__(self, match_id: _Optional[str] = ..., seats: _Optional[_Iterable[_Union[PinnedSeat, _Mapping]]] = ..., chain_id: _Optional[str] = ..., step: _Optional[int] = ..., last_step: _Optional[bool] = ...) -> None: ...

class PlayMatchesRequest(_message.Message):
    __slots__ = ("matches", "episodes", "horizon", "rng_state")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    RNG_STATE_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[MatchSpec]
    episodes: int
    horizon: int
    rng_state: bytes
    def __init__(self, matches: _Optional[_Iterable[_Union[MatchSpec, _Mapping]]] = ..., episodes: _Optional[int] = ..., horizon: _Optional[int] = ..., rng_state: _Optional[bytes] = ...) -> None: ...

class PlayMatchesResponse(_message.Message):
    __slots__ = ("batches", "rng_state")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    RNG_STATE_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[TrajectoryBatch]
    rng_state: bytes
    def __init__(self, batches: _Optional[_Iterable[_Union[TrajectoryBatch, _Mapping]]] = ..., rng_state: _Optional[bytes] = ...) -> None: ...
