"""The environment holds the CPU build of torch and nothing of CUDA, and scripts/setup stops
with one clear line where no CPU build of torch can be found."""

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_cuda_packages_in_the_environment():
    names = sorted({(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()})
    cuda = [n for n in names if n.startswith("nvidia-") or n == "triton"]
    assert not cuda, f"CUDA packages installed (torch is not the CPU build?): {cuda}"
    import torch

    assert torch.__version__.endswith("+cpu") and torch.version.cuda is None, torch.__version__


def test_pyproject_pins_the_cpu_build_of_torch():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"torch==2\.13\.0\+cpu"', text), "pyproject.toml must pin torch==2.13.0+cpu"


@pytest.mark.timeout(180)
def test_setup_without_a_cpu_torch_stops_with_one_clear_line(tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    env = {**os.environ, "LEAGUE_VENV": str(tmp_path / "venv"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup")], env=env, capture_output=True, text=True,
                         timeout=170)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "no CPU build of torch" in lines[0] and "https://download.pytorch.org/whl/cpu" in lines[0]
    assert not (tmp_path / "venv" / ".league-setup").exists()
