"""Helpers shared by the league benchmarks (league_overhead, parameter_fetch,
referee_rollout): machine description, load average, medians."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_info() -> dict:
    import grpc
    import torch

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:")), -1)
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu,
        "logical_cpus": os.cpu_count(), "mem_total_gib": round(mem_kb / 2**20, 1),
        "torch": torch.__version__, "grpcio": grpc.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summary(xs: list[float]) -> dict:
    """Median, min, max and every sample."""
    return {"median": med(xs), "min": min(xs) if xs else None, "max": max(xs) if xs else None, "samples": list(xs)}
