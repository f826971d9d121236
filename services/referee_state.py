"""The referee's durable state: what a restarted referee needs to resume the league (round
counter, voided-match count, chains and their curves, each member's record, the
matchmaking generator), saved as JSON atomically (write a temporary file, fsync, rename)
so a crash leaves either the previous state or the new one, never a torn file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import torch

from services.durable import write_atomically

VERSION = 1


def encode_generator(generator: torch.Generator) -> str:
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode()


def decode_generator(text: str) -> torch.Generator:
    generator = torch.Generator()
    generator.set_state(torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8))
    return generator


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    write_atomically(path, lambda f: f.write(json.dumps({"version": VERSION, **state}).encode()))


def load(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none; ValueError for a file of another version."""
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("version") != VERSION:
        raise ValueError(f"{path} holds referee state version {state.get('version')}, this referee reads {VERSION}")
    return state
