"""The end-to-end container test (slow): scripts/docker_e2e.sh builds the project's image
on a debootstrapped Debian base, `docker-compose up`s the league on its own dockerd (no
bridge, host networking, everything on 127.0.0.1), sees agents learn and Prometheus scrape
them, attaches one more agent with `docker-compose run`, and tears it all down.

Needs root, Debian's apt (it installs docker.io, docker-compose and debootstrap when
missing) and network access to Debian's mirror and PyPI for the image builds; takes
minutes (a fresh machine: debootstrap and a full image build). Its state (dockerd data,
the base root, images) stays in $LEAGUE_E2E_WORK (default /tmp/league-e2e) for the next
run. Run it with ``.venv/bin/python -m pytest -m slow tests/test_docker_e2e.py``; the
recorded run is deploy/e2e-run.log (docs/compose.md)."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 3000  # seconds


@pytest.mark.slow
@pytest.mark.timeout(LIMIT + 120)
def test_compose_league_in_containers(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: it starts dockerd and runs debootstrap")
    if not (shutil.which("apt-get") or all(shutil.which(t) for t in ("dockerd", "docker-compose", "debootstrap"))):
        pytest.skip("needs Debian's apt-get to install docker.io, docker-compose and debootstrap")
    log = tmp_path / "e2e.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "docker_e2e.sh")], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the script tears down compose and its dockerd on exit
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            pytest.fail(f"scripts/docker_e2e.sh did not finish in {LIMIT}s:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert rc == 0 and "E2E OK" in text, text[-6000:]
    for step in ("every learner published version >= 2", "agents (via /sd)", "late-1 joined and published",
                 "late-1's returns", "docker-compose run --rm agent exited 0"):
        assert step in text, step
