"""Meta-MAPG's meta-agent on the exact IPD: meta-learn initial logits and an inner learning
rate on the exact chain meta-value (``league.meva.meta_start``), for the IPD tournament.

    .venv/bin/python scripts/meva_ipd_meta_mapg.py [--config configs/meva/ipd_meta_mapg.toml]
        [--out results/meva_ipd_tournament/meta_mapg_start.json]

Writes the learned logits, P(cooperate) per state, the learned lr, the meta-value per
iteration, the config, the seconds and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from league.games.differentiable import ExactIPD  # noqa: E402
from league.meva.meta_start import MetaStartConfig, train_meta_start  # noqa: E402
from league.run import machine  # noqa: E402

STATES = ["s0", "CC", "CD", "DC", "DD"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/meva/ipd_meta_mapg.toml")
    ap.add_argument("--out", default="results/meva_ipd_tournament/meta_mapg_start.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = MetaStartConfig(**tomllib.loads(Path(args.config).read_text())["meta_start"])
    t0 = time.perf_counter()

    def report(it: int, rec: dict) -> None:
        if it % 25 == 0:
            print(f"iteration {it}: J {rec['meta_value']:.3f}, lr {rec['lr']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    start, lr, hist = train_meta_start(ExactIPD(), cfg, report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "logits": start.tolist(), "lr": lr, "p_coop": dict(zip(STATES, torch.sigmoid(start).tolist())),
        "meta_value": [h["meta_value"] for h in hist], "config": asdict(cfg),
        "seconds": time.perf_counter() - t0, "machine": machine()}, indent=1))
    print(f"learned start P(C) {dict(zip(STATES, [round(p, 3) for p in torch.sigmoid(start).tolist()]))}, lr {lr:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
