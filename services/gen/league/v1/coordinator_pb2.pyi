from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CoordinatorStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CoordinatorStatus(_message.Message):
    __slots__ = ("mode", "iteration", "iterations", "last_objective", "curve", "state")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    iteration: int
    iterations: int
    last_objective: float
    curve: _containers.RepeatedScalarFieldContainer[float]
    state: str
    def __init__(self, mode: _Optional[str] = ..., iteration: _Optional[int] = ..., iterations: _Optional[int] = ..., last_objective: _Optional[float] = ..., curve: _Optional[_Iterable[float]] = ..., state: _Optional[str] = ...) -> None: ...
