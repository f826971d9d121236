"""The coordinator's durable state (``league coordinator --state PATH``): written atomically
after every completed iteration, and mid-iteration where a mode asks (``CoordinatorMode.persist``:
the ``matrl`` mode at each decided round, before its commits are pushed), so a coordinator killed
at any moment restarts where it was saved with the learner, its optimisers and its random stream
exactly as they were.

The file is a ``torch.save`` of a dict of tensors, optimizer state dicts and plain values
(the learner's part comes from :meth:`league.meta_training.MetaTraining.state_dict`); it is
loaded with ``weights_only=True``, so reading it runs no pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from services.durable import write_atomically

VERSION = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (:func:`services.durable.write_atomically`)."""
    write_atomically(path, lambda f: torch.save({"version": VERSION, **state}, f))


def load(path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None when there is none. ValueError when the file is of another
    version or was written by a run whose ``expect`` keys (mode, method, seed) differ."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    if state.get("version") != VERSION:
        raise ValueError(f"{path} holds coordinator state version {state.get('version')}, this coordinator reads "
                         f"{VERSION}")
    for key, value in expect.items():
        if state.get(key) != value:
            raise ValueError(f"{path} was written by a run with {key} {state.get(key)!r}, not {value!r}: "
                             "give this run its own --state file")
    return state
