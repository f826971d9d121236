"""Bounds on every request field of the league's services, and the checks that enforce them.

Every RPC handler validates its request with these before acting on it; a breach is a
:class:`~services.wire.WireError` carrying the contract status code (INVALID_ARGUMENT
unless said otherwise) and a one-line message, so a hostile or broken caller gets an answer
and changes nothing. No sockets here."""

from __future__ import annotations

import math
import re

import grpc

from services.wire import WireError

ID_MAX_CHARS = 64
"""Agent, match and chain ids: 1-64 characters of ``[A-Za-z0-9._-]``, starting with a letter or digit."""
KIND_MAX_CHARS = 128
"""Parameter kinds (``policy``, ``lr``, ``policy@<chain>``): 1-128 characters of ``[A-Za-z0-9._@-]``."""
ADDRESS_MAX_CHARS = 255
"""``host:port`` addresses (host name, IPv4 or bracketed IPv6; port 1-65535)."""
MAX_MEMBERS = 256
"""Members one referee holds at once (Join answers RESOURCE_EXHAUSTED beyond)."""
MAX_STREAMS_PER_AGENT = 2
"""Open Subscribe streams per agent id (a reconnecting agent's old stream may linger briefly)."""
MAX_ANONYMOUS_STREAMS = 4
"""Open Subscribe streams with an empty agent id (observers of every batch)."""
MAX_PENDING_STREAMS = 32
"""Open Subscribe streams of ids that are not (yet) members: an agent subscribes just before it joins."""
STREAM_JOIN_GRACE = 30.0
"""Seconds a stream of an id that is not a member stays open (FAILED_PRECONDITION after)."""
MAX_STREAMS = MAX_MEMBERS * MAX_STREAMS_PER_AGENT + MAX_ANONYMOUS_STREAMS
"""Open Subscribe streams in all (each a task and a queue of at most SUBSCRIBER_BACKLOG
batches on the referee's event loop; no thread)."""
REFEREE_UNARY_WORKERS = 8
"""Threads serving the referee's quick unary RPCs (Status, Heartbeat, Leave), however many
streams are open."""
REFEREE_SLOW_WORKERS = 16
"""Threads serving the referee's Join (up to two round trips to the joining agent) and
PlayMatches (fetches and a rollout): a burst of joins queues here, never the quick RPCs."""
SUBSCRIBER_BACKLOG = 1024
"""Batches queued for one subscriber; a subscriber that falls further behind is cut off
(RESOURCE_EXHAUSTED) and resubscribes."""
MAX_MATCHES = 256
"""Matches in one PlayMatches request."""
MAX_EPISODES = 4096
"""Episodes (K) per match of a PlayMatches request."""
MAX_HORIZON = 1000
"""Steps (H) per episode of a PlayMatches request."""
MAX_STEP = 10_000
"""Chain step of a requested match."""
MAX_RNG_STATE_BYTES = 16 * 1024
"""Generator state carried by PlayMatches (torch's CPU generator state is about 5 KiB)."""
MAX_WAIT_SECONDS = 30.0
"""Longest server-side wait of a long-poll parameter fetch."""
MAX_HIDDEN = 512
"""Largest LSTM width an agent may declare at join."""
MAX_CONFIG_JSON_CHARS = 4096
"""Policy and rule configs (JSON objects) of an agent description."""

