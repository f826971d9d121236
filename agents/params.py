"""The agent's parameter store: versioned parameter sets by kind, with compare-and-set.

Each kind ("policy", "lr", "value", ...) holds a dict of tensors at a version that starts at 1
and only grows. The agent's own learning replaces a kind with `set`; the coordinator's pushes
go through `compare_and_set`, which is all or nothing. Stored tensors are never mutated in
place, so a snapshot can be read without copying while the store moves on.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import grpc
import torch

from services.wire import check_finite, check_structure


class UnknownKind(KeyError):
    """A parameter kind the store does not hold."""

    def __init__(self, kind: str, kinds: list[str]) -> None:
        super().__init__(kind)
        self.kind, self.kinds = kind, kinds

    def __str__(self) -> str:
        return f"unknown parameter kind {self.kind!r}; this agent has: {', '.join(self.kinds) or '(none)'}"


class StaleVersion(Exception):
    """compare_and_set saw a version other than the expected one (gRPC ABORTED)."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, kind: str, expected: int, current: int) -> None:
        super().__init__(f"stale version for {kind!r}: expected {expected}, current is {current}")
        self.kind, self.expected, self.current = kind, expected, current


def _copy(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous copies (so callers can neither alias nor mutate the store)."""
    return {name: t.detach().clone().contiguous() for name, t in params.items()}


class ParameterStore:
    """Thread-safe, versioned parameter sets by kind."""

    def __init__(self, initial: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> None:
        self._cond = threading.Condition()
        self._params: dict[str, dict[str, torch.Tensor]] = {}
        self._versions: dict[str, int] = {}
        for kind, params in (initial or {}).items():
            self.set(kind, params)

    def kinds(self) -> list[str]:
        """The kinds held, sorted."""
        with self._cond:
            return sorted(self._params)

    def versions(self) -> dict[str, int]:
        """Current version of every kind."""
        with self._cond:
            return dict(self._versions)

    def version(self, kind: str) -> int:
        """Current version of one kind (0 if the kind is not held)."""
        with self._cond:
            return self._versions.get(kind, 0)

    def snapshot(self, kind: str) -> tuple[int, dict[str, torch.Tensor]]:
        """(version, params) without copying; the tensors must be treated as read-only."""
        with self._cond:
            if kind not in self._params:
                raise UnknownKind(kind, sorted(self._params))
            return self._versions[kind], dict(self._params[kind])

    def get(self, kind: str) -> tuple[int, dict[str, torch.Tensor]]:
        """(version, copies of the params) of one kind; UnknownKind if not held."""
        version, params = self.snapshot(kind)
        return version, _copy(params)

    def set(self, kind: str, params: Mapping[str, torch.Tensor]) -> int:
        """Replace a kind with the agent's own update (creating it at version 1); return the new version."""
        copies = _copy(params)
        with self._cond:
            version = self._versions.get(kind, 0) + 1
            self._params[kind], self._versions[kind] = copies, version
            self._cond.notify_all()
            return version

    def compare_and_set(self, kind: str, expected_version: int, params: Mapping[str, torch.Tensor]) -> int:
        """Replace a kind if its version equals expected_version and params match its structure.

        Names, shapes and dtypes must equal the current ones and values must be finite;
        nothing is applied on any failure. Raises UnknownKind, StaleVersion or WireError.
        """
        copies = _copy(params)
        check_finite(copies, f"push of {kind!r}")
        with self._cond:
            if kind not in self._params:
                raise UnknownKind(kind, sorted(self._params))
            current = self._versions[kind]
            if expected_version != current:
                raise StaleVersion(kind, expected_version, current)
            check_structure(f"push of {kind!r}", self._params[kind], copies)
            version = current + 1
            self._params[kind], self._versions[kind] = copies, version
            self._cond.notify_all()
            return version

    def restore(self, kind: str, version: int, params: Mapping[str, torch.Tensor]) -> None:
        """Set a kind at a given version (resuming from a checkpoint)."""
        copies = _copy(params)
        with self._cond:
            self._params[kind], self._versions[kind] = copies, version
            self._cond.notify_all()

    def discard(self, kind: str) -> None:
        """Forget a kind (a finished chain's parameters)."""
        with self._cond:
            self._params.pop(kind, None)
            self._versions.pop(kind, None)

    def wait_for_version(self, kind: str, min_version: int, timeout: float | None) -> bool:
        """Block until kind reaches min_version or timeout (seconds) passes; True if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: self._versions.get(kind, 0) >= min_version, timeout)

