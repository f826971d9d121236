"""MATRL (multi-agent trust region learning): the matrix-game learners with exact meta-games,
the random 2x2 game classes, and the importance-weighted meta-game estimator. See docs/matrl.md."""

from league.matrl.matrix import MATRIX_RULES, MatrixMATRLConfig, run_dynamics

__all__ = ["MATRIX_RULES", "MatrixMATRLConfig", "run_dynamics"]
