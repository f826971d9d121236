"""Deep MATRL vs independent PPO learners on MATRL's grid worlds (checkers, switch):
``scripts/matrl_deep.py`` with configs/matrl/gridworlds.toml and results/matrl_gridworlds/ as
defaults (same flags: --config, --out, --set).

    .venv/bin/python scripts/matrl_gridworlds.py [--config configs/matrl/switch.toml --out results/matrl_switch]
"""

from matrl_deep import main

if __name__ == "__main__":
    main("configs/matrl/gridworlds.toml", "results/matrl_gridworlds")