LEARNING_RATE_RANGE = (0.0, 100.0)
"""Inner learning rates a push may set (kind ``lr``): a step size is >= 0, and 100 is far
above any rate the league's games learn with (personas 0.01-1, learned rates ~0.1-1) while
far below where a step overflows."""
PUSHED_RANGES: dict[str, tuple[float, float] | dict[str, tuple[float, float]]] = {
    "lr": LEARNING_RATE_RANGE,
    # the coordinator's MATRL round message (agents/matrl.py); its peer_log_ratio is any finite value
    "matrl-mixture": {"round": (0, MAX_STEP), "nash_weight": (0.0, 1.0), "br_lr": LEARNING_RATE_RANGE,
                      "clip": (0.0, 100.0)},
    # its second phase: commit the response prepared from that round's mixture
    "matrl-commit": {"round": (0, MAX_STEP)},
    # the trust-region step's settings: rule matrl (kl_coef, trust_steps) or ppo-matrl (every
    # league.matrl.ppo.PPOConfig field, the seat generators' seed, the best response's steps and the
    # variant's response: an index in league.matrl.variant_protocol.RESPONSES)
    "matrl-trust": {"kl_coef": (0.0, 1e4), "trust_steps": (1, 100), "lr": LEARNING_RATE_RANGE,
                    "epochs": (1, 1000), "minibatches": (1, MAX_EPISODES), "clip": (0.0, 100.0),
                    "entropy_coef": (0.0, 1e4), "target_kl": (-1.0, 1e4), "value_coef": (0.0, 1e4),
                    "critic_lr": LEARNING_RATE_RANGE, "critic_epochs": (0, 1000), "gamma": (0.0, 1.0),
                    "lam": (0.0, 1.0), "normalize_advantages": (0, 1), "hidden": (1, MAX_HIDDEN), "layers": (1, 16),
                    "activation": (0, 2), "seed": (0, 2**62), "br_steps": (0, 1000),
                    "response": (0, 1)},
}
"""Parameter kinds that hold hyperparameters -> the closed range every pushed value must lie
in, or per tensor name (names not listed are checked as finite only)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def _shown(value: str, limit: int = 40) -> str:
    """A bounded repr of a client-supplied string, for error messages and logs."""
    return repr(value[:limit] + "...") if len(value) > limit else repr(value)


def check_id(value: str, what: str = "agent_id") -> str:
    """An id of 1-64 characters of ``[A-Za-z0-9._-]``; returns it."""
    if not value:
        raise WireError(f"{what} is empty")
    if len(value) > ID_MAX_CHARS:
        raise WireError(f"{what} has {len(value)} characters, the limit is {ID_MAX_CHARS}")
    if not _ID.fullmatch(value):
        raise WireError(f"{what} {_shown(value)} may hold only letters, digits, '.', '_' and '-' "
                        "and must start with a letter or digit")
    return value


def check_kind(value: str) -> str:
    """A parameter kind of 1-128 characters of ``[A-Za-z0-9._@-]``; returns it."""
    if not value:
        raise WireError("kind is empty")
    if len(value) > KIND_MAX_CHARS:
        raise WireError(f"kind has {len(value)} characters, the limit is {KIND_MAX_CHARS}")
    if not _KIND.fullmatch(value):
        raise WireError(f"kind {_shown(value)} may hold only letters, digits, '.', '_', '@' and '-'")
    return value


def check_address(value: str, what: str = "address") -> str:
    """A ``host:port`` of at most 255 characters with a port in 1-65535; returns it."""
    if not value:
        raise WireError(f"{what} is empty")
    if len(value) > ADDRESS_MAX_CHARS:
        raise WireError(f"{what} has {len(value)} characters, the limit is {ADDRESS_MAX_CHARS}")
    host, sep, port = value.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise WireError(f"{what} {_shown(value)} is not host:port (port 1-65535)")
    return value


def check_wait(seconds: float) -> float:
    """A long-poll wait: finite and >= 0; returns it capped at MAX_WAIT_SECONDS."""
    if not math.isfinite(seconds) or seconds < 0:
        raise WireError(f"wait_seconds must be a finite number >= 0, got {seconds}")
    return min(seconds, MAX_WAIT_SECONDS)


def check_at_most(value: int, limit: int, what: str,
                  code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> int:
    """``value <= limit``; returns it."""
    if value > limit:
        raise WireError(f"{what} is {value}, the limit is {limit}", code)
    return value


def check_pushed_range(kind: str, params) -> None:
    """Every value of a pushed hyperparameter kind (:data:`PUSHED_RANGES`) lies in its range."""
    ranges = PUSHED_RANGES.get(kind)
    if ranges is None:
        return
    for name, t in params.items():
        bounds = ranges.get(name) if isinstance(ranges, dict) else ranges
        if bounds is None:
            continue
        low, high = bounds
        values = t.detach().double()
        if values.numel() and not bool(((values >= low) & (values <= high)).all()):
            worst = values[(values < low) | (values > high) | values.isnan()].flatten()[0].item()
            raise WireError(f"push of {kind!r}: {name} holds {worst:.6g}, outside the allowed [{low:g}, {high:g}]")
