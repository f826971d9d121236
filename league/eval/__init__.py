"""Evaluation: statistics over seeds (``league.eval.stats``) and figures (``league.eval.plots``).

Only the statistics are re-exported here; the plotting module is imported on demand
(``from league.eval.plots import ...``) so that importing ``league.eval`` stays light.
"""

from league.eval.stats import CI_LABEL, auc, ci_label, mean_ci, summarize, t_critical_975, t_two_sided_tail

__all__ = ["CI_LABEL", "auc", "ci_label", "mean_ci", "summarize", "t_critical_975", "t_two_sided_tail"]
