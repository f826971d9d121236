"""Where the learning code's tensors live: a config's ``device`` string checked once, a seeded
random stream on that device, and the move back to the CPU of whatever leaves the learning
code (checkpoints, JSON).

Everything in the Meta-MAPG and LOLA-DiCE paths takes its device from the config (through
:func:`resolve_device`) or from an input tensor or generator, never from the process's
default device; ``tests/test_device.py`` checks this on a CPU-only machine (see
docs/speed.md, "Device").
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["DEVICE_AVAILABLE", "resolve_device", "seeded_generator", "to_device", "to_cpu"]

#: Device types a config may name, each with whether this machine has one now.
DEVICE_AVAILABLE: dict[str, Callable[[], bool]] = {
    "cpu": lambda: True,
    "cuda": torch.cuda.is_available,
}


def resolve_device(value: str, field: str = "device") -> torch.device:
    """The ``torch.device`` of a config's ``field``; one ``ValueError`` naming the field when
    the string is not a device, not a supported type, or (``cuda``) not present here."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{field} = {value!r} is not a torch device ({e})") from None
    available = DEVICE_AVAILABLE.get(device.type)
    if available is None:
        raise ValueError(f"{field} = {value!r}: device type {device.type!r} is not supported; "
                         f"known: {', '.join(DEVICE_AVAILABLE)}")
    if not available():
        raise ValueError(f"{field} = {value!r}, but torch.{device.type}.is_available() is false on this machine "
                         f"(set {field} = \"cpu\")")
    return device


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A random stream on ``device`` (a generator draws only tensors on its own device). On the
    CPU it is exactly ``torch.Generator().manual_seed(seed)``; a CUDA stream of the same seed
    gives other numbers (another generator algorithm)."""
    return torch.Generator(device=device).manual_seed(seed)


def to_device(tree: Any, device: torch.device | str) -> Any:
    """``tree`` (tensors in nested dicts, lists and tuples) with every tensor on ``device``;
    a tensor already there is returned as it is (no copy)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree


def to_cpu(tree: Any) -> Any:
    """:func:`to_device` to the CPU: what is saved or reported, so a checkpoint written on a GPU
    loads on a CPU-only machine."""
    return to_device(tree, "cpu")
