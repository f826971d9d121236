"""How each deep MATRL variant (``league.matrl.deep.VARIANTS``) splits between the coordinator and
the agents of the league, declared per variant instead of branched on its name.

A league round is always: every agent's PPO step (predicted parameters), then the coordinator
pushes each agent a Nash weight ``w`` and its peers' log importance weight, then the agent
computes its next parameters. A variant declares

- ``metagame``: whether the coordinator builds and solves the meta-game for ``w``
  (``round_metagame``, ``nash_weights``), or sets every seat's ``w = 1`` (the peers'
  *predicted* policies) without one;
- ``response``: what the agent does with ``w`` (:data:`RESPONSES`): ``best_response``
  (``league.matrl.deep.best_response`` against the peers' mixtures) or ``interpolate``
  (``league.matrl.deep.interpolate``, the parameters ``(1 - w) theta + w theta_hat``; no best
  response).

So ``il`` is "no meta-game, ``w = 1``, interpolate" (``theta_hat`` itself, exactly),
``il_pp`` "no meta-game, ``w = 1``, best response", ``matrl_no_br`` "meta-game, interpolate"
and ``matrl`` "meta-game, best response": the embedded variants' arithmetic, step for step.
"""

from __future__ import annotations

from dataclasses import dataclass


__all__ = ["VariantProtocol", "PROTOCOLS", "RESPONSES"]

RESPONSES = ("best_response", "interpolate")
"""What an agent may do with its pushed Nash weight (sent as the index in this tuple)."""


@dataclass(frozen=True)
class VariantProtocol:
    """One variant's split between the coordinator and the agents (module docstring)."""

    metagame: bool
    """The coordinator builds and solves the meta-game for the Nash weights; False: every
    seat's weight is 1 and no meta-game is built."""
    response: str
    """The agent's next parameters from the pushed weight: one of :data:`RESPONSES`."""

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"response {self.response!r}: known {', '.join(RESPONSES)}")


#: Each variant of ``league.matrl.deep.VARIANTS`` as the league runs it.
PROTOCOLS: dict[str, VariantProtocol] = {
    "il": VariantProtocol(metagame=False, response="interpolate"),
    "il_pp": VariantProtocol(metagame=False, response="best_response"),
    "matrl_no_br": VariantProtocol(metagame=True, response="interpolate"),
    "matrl": VariantProtocol(metagame=True, response="best_response"),
}

