"""`league train` as a user runs it, in a real subprocess: metrics stream to metrics.jsonl,
TensorBoard and (offline) Weights & Biases while it runs; progress log lines where stderr is
not a terminal; Ctrl-C (SIGINT to the process group, as a terminal sends it) stops the run
within seconds and keeps the jobs that finished (summary, checkpoints, the records so far)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ipd_quick.toml"
SMALL = ["--set", "chain.trajectories=4", "--set", "chain.horizon=8", "--set", "chain.length=2",
         "--set", "train.meta_batch=2", "--set", "agent.hidden=8", "--set", "workers=2"]


def _sets(*pairs: str) -> list[str]:
    return [x for p in pairs for x in ("--set", p)]


def _start(out: Path, *args: str, env: dict | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.cli", "train", str(CONFIG), "--out", str(out), *SMALL, *args],
                            cwd=out.parent, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _records(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(predicate, proc: subprocess.Popen, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"league train exited ({proc.returncode}) before {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.timeout(400)
def test_metrics_stream_to_jsonl_tensorboard_and_wandb_with_log_lines(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, *_sets('methods=["meta-mapg","reinforce"]', "seeds=[0,1]", "train.iterations=3",
                              "train.validate_every=2"),
                  "--track", "--log-every", "1", "--json", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    try:
        # records appear while the run is still going (streamed, flushed per record)
        _wait(lambda: any("objective" in r for r in _records(out)), proc, 300, "a streamed iteration record")
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)  # --json: stdout is the summary alone, the log lines went to stderr
    assert summary["interrupted"] is False and len(summary["completed_jobs"]) == 4
    rows = _records(out)
    iters = [r for r in rows if "objective" in r]
    assert len(iters) == 4 * 3 and all("grad_norm" in r and "seconds" in r for r in iters)

    # one log line per iteration of every job (not a terminal), with the fraction of work done
    for m in ("meta-mapg", "reinforce"):
        for s in (0, 1):
            for it in (1, 2, 3):
                assert f"{m} seed {s}: iteration {it}/3" in stderr, stderr
            assert f"{m} seed {s}: meta-test" in stderr and f"{m} seed {s}: done in" in stderr
    fractions = [int(x) for x in re.findall(r"^\[\d\d:\d\d:\d\d\] ipd_quick +(\d+)%", stderr, re.M)]
    assert fractions == sorted(fractions) and fractions[-1] == 100, stderr

    # TensorBoard: one run per job, every iteration's objective and pre-clip gradient norm
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for m in ("meta-mapg", "reinforce"):
        for s in (0, 1):
            acc = EventAccumulator(str(out / "tensorboard" / f"{m}_seed{s}"))
            acc.Reload()
            mine = [r for r in iters if r["method"] == m and r["seed"] == s]
            objective = {e.step: e.value for e in acc.Scalars("train/objective")}
            assert objective == pytest.approx({r["iteration"]: r["objective"] for r in mine}, rel=1e-6)
            assert [e.step for e in acc.Scalars("train/grad_norm")] == [1, 2, 3]
            assert [e.step for e in acc.Scalars("validation/val_score")] == [0, 2, 3]

    # Weights & Biases, offline: one run holding every job's curves
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list((out / "wandb").rglob("*"))
    data = runs[0].read_bytes()
    for key in (b"meta-mapg/seed0/train/objective", b"reinforce/seed1/train/grad_norm",
                b"meta-mapg/seed1/validation/val_score"):
        assert key in data, key

    # the training curves plot says what its bands are, with n
    from PIL import Image

    text = Image.open(out / "plots" / "training_curves.png").text
    assert "mean ± 95% t-interval over n=2 seeds" in text["Title"]


@pytest.mark.timeout(400)
def test_ctrl_c_stops_within_seconds_and_keeps_what_finished(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "stderr.log"
    # reinforce is cheap and finishes; meta-mapg (the same iterations, ~20x the work) is still running
    with open(log, "w") as err:
        proc = _start(out, *_sets('methods=["reinforce","meta-mapg"]', "seeds=[0]", "train.iterations=60",
                                  "train.validate_every=30"), "--log-every", "1000", stderr=err)
    try:
        _wait(lambda: "reinforce seed 0: done in" in log.read_text(), proc, 300, "reinforce to finish")
        _wait(lambda: any(r["method"] == "meta-mapg" and "objective" in r for r in _records(out)), proc, 120,
              "meta-mapg to be training")
        assert not any(r["method"] == "meta-mapg" and r["iteration"] == 60 for r in _records(out)), "too fast"
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        stdout, _ = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
        stderr = log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert seconds < 15, f"took {seconds:.1f}s to stop"  # ~4 s measured on the 2 loaded cores
    lines = [line for line in stderr.splitlines() if line.startswith("league:")]
    assert lines == ["league: interrupted: kept the 1 of 2 jobs that finished in " + str(out)], stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["completed_jobs"] == ["reinforce/seed0"]
    assert list(summary["groups"]["all"]["methods"]) == ["reinforce"]
    assert "interrupted: 1 jobs finished: reinforce/seed0" in stdout
    assert not (out / "checkpoints" / "meta-mapg_seed0.pt").exists()
    kept = _records(out)  # the unfinished job's records so far are kept too
    assert any(r["method"] == "meta-mapg" for r in kept)
    assert summary["plots"] == [] and f"`league evaluate {out}` draws them" in stderr
    # no worker outlives the run (multiprocessing's resource tracker may take a moment to follow)
    deadline = time.monotonic() + 10
    while (left := subprocess.run(["ps", "-o", "pid=,args=", "-s", str(proc.pid)], capture_output=True,
                                  text=True).stdout.strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left in the run's session:\n{left}"


def test_progress_counts_work_by_method_cost_validation_and_meta_test():
    from league.progress import METHOD_COST, job_work

    heavy = job_work("meta-mapg", iterations=40, meta_batch=8, chain_length=3, validate_every=10, n_val=40, n_test=40)
    light = job_work("reinforce", iterations=40, meta_batch=8, chain_length=3, validate_every=10, n_val=40, n_test=40)
    assert heavy.iteration / light.iteration == METHOD_COST["meta-mapg"] / METHOD_COST["reinforce"] > 10
    # 5 validation passes (iterations 0, 10, 20, 30, 40) and one meta-test, 40 personas x 4 chain steps each
    assert light.validation == light.meta_test == 160
    assert light.total == 40 * light.iteration + 5 * 160 + 160
    assert job_work("new-method", 1, 1, 0, 1, 0, 0).iteration == 1.0  # unknown methods count 1
