"""Learning-aware update rules on differentiable games: naive, LOLA (look-ahead and Taylor),
HOLA-n, COLA and Meta-Value Learning (MeVa). See docs/meva.md."""

from league.meva.rules import DIFFERENTIABLE_RULES, make_rule, step

__all__ = ["DIFFERENTIABLE_RULES", "make_rule", "step"]
