"""compose.yaml without Docker: the file validates with Debian's ``docker-compose``, and
every service's command, read from the file, runs as a local process with the environment
the file gives it, beside a real Prometheus (Debian's ``prometheus``) that uses the
project's own scrape config; every PromQL expression of every Grafana panel then returns
data, and the returns of an agent attached mid-run (the ``agent`` service started once
more, as ``docker compose run --rm agent`` would) appear.

How a container becomes a local process here (and nothing else is changed):
- the command line is the service's ``entrypoint`` + ``command`` (the image has no
  ENTRYPOINT), after compose's ``$$`` -> ``$``; ``league`` and ``python3`` are the
  image's (this interpreter on the repository), ``/bin/prometheus`` is Debian's;
- each process gets its own working directory standing in for the image's /app (the
  repository's files linked in, a fresh runs/) and a ``hostname`` that prints a
  per-container name (``agent-1``, ``agent-2``, ...) and, with ``-i``, 127.0.0.1;
- addresses are rewritten to 127.0.0.1: ``0.0.0.0`` -> ``127.0.0.1``, every ``*_PORT``
  variable and every ``0.0.0.0:PORT`` listen address gets a free port of its own, and every
  ``SERVICE:PORT`` (environment values, the Prometheus config) becomes ``127.0.0.1:<that
  service's port>``; volume targets map to their (rewritten) sources;
- ``depends_on`` is honoured: a dependency's own healthcheck command must pass (run
  locally) before a ``service_healthy`` dependant starts, and a one-shot dependency (the
  ``pki`` service that makes the league's credentials) must exit 0 before a
  ``service_completed_successfully`` dependant starts;
- a named volume is one local directory shared by every service that mounts it, and its
  mount point in commands and environment values becomes that directory.
Grafana cannot run here; its provisioning files are checked statically, and its panels'
queries are run against the Prometheus above with ``$__rate_interval`` set as Grafana sets it.
The MATRL panels get their data from the ``matrl`` profile (a referee, three agents with rule
``matrl`` and a coordinator in mode ``matrl``), which runs here like every other profile.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.league_procs import promtool_check_metrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "league.json"
SCALE = {"agent": 2}  # docker compose up --scale agent=2
IMAGE_BINARIES = {"/bin/prometheus": "prometheus"}  # the prom/prometheus image's binary -> Debian's
DEADLINE = 240.0  # seconds for the whole league to come up and every panel to have data

needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="Debian's docker-compose is not installed (.ci/install-prometheus installs it)")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="Debian's prometheus is not installed (.ci/install-prometheus installs it)")


# -- reading the files ---------------------------------------------------------------------
def _unescape(node):
    """Compose interpolation: ``$$`` is a literal ``$``; the file uses no host variables."""
    if isinstance(node, str):
        assert not re.search(r"(?<!\$)\$(?!\$)(\{|\w)", node.replace("$$", "")), \
            f"compose.yaml interpolates a host variable in {node!r}; this test does not model that"
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [_unescape(v) for v in node]
    if isinstance(node, dict):
        return {k: _unescape(v) for k, v in node.items()}
    return node


def load_compose() -> dict:
    return _unescape(yaml.safe_load(COMPOSE.read_text()))


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV (PATH aside: the shims below stand in for /opt/venv/bin)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line):
                if key != "PATH":
                    env[key] = value
    return env


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def dashboard_variables() -> dict[str, tuple[str, str, str]]:
    """Per template variable: (metric selector, label, All value) of its ``label_values(...)`` query."""
    dash = json.loads(DASHBOARD.read_text())
    out = {}
    for v in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
        assert m, f"variable {v['name']}: not a label_values query: {v['query']}"
        out[v["name"]] = (m.group(1), m.group(2), v["allValue"])
    return out


def grafana_expand(expr: str, values: dict[str, str]) -> str:
    """An expression as Grafana sends it: variables and $__rate_interval replaced."""
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${name}", value)
    return expr


def rate_interval() -> str:
    """$__rate_interval as Grafana computes it: max(4 x scrape interval, $__interval + scrape
    interval), with $__interval at its floor, the datasource's timeInterval."""
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    scrape = int(ds["datasources"][0]["jsonData"]["timeInterval"].rstrip("s"))
    return f"{max(4 * scrape, 2 * scrape)}s"


