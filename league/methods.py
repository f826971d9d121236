"""The Meta-MAPG family as data: each method is the meta-agent's inner rule, the peers'
rule, whether its inner learning rates are meta-learned, which gradient paths its
meta-objective keeps, and the form in which that gradient is estimated
(``league.estimators``). See docs/methods.md for the definitions and their sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from league.updates import LolaDice, PolicyGradient, UpdateRule
from league.estimators import get_estimator
from league.opponent_model import InferredPeerStep


@dataclass(frozen=True)
class Method:
    """How a method learns (inner rule) and meta-learns (outer objective).

    ``outer == "chain"``: the meta-objective averages the meta-agent's return at every joint
    policy of the chain; at ``l == 0`` it is the current-policy term, for ``l >= 1`` the
    own-learning path (``own``) and the peer-learning path (``peer``) are kept or cut.
    ``outer == "initial"``: the meta-objective is the method's own inner objective at
    ``phi_0`` against the training population (REINFORCE and LOLA-DiCE are trained as their
    own learning rules, not through the chain). ``estimator`` names the outer form.
    """

    name: str
    meta_rule: UpdateRule
    peer_rule: UpdateRule
    learn_lr: bool
    outer: str = "chain"
    own: bool = True
    peer: bool = True
    estimator: str = "dice"
    peer_access: str = "direct"
    """``direct``: the meta-objective differentiates through the peers' real parameters
    (centralized meta-training); ``inferred``: through parameters fitted to the peers'
    observed actions (opponent modeling, ``league.opponent_model``)."""

    @property
    def real_peer_rule(self) -> UpdateRule:
        """The rule real peers follow when they play the meta-agent (meta-test, validation):
        ``peer_rule`` itself, except for opponent modeling, whose ``peer_rule`` is the
        meta-agent's replica on inferred parameters and whose peers learn by policy gradient."""
        return PolicyGradient(see_peers=True) if self.peer_access == "inferred" else self.peer_rule


def _meta_mapg(lookahead: int, plain: bool) -> dict:
    pg = PolicyGradient(see_peers=True, plain=plain)
    return dict(meta_rule=pg, peer_rule=pg, learn_lr=True)


def _meta_pg(lookahead: int, plain: bool) -> dict:
    pg = PolicyGradient(see_peers=False, plain=plain)
    return dict(meta_rule=pg, peer_rule=pg, learn_lr=True, peer=False)


def _no_own_learning(lookahead: int, plain: bool) -> dict:
    pg = PolicyGradient(see_peers=True, plain=plain)
    return dict(meta_rule=pg, peer_rule=pg, learn_lr=True, own=False)


def _meta_mapg_om(lookahead: int, plain: bool) -> dict:
    return dict(meta_rule=PolicyGradient(see_peers=True, plain=plain), peer_rule=InferredPeerStep(plain=plain),
                learn_lr=True, peer_access="inferred")


def _lola_dice(lookahead: int, plain: bool) -> dict:
    return dict(meta_rule=LolaDice(lookahead=lookahead), peer_rule=PolicyGradient(see_peers=True),
                learn_lr=False, outer="initial")


def _reinforce(lookahead: int, plain: bool) -> dict:
    pg = PolicyGradient(see_peers=False)
    return dict(meta_rule=pg, peer_rule=pg, learn_lr=False, outer="initial")


METHODS: dict[str, Callable[[int, bool], dict]] = {
    "meta-mapg": _meta_mapg,
    "meta-pg": _meta_pg,
    "no-own-learning": _no_own_learning,
    "meta-mapg-om": _meta_mapg_om,
    "lola-dice": _lola_dice,
    "reinforce": _reinforce,
}
METHOD_NAMES = tuple(METHODS)


def make_method(spec: str, lookahead: int = 1, estimator: str = "dice") -> Method:
    """The method ``spec`` with its meta-gradient in the form ``estimator``; ``lookahead``
    applies to ``lola-dice``. A spec ``name:form`` (e.g. ``meta-mapg:authors``) overrides
    the estimator, so that forms can run side by side in one experiment. The estimator
    decides whether the chain's inner steps are differentiated as DiCE steps or as plain
    functions of fixed data."""
    name, _, form = spec.partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    est = get_estimator(form or estimator)
    return Method(spec, estimator=est.name, **METHODS[name](lookahead, est.plain_inner))
