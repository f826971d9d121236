"""Normal-form values, the MATRL policy-space meta-game, and Nash solvers with their verifier.
See docs/matrl.md."""

from league.nash.metagame import action_values, build_metagame, corner_choices, exact_metagame, normal_form_value
from league.nash.solvers import (
    BATCHED_SOLVERS,
    NASH_SOLVERS,
    equilibria_2x2,
    is_epsilon_nash,
    nash_regret,
    select_equilibrium,
    solve_2x2_batched,
)

__all__ = [
    "normal_form_value", "action_values", "corner_choices", "build_metagame", "exact_metagame",
    "NASH_SOLVERS", "BATCHED_SOLVERS", "nash_regret", "is_epsilon_nash", "select_equilibrium",
    "solve_2x2_batched", "equilibria_2x2",
]
