"""Deep MATRL vs independent PPO learners on multi-agent MuJoCo (Hopper 3x1, Ant 4x2):
``scripts/matrl_deep.py`` with configs/matrl/mujoco.toml and results/matrl_mujoco/ as defaults
(same flags: --config, --out, --set).

    .venv/bin/python scripts/matrl_mujoco.py [--set base.iterations=5]
"""

from matrl_deep import main

if __name__ == "__main__":
    main("configs/matrl/mujoco.toml", "results/matrl_mujoco")
