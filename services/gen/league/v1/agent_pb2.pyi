from services.gen.league.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class AgentDescription(_message.Message):
    __slots__ = ("agent_id", "protocol_version", "env", "obs_dim", "n_actions", "policy_class", "policy_config_json", "learning_rule", "rule_config_json", "capabilities", "versions", "n_players", "env_kwargs_json", "observation_space_json", "action_space_json")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    OBS_DIM_FIELD_NUMBER: _ClassVar[int]
    N_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_CLASS_FIELD_NUMBER: _ClassVar[int]
    POLICY_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    N_PLAYERS_FIELD_NUMBER: _ClassVar[int]
    ENV_KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SPACE_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTION_SPACE_JSON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    protocol_version: int
    env: str
    obs_dim: int
    n_actions: int
    policy_class: str
    policy_config_json: str
    learning_rule: str
    rule_config_json: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.ScalarMap[str, int]
    n_players: int
    env_kwargs_json: str
    observation_space_json: str
    action_space_json: str
    def __init__(self, agent_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., env: _Optional[str] = ..., obs_dim: _Optional[int] = ..., n_actions: _Optional[int] = ..., policy_class: _Optional[str] = ..., policy_config_json: _Optional[str] = ..., learning_rule: _Optional[str] = ..., rule_config_json: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., versions: _Optional[_Mapping[str, int]] = ..., n_players: _Optional[int] = ..., env_kwargs_json: _Optional[str] = ..., observation_space_json: _Optional[str] = ..., action_space_json: _Optional[str] = ...) -> None: ...

class GetParametersRequest(_message.Message):
    __slots__ = ("kind", "min_version", "wait_seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    min_version: int
    wait_seconds: float
    def __init__(self, kind: _Optional[str] = ..., min_version: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class PushResult(_message.Message):
    __slots__ = ("kind", "version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    version: int
    def __init__(self, kind: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
