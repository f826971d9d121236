"""Where a run's metric records go as they arrive: a line of ``metrics.jsonl`` each (flushed,
so ``tail -f`` follows a run), TensorBoard event files (one directory per method and seed
under ``tensorboard/``, so TensorBoard shows every job as its own run), and with ``--track``
one Weights & Biases run (``WANDB_MODE=offline`` keeps it on disk under ``wandb/``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from league.config import ExperimentConfig

RECORD_KEYS = ("method", "seed", "iteration")
"""Keys that identify a record rather than measure something."""


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record, keyed ``train/<key>`` or ``validation/<key>``."""
    out = {}
    for key, value in row.items():
        if key in RECORD_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{'validation' if key.startswith('val_') else 'train'}/{key}"] = float(value)
    return out


class RunSinks:
    """``record(row)`` sends one metrics record to every sink; ``close()`` ends them."""

    def __init__(self, out: Path, cfg: ExperimentConfig, track: bool = False, project: str = "league") -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (a dependency)

        self.out = out
        self._writer_cls = SummaryWriter
        self.jsonl = open(out / "metrics.jsonl", "w")
        self.writers: dict[tuple[str, int], Any] = {}
        self.wandb = start_wandb(out, cfg, project) if track else None
        self._wandb_jobs: set[tuple[str, int]] = set()

    def _writer(self, method: str, seed: int):
        key = (method, seed)
        if key not in self.writers:
            self.writers[key] = self._writer_cls(log_dir=str(self.out / "tensorboard" / f"{method}_seed{seed}"))
        return self.writers[key]

    def record(self, row: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        method, seed, step = row["method"], int(row["seed"]), int(row["iteration"])
        scalars = _scalars(row)
        writer = self._writer(method, seed)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        writer.flush()
        if self.wandb is not None:
            prefix = f"{method}/seed{seed}"
            if (method, seed) not in self._wandb_jobs:  # each job's curves on its own iteration axis
                self.wandb.define_metric(f"{prefix}/iteration")
                self.wandb.define_metric(f"{prefix}/*", step_metric=f"{prefix}/iteration")
                self._wandb_jobs.add((method, seed))
            self.wandb.log({f"{prefix}/iteration": step, **{f"{prefix}/{k}": v for k, v in scalars.items()}})

    def summary(self, summary: dict[str, Any]) -> None:
        """Headline numbers of the meta-test (AUC per test group and method) to W&B's summary."""
        if self.wandb is None:
            return
        for group, block in summary.get("groups", {}).items():
            for method, s in block["methods"].items():
                self.wandb.summary[f"meta_test/{group}/{method}/auc_mean"] = s["auc_mean"]
                self.wandb.summary[f"meta_test/{group}/{method}/auc_ci95"] = s["auc_ci95"]
                self.wandb.summary[f"meta_test/{group}/{method}/n_seeds"] = s["n_seeds"]

    def close(self, interrupted: bool = False) -> None:
        self.jsonl.close()
        for writer in self.writers.values():
            writer.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=130 if interrupted else 0)


def start_wandb(out: Path, cfg: ExperimentConfig, project: str):
    """A W&B run for the whole experiment (config = the resolved config), files under ``out``.
    The mode is W&B's own: ``WANDB_MODE=offline`` writes locally for a later ``wandb sync``."""
    try:
        import wandb
    except ImportError:
        raise ValueError("--track needs Weights & Biases: pip install 'league[track]'") from None
    try:
        return wandb.init(project=project, name=out.name, group=cfg.name, dir=str(out),
                          config=dataclasses.asdict(cfg), job_type="train",
                          settings=wandb.Settings(console="off", quiet=True, x_disable_stats=True,
                                                  x_save_requirements=False, disable_git=True,
                                                  init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 90))))
    except Exception as err:  # wandb raises its own error types (no login, no network, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--track: Weights & Biases did not start ({first}); "
                         "WANDB_MODE=offline keeps the run on disk") from None
