"""The Meta-MAPG family as data: each method is the meta-agent's inner rule, the peers'
rule, whether its inner learning rates are meta-learned, and which gradient paths its
meta-objective keeps. See docs/methods.md for the definitions and their sources."""

from __future__ import annotations

from dataclasses import dataclass

from league.chain import InnerRule, LolaDice, PolicyGradient


@dataclass(frozen=True)
class Method:
    """How a method learns (inner rule) and meta-learns (outer objective).

    ``outer == "chain"``: the meta-objective averages the meta-agent's return at every joint
    policy of the chain; at ``l == 0`` it is the current-policy term, for ``l >= 1`` the
    own-learning path (``own``) and the peer-learning path (``peer``) are kept or cut.
    ``outer == "initial"``: the meta-objective is the method's own inner objective at
    ``phi_0`` against the training population (REINFORCE and LOLA-DiCE are trained as their
    own learning rules, not through the chain).
    """

    name: str
    meta_rule: InnerRule
    peer_rule: InnerRule
    learn_lr: bool
    outer: str = "chain"
    own: bool = True
    peer: bool = True


def make_method(name: str, lookahead: int = 1) -> Method:
    """The method registry; ``lookahead`` applies to ``lola-dice``."""
    if name == "meta-mapg":
        return Method(name, PolicyGradient(see_peers=True), PolicyGradient(see_peers=True), learn_lr=True)
    if name == "meta-pg":
        return Method(name, PolicyGradient(see_peers=False), PolicyGradient(see_peers=False),
                      learn_lr=True, peer=False)
    if name == "no-own-learning":
        return Method(name, PolicyGradient(see_peers=True), PolicyGradient(see_peers=True),
                      learn_lr=True, own=False)
    if name == "lola-dice":
        return Method(name, LolaDice(lookahead=lookahead), PolicyGradient(see_peers=True),
                      learn_lr=False, outer="initial")
    if name == "reinforce":
        return Method(name, PolicyGradient(see_peers=False), PolicyGradient(see_peers=False),
                      learn_lr=False, outer="initial")
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")


METHOD_NAMES = ("meta-mapg", "meta-pg", "no-own-learning", "lola-dice", "reinforce")