def seconds(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    assert m, f"cannot read duration {text!r}"
    return 60 * int(m.group(1) or 0) + int(m.group(2) or 0)


# -- static checks ---------------------------------------------------------------------------
@needs_compose
def test_docker_compose_accepts_the_file():
    for profiles in ([], ["--profile", "monitoring", "--profile", "training", "--profile", "matrl"]):
        out = subprocess.run(["docker-compose", "-f", str(COMPOSE), *profiles, "config", "--services"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == set(load_compose()["services"])


def test_compose_contract():
    """Scalable agents, grpc health checks, healthy dependencies, pinned images, one image."""
    services = load_compose()["services"]
    league_images = {s["image"] for s in services.values() if "build" in s}
    assert len(league_images) == 1, f"one image for every league role, not {league_images}"
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"pki"}, one_shot
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"
        if "build" not in svc:
            continue
        for dep, cond in (svc.get("depends_on") or {}).items():
            want = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert cond["condition"] == want, f"{name} -> {dep}"
        if name in one_shot:
            continue
        hc = svc.get("healthcheck")
        assert hc and "league health" in " ".join(hc["test"]), f"{name}: needs a grpc.health.v1 healthcheck"
        assert seconds(hc["interval"]) <= 10 and "start_period" in hc, f"{name}: short interval and a start period"
    agent = services["agent"]
    assert "container_name" not in agent and "ports" not in agent, "agent replicas must not collide"
    assert {"prometheus", "grafana"} <= {n for n, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert "coordinator" in services
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+\nFROM \$\{BASE_IMAGE\}", dockerfile, re.M)
    assert not re.search(r"^ENTRYPOINT", dockerfile, re.M), "service commands are whole command lines"


def test_compose_league_is_secured():
    """Every league service runs with credentials from the pki service's volume (read-only),
    none with --insecure; only the pki service mounts the CA key; every credentials
    directory a service names is one the pki service issues, and the scalable agent claims
    one of its pool."""
    services = load_compose()["services"]
    league = {n: s for n, s in services.items() if "build" in s and n != "pki"}
    pki_cmd = " ".join(services["pki"]["command"])
    issued = set(re.findall(r"--issue \w+:([\w.-]+)", pki_cmd))
    assert re.search(r"--pool agent:learner:\d+", pki_cmd) and "--ca /league-ca" in pki_cmd
    assert "pki-ca:/league-ca" in services["pki"]["volumes"]
    for name, svc in league.items():
        text = json.dumps(svc)
        assert "--insecure" not in text, name
        assert "pki:/league-pki:ro" in svc["volumes"] and not any("pki-ca" in v for v in svc["volumes"]), name
        creds = (svc.get("environment") or {}).get("LEAGUE_CREDENTIALS")
        if creds is not None:
            assert creds.startswith("/league-pki/") and creds.rsplit("/", 1)[1] in issued, (name, creds)
        else:  # the scalable agent: a pool entry claimed by its host name
            assert name == "agent" and "league certs claim /league-pki/pool" in text, name
    for dep in ("referee", "train-referee", "matrl-referee"):
        assert services[dep]["depends_on"]["pki"]["condition"] == "service_completed_successfully"


def test_grafana_provisioning():
    """The datasource Grafana provisions is the one every panel names, the dashboards
    provider reads the directory compose mounts, and every panel has a query."""
    services = load_compose()["services"]
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert len(ds) == 1 and ds[0]["type"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", ds[0]["url"]).groups()
    assert host in services and any(f"0.0.0.0:{port}" in a for a in services[host]["command"])
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "league.yaml").read_text())["providers"]
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dash = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dash["panels"]]
    assert len(set(titles)) == len(titles)
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == ds[0]["uid"] and p["targets"], p["title"]
        assert all(t["datasource"]["uid"] == ds[0]["uid"] and t["expr"] for t in p["targets"]), p["title"]
    exprs = " ".join(e for _, e in dashboard_queries())
    for metric in ("league_agent_mean_step_reward", "league_chain_mean_step_reward", "league_agent_policy_version",
                   "league_rounds_total", "league_aborted_matches_total", "league_parameter_fetch_seconds_bucket",
                   "league_agent_learning_rate", "league_meta_learning_rate", "league_matrl_nash_weight",
                   "league_coordinator_iteration_seconds_bucket", "league_grpc_server_handled_total",
                   "league_grpc_server_handling_seconds_bucket"):
        assert metric in exprs, f"no panel shows {metric}"
    assert [v["name"] for v in dash["templating"]["list"]] == ["league", "agent"]
    for title, expr in dashboard_queries():
        assert 'league=~"$league"' in expr, f"{title}: not filtered by the league variable"
        if "agent_id" in expr and "league_agent_" in expr:
            assert 'agent_id=~"$agent"' in expr, f"{title}: not filtered by the agent variable"


@needs_prometheus
def test_promtool_accepts_the_prometheus_config():
    """``promtool check config`` (Debian's prometheus) on the project's scrape config."""
    out = subprocess.run([shutil.which("promtool"), "check", "config", str(PROMETHEUS_YML)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


# -- the league as local processes -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Instance:
    service: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    healthcheck: dict | None
    proc: subprocess.Popen | None = None
    last_check: str = ""


@dataclass
class LocalCompose:
    """Starts compose services as local processes (see the module docstring)."""

    tmp: Path
    services: dict
    named_volumes: set[str] = field(default_factory=set)
    ports: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, container port) -> local port
    instances: list[Instance] = field(default_factory=list)

    def plan_ports(self) -> None:
        """Local ports for every non-scaled service's listening ports, known before any start."""
        for name, svc in self.services.items():
            if name not in SCALE:
                self._own_ports(name, svc)

    def _own_ports(self, name: str, svc: dict) -> dict[str, int]:
        own: dict[str, int] = {}
        for key, value in (svc.get("environment") or {}).items():
            if key.endswith("_PORT"):
                own[str(value)] = free_port()
        for arg in [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]:
            for port in re.findall(r"0\.0\.0\.0:(\d+)", arg):
                own[port] = free_port()
        if name not in SCALE:
            self.ports.update({(name, p): local for p, local in own.items()})
        return own

    def rewrite(self, text: str, own: dict[str, int] | None = None) -> str:
        for (name, port), local in self.ports.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}:{port}(?!\d)", f"127.0.0.1:{local}", text)
        for port, local in (own or {}).items():
            text = text.replace(f"0.0.0.0:{port}", f"127.0.0.1:{local}")
        return text.replace("0.0.0.0", "127.0.0.1")

    def _app_dir(self, hostname: str) -> Path:
        app = self.tmp / hostname
        (app / "runs").mkdir(parents=True)
        for entry in ROOT.iterdir():
            if entry.name not in {".git", ".venv", "runs", ".pytest_cache"}:
                (app / entry.name).symlink_to(entry)
        bin_dir = app / ".bin"
        bin_dir.mkdir()
        shims = {"league": f'exec "{sys.executable}" -m services.cli "$@"\n',
                 "python3": f'exec "{sys.executable}" "$@"\n',
                 "hostname": f'if [ "$1" = -i ]; then echo 127.0.0.1; else echo {hostname}; fi\n'}
        for tool, body in shims.items():
            (bin_dir / tool).write_text("#!/bin/sh\n" + body)
            (bin_dir / tool).chmod(0o755)
        return app

    def start(self, name: str, hostname: str, extra_args: list[str] = ()) -> Instance:
        svc = self.services[name]
        own = self._own_ports(name, svc) if name in SCALE else {p: l for (n, p), l in self.ports.items() if n == name}
        app = self._app_dir(hostname)
        env = {**os.environ, **image_env()}
        for key, value in (svc.get("environment") or {}).items():
            env[key] = str(own[str(value)]) if key.endswith("_PORT") else self.rewrite(str(value))
        env["PATH"] = f"{app / '.bin'}{os.pathsep}{os.environ['PATH']}"
        env["PYTHONPATH"] = str(ROOT)
        volumes, named = {}, {}
        for v in svc.get("volumes") or []:
            source, target = v.split(":")[:2]
            if source in self.named_volumes:  # one shared local directory per named volume
                named[target] = self.tmp / "volumes" / source
                named[target].mkdir(parents=True, exist_ok=True)
                continue
            local = (ROOT / source).resolve()
            if local.is_file():  # a config file: the rewritten copy
                copy = app / ("volume-" + local.name)
                copy.write_text(self.rewrite(local.read_text()))
                local = copy
            volumes[target] = str(local)
        env.update({k: self.mount(v, named) for k, v in env.items()})
        argv = []
        for arg in [*(svc.get("entrypoint") or []), *(svc.get("command") or []), *extra_args]:
            arg = self.mount(self.rewrite(arg, own), named)
            flag, eq, path = arg.partition("=")
            if eq and path.startswith("/"):  # --flag=/container/path
                arg = f"{flag}={volumes.get(path) or app / path.lstrip('/')}"
            argv.append(arg)
        if argv[0] in IMAGE_BINARIES:
            argv[0] = shutil.which(IMAGE_BINARIES[argv[0]])
        inst = Instance(name, hostname, argv, env, app, self.tmp / f"{hostname}.log", svc.get("healthcheck"))
        inst.proc = subprocess.Popen(argv, cwd=app, env=env, stdout=open(inst.log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.instances.append(inst)
        return inst

    @staticmethod
    def mount(text: str, named: dict[str, Path]) -> str:
        """Named volumes' mount points in a command or value -> their local directories."""
        for target, local in named.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(target)}(?![\w.-])", str(local), text)
        return text

    def healthy(self, inst: Instance) -> bool:
        """Run the service's own healthcheck command once, in its container's stead."""
        test = inst.healthcheck["test"]
        argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        try:
            out = subprocess.run(argv, cwd=inst.cwd, env=inst.env, capture_output=True, text=True,
                                 timeout=seconds(inst.healthcheck["timeout"]))
        except subprocess.TimeoutExpired:
            inst.last_check = f"timed out after {inst.healthcheck['timeout']}"
            return False
        inst.last_check = f"exit {out.returncode}: {out.stdout.strip()} {out.stderr.strip()[-300:]}"
        return out.returncode == 0

    def not_unhealthy(self, inst: Instance) -> bool:
        """Docker's verdict: unhealthy only after ``retries`` consecutive failed checks."""
        return any(self.healthy(inst) for _ in range(inst.healthcheck.get("retries", 1)))

    def wait_healthy(self, inst: Instance, deadline: float) -> None:
        while not self.healthy(inst):
            assert inst.proc.poll() is None, f"{inst.hostname} exited with {inst.proc.returncode}:\n{tail(inst.log)}"
            assert time.monotonic() < deadline, f"{inst.hostname} not healthy in time:\n{tail(inst.log)}"
            time.sleep(0.5)

    def stop(self) -> None:
        for inst in self.instances:
            if inst.proc.poll() is None:
                inst.proc.send_signal(signal.SIGTERM)
        for inst in self.instances:
            try:
                inst.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait(timeout=5)


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def start_order(services: dict) -> list[list[str]]:
    """Services in levels: each level's dependencies are all in earlier levels."""
    levels, placed = [], set()
    while len(placed) < len(services):
        level = [n for n, s in services.items() if n not in placed and set(s.get("depends_on") or []) <= placed]
        assert level, f"depends_on has a cycle among {set(services) - placed}"
        levels.append(level)
        placed |= set(level)
    return levels


def promql(base: str, query: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        reply = json.loads(r.read())
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(s["value"][1])) for s in result)


def active_targets(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/targets?state=active", timeout=10) as r:
        return json.loads(r.read())["data"]["activeTargets"]


@needs_prometheus
@pytest.mark.timeout(420)
def test_compose_services_run_as_local_processes_and_feed_every_panel(tmp_path):
    services = {n: s for n, s in load_compose()["services"].items() if n != "grafana"}  # Grafana: statically
    local = LocalCompose(tmp_path, services, set(load_compose().get("volumes") or {}))
    local.plan_ports()
    deadline = time.monotonic() + DEADLINE
    healthy_needed = {d for s in services.values() for d, c in (s.get("depends_on") or {}).items()
                      if c["condition"] == "service_healthy"}
    completed_needed = {d for s in services.values() for d, c in (s.get("depends_on") or {}).items()
                        if c["condition"] == "service_completed_successfully"}
    by_service: dict[str, list[Instance]] = {}
    pool = ThreadPoolExecutor(max_workers=8)
    try:
        for level in start_order(services):
            for name in level:
                by_service[name] = [local.start(name, f"{name}-{i + 1}" if name in SCALE else name)
                                    for i in range(SCALE.get(name, 1))]
            waits = [pool.submit(local.wait_healthy, inst, deadline)
                     for name in level if name in healthy_needed for inst in by_service[name]]
            for w in waits:
                w.result()
            for name in level:
                if name in completed_needed:
                    for inst in by_service[name]:
                        code = inst.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                        assert code == 0, f"{inst.hostname} exited with {code}:\n{tail(inst.log)}"
        prom = f"http://127.0.0.1:{local.ports[('prometheus', '9090')]}"

        # every agent found through the referees' /sd, and every static target, is scraped
        expected_agents = sum(len(v) for n, v in by_service.items() if "LEAGUE_REFEREE" in (services[n].get("environment") or {})
                              and not n.endswith("coordinator"))
        static_targets = sum(len(c["targets"]) for job in yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]
                             for c in job.get("static_configs", []))  # the referees and coordinators
        while True:
            try:
                targets = active_targets(prom)
            except OSError:
                targets = []
            up = [t for t in targets if t["health"] == "up"]
            if len(up) == len(targets) == expected_agents + static_targets:
                break
            assert time.monotonic() < deadline, (f"targets: {[(t['labels'].get('job'), t['scrapeUrl'], t['health'], t.get('lastError')) for t in targets]}"
                                                 f"\nprometheus log:\n{tail(by_service['prometheus'][0].log)}")
            time.sleep(1)

        # attach one more agent mid-run, as `docker compose run --rm agent` does; it claims
        # the next learner credentials of the pool, whose name is its id
        late = local.start("agent", "agent-run-1")
        claimed = late.cwd / "runs" / "credentials"
        while not (claimed.exists() and claimed.read_text()):
            assert late.proc.poll() is None, f"the attached agent exited:\n{tail(late.log)}"
            assert time.monotonic() < deadline, f"the attached agent claimed no credentials:\n{tail(late.log)}"
            time.sleep(0.5)
        late_id = Path(claimed.read_text()).name
        learner_ids = {Path((i.cwd / "runs" / "credentials").read_text()).name for i in by_service["agent"]}
        assert len(learner_ids | {late_id}) == SCALE["agent"] + 1 and all(
            i.startswith("learner-") for i in learner_ids | {late_id}), (learner_ids, late_id)
        late_checks = {"league_agent_mean_step_reward": "agent's own /metrics, found through the referee's /sd",
                       "league_mean_step_reward": "the referee's record of its matches"}

        variables = dashboard_variables()
        every = {"__rate_interval": rate_interval(), **{n: all_value for n, (_, _, all_value) in variables.items()}}
        pending = {(title, grafana_expand(expr, every)) for title, expr in dashboard_queries()}
        late_pending = dict(late_checks)
        while pending or late_pending:
            for title, expr in sorted(pending):
                if has_data(promql(prom, expr)):
                    pending.discard((title, expr))
            for metric in list(late_pending):
                if promql(prom, f'{metric}{{agent_id="{late_id}"}}'):
                    del late_pending[metric]
            if not (pending or late_pending):
                break
            assert late.proc.poll() is None, f"the attached agent exited:\n{tail(late.log)}"
            assert time.monotonic() < deadline, (
                f"panels without data: {sorted(pending)}; attached agent missing from {sorted(late_pending)}\n"
                + "\n".join(f"--- {i.hostname}\n{tail(i.log, 1500)}" for i in local.instances))
            time.sleep(1)

        # the attached agent learned: it published a new policy version
        while not has_data(promql(prom, f'league_agent_policy_version{{agent_id="{late_id}"}} > 0')):
            assert time.monotonic() < deadline, f"{late_id} never published an update:\n{tail(late.log)}"
            time.sleep(1)

        # the dashboard's variables offer both leagues and every agent, and picking one narrows the panels
        selector, label, _ = variables["league"]
        leagues = {s["metric"][label] for s in promql(prom, f"count by ({label}) ({selector})")}
        assert leagues == {"meta-test", "training", "matrl"}, leagues
        selector, label, _ = variables["agent"]
        agents = {s["metric"][label] for s in promql(prom, f"count by ({label}) ({grafana_expand(selector, {'league': 'meta-test'})})")}
        assert {"meta", "persona-c", "persona-d", *learner_ids, late_id} <= agents, agents
        assert not agents & {"train-meta", "train-persona", "matrl-0", "matrl-1", "matrl-2"}, \
            f"other leagues' agents listed under meta-test: {agents}"
        one = {**every, "league": "training", "agent": "train-meta"}
        for title, expr in dashboard_queries():
            for series in promql(prom, grafana_expand(expr, one)):
                assert series["metric"].get("league", "training") == "training", (title, series["metric"])
                assert series["metric"].get("agent_id", "train-meta") == "train-meta", (title, series["metric"])

        # every process's scrape passes promtool's checks (exposition and naming conventions)
        for target in targets:
            with urllib.request.urlopen(target["scrapeUrl"], timeout=10) as r:
                promtool_check_metrics(r.read().decode(), target["scrapeUrl"])

        # every service's own healthcheck passes on every running instance
        running = [i for i in local.instances if i.healthcheck]
        results = [local.not_unhealthy(i) for i in running]  # one at a time: 18 busy processes share the cores
        assert all(results), [(i.hostname, i.last_check) for i, ok in zip(running, results) if not ok]
        for inst in local.instances:
            if inst.service not in completed_needed:  # the one-shot pki service has exited 0
                assert inst.proc.poll() is None, f"{inst.hostname} exited with {inst.proc.returncode}:\n{tail(inst.log)}"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        local.stop()
