"""Gymnasium spaces on the wire: the small JSON encoding an agent's description uses to say
which observation and action spaces its policy is sized for, so the referee can check them
against its environment's seats before it admits the agent.

The encoding (a JSON object, keys sorted):

- ``Discrete(n)``: ``{"type": "Discrete", "n": n}`` (start 0, the only kind the environment
  seam carries);
- ``Box``: ``{"type": "Box", "shape": [...], "dtype": "float32", "low": L, "high": H}`` where
  ``L`` and ``H`` are a number when every element has that bound, else a nested list, and an
  infinite bound is the string ``"inf"`` or ``"-inf"`` (strict JSON has no infinity).

Why not ``str(space)`` or pickle: a string is not parseable back reliably and a pickle from an
untrusted peer is code; why not gymnasium's own serialisation: it has none for Box bounds.
No sockets here."""

from __future__ import annotations

import json
import math
from typing import Any

import gymnasium
import numpy as np

MAX_SPACE_JSON_CHARS = 64 * 1024
"""Longest space encoding accepted from a peer (a Box with per-element bounds of ~2000 floats)."""
MAX_SPACE_ELEMENTS = 1 << 16
"""Most elements a decoded Box may have (its bounds are materialised)."""
_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


def _bound(x: float) -> float | str:
    return ("inf" if x > 0 else "-inf") if math.isinf(x) else x


def _bounds(values: np.ndarray) -> Any:
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return _bound(float(flat[0]))
    return np.vectorize(lambda v: _bound(float(v)), otypes=[object])(values).tolist()


def space_to_json(space: gymnasium.Space) -> str:
    """The JSON encoding of a ``Discrete`` (from 0) or ``Box`` space; ValueError for others."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete spaces must start at 0, got {space}")
        return json.dumps({"type": "Discrete", "n": int(space.n)}, sort_keys=True)
    if isinstance(space, gymnasium.spaces.Box):
        return json.dumps({"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                           "low": _bounds(space.low), "high": _bounds(space.high)}, sort_keys=True)
    raise ValueError(f"unsupported space {space}; supported: Discrete, Box")


def _decode_bound(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    def number(v: Any) -> float:
        if v in ("inf", "-inf"):
            return float(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"Box {what} holds {str(v)[:40]!r}: expected a finite number, 'inf' or '-inf'")
        return float(v)

    if not isinstance(value, list):
        return np.full(shape, number(value))
    array = np.array(value, dtype=object)
    if array.shape != shape:
        raise ValueError(f"Box {what} has shape {list(array.shape)}, the space {list(shape)}")
    return np.vectorize(number, otypes=[float])(array)


def space_from_json(text: str) -> gymnasium.Space:
    """The space a JSON encoding describes; ValueError (one line) for anything malformed."""
    if not text:
        raise ValueError("no space given")
    if len(text) > MAX_SPACE_JSON_CHARS:
        raise ValueError(f"space encoding has {len(text)} characters, the limit is {MAX_SPACE_JSON_CHARS}")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"space encoding is not JSON ({err.msg})") from None
    except RecursionError:
        raise ValueError("space encoding nests too deeply") from None
    if not isinstance(spec, dict):
        raise ValueError("space encoding is not a JSON object")
    kind = spec.get("type")
    if kind == "Discrete":
        n = spec.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Discrete n must be a positive integer, got {str(n)[:40]!r}")
        return gymnasium.spaces.Discrete(n)
    if kind == "Box":
        shape = spec.get("shape")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
            raise ValueError(f"Box shape must be a list of at most 8 positive integers, got {str(shape)[:60]!r}")
        if math.prod(shape) > MAX_SPACE_ELEMENTS:
            raise ValueError(f"Box of shape {shape} has more than {MAX_SPACE_ELEMENTS} elements")
        dtype = spec.get("dtype")
        if dtype not in _DTYPES:
            raise ValueError(f"Box dtype {str(dtype)[:40]!r} is not one of {', '.join(_DTYPES)}")
        low = _decode_bound(spec.get("low"), tuple(shape), "low")
        high = _decode_bound(spec.get("high"), tuple(shape), "high")
        if np.any(low > high):
            raise ValueError("Box low exceeds high")
        return gymnasium.spaces.Box(low.astype(dtype), high.astype(dtype), tuple(shape), dtype=np.dtype(dtype))
    raise ValueError(f"space type {str(kind)[:40]!r} is not Discrete or Box")


def same_space(a: gymnasium.Space, b: gymnasium.Space) -> bool:
    """Equal kind, size, dtype and (Box) bounds, exactly: what a policy sized for ``a`` needs of ``b``."""
    if isinstance(a, gymnasium.spaces.Discrete) and isinstance(b, gymnasium.spaces.Discrete):
        return int(a.n) == int(b.n)
    if isinstance(a, gymnasium.spaces.Box) and isinstance(b, gymnasium.spaces.Box):
        return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.low, b.low)
                and np.array_equal(a.high, b.high))
    return False


def describe_space(space: gymnasium.Space) -> str:
    """A short human form for error messages: ``Discrete(5)``, ``Box(float64, (17,), [-inf, inf])``."""
    if isinstance(space, gymnasium.spaces.Box):
        lo, hi = space.low.reshape(-1), space.high.reshape(-1)
        bounds = (f"[{lo[0]:g}, {hi[0]:g}]" if lo.size and np.all(lo == lo[0]) and np.all(hi == hi[0])
                  else "per-element bounds")
        return f"Box({space.dtype}, {tuple(space.shape)}, {bounds})"
    return str(space)
