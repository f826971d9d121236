"""The committed gRPC bindings are what `python -m services.codegen` generates, and --check notices drift."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.codegen import rewrite_imports

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]


def _codegen(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "services.codegen", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )


def test_committed_code_is_current() -> None:
    result = _codegen("--check")
    assert result.returncode == 0, result.stderr


def test_check_detects_drift_on_a_copy(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    gen = tmp_path / "services" / "gen"
    shutil.copytree(ROOT / "services" / "gen", gen, ignore=shutil.ignore_patterns("__pycache__"))
    assert _codegen("--check", "--root", str(tmp_path)).returncode == 0

    with (gen / "league" / "v1" / "agent_pb2.py").open("a") as f:
        f.write("# edited by hand\n")
    (gen / "league" / "v1" / "tensor_pb2.pyi").unlink()
    (gen / "league" / "v1" / "old_pb2.py").write_text("# from a removed proto\n")
    result = _codegen("--check", "--root", str(tmp_path))
    assert result.returncode != 0
    assert "differs: league/v1/agent_pb2.py" in result.stderr
    assert "missing: league/v1/tensor_pb2.pyi" in result.stderr
    assert "stale:   league/v1/old_pb2.py" in result.stderr
    assert "referee_pb2.py" not in result.stderr

    # Regenerating repairs the copy, and the tree itself was never touched.
    assert _codegen("--root", str(tmp_path)).returncode == 0
    assert _codegen("--check", "--root", str(tmp_path)).returncode == 0
    assert not (gen / "league" / "v1" / "old_pb2.py").exists()
    assert _codegen("--check").returncode == 0


def test_rewrite_imports() -> None:
    text = (
        "from league.v1 import tensor_pb2 as league_dot_v1_dot_tensor__pb2\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'league.v1.agent_pb2', _globals)\n"
        "from league.games import x\n"
    )
    assert rewrite_imports(text) == (
        "from services.gen.league.v1 import tensor_pb2 as league_dot_v1_dot_tensor__pb2\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'services.gen.league.v1.agent_pb2', _globals)\n"
        "from league.games import x\n"
    )


def test_generated_package_imports() -> None:
    from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, referee_pb2_grpc, tensor_pb2

    assert agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name == "league.v1.Agent"
    assert tensor_pb2.ParameterChunk.__module__ == "services.gen.league.v1.tensor_pb2"
    assert hasattr(agent_pb2_grpc, "AgentStub") and hasattr(referee_pb2_grpc, "RefereeServicer")
