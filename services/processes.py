"""Entry points of the league's processes (``league referee``, ``league agent``) and the
local launcher (``league up``, ``league down``, ``league status``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from services import server as srv
from services.gen.league.v1 import referee_pb2, referee_pb2_grpc
from services.league_config import AgentSpec, LeagueConfig, load_league_config, validate_agent

STATE_FILE = Path(os.environ.get("LEAGUE_STATE", "runs/league/up.json"))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# -- referee -----------------------------------------------------------------------------
def run_referee(cfg: LeagueConfig, host: str, port: int, metrics_port: int, ready_file: Path | None,
                results_file: Path | None, wait_for: int) -> int:
    import logging

    from services.referee import Referee

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    referee = Referee(cfg.referee, [a.id for a in cfg.agents])
    server = srv.make_server(max_workers=32, interceptors=[referee.metrics.rpc])
    referee_pb2_grpc.add_RefereeServicer_to_server(referee, server)
    health = srv.add_health_and_reflection(server, ["league.v1.Referee"])
    bound = srv.bind(server, host, port)
    server.start()
    http, mport = srv.serve_metrics(referee.metrics.registry, host, metrics_port,
                                    routes={"/sd": referee.service_discovery})
    info = {"address": f"{host}:{bound}", "metrics": f"http://{host}:{mport}/metrics", "pid": os.getpid()}
    if ready_file:
        _write_json(ready_file, info)
    print(json.dumps({"referee": info}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: referee.stop())
    try:
        referee.run(min_members=wait_for)
    except KeyboardInterrupt:
        pass
    finally:
        referee.stop()
        if results_file:
            status = referee.Status(referee_pb2.StatusRequest(), None)
            _write_json(results_file, {
                "rounds": referee.round, "aborted_matches": referee.aborted,
                "chains": referee.chain_curves,
                "members": [{"agent_id": m.agent_id, "role": m.role, "policy_version": m.policy_version,
                             "episodes": m.episodes, "mean_return": m.mean_return, "matches": m.matches}
                            for m in status.members]})
        health.enter_graceful_shutdown()
        server.stop(grace=1.0).wait()
        http.shutdown()
    return 0


# -- agent -------------------------------------------------------------------------------
def run_agent(spec: AgentSpec, referee: str, env: str, gamma: float, chain_length: int, population_seed: int,
              checkpoint_dir: str, host: str, port: int, metrics_port: int, ready_file: Path | None,
              advertise: str = "") -> int:
    from agents.runtime import AgentProcess, AgentRuntimeConfig

    validate_agent(spec)
    cfg = AgentRuntimeConfig(referee=referee, env=env, gamma=gamma, chain_length=chain_length,
                             population_seed=population_seed, checkpoint_dir=checkpoint_dir, host=host, port=port,
                             metrics_port=metrics_port, advertise=advertise)
    agent = AgentProcess(spec, cfg)
    gport, mport = agent.start()
    info = {"agent_id": spec.id, "address": agent.address(), "metrics": f"http://{agent.advertised_host()}:{mport}/metrics",
            "pid": os.getpid(), "resumed": agent.resumed}
    if ready_file:
        _write_json(ready_file, info)
    print(json.dumps({"agent": info}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    try:
        agent.run()
    except KeyboardInterrupt:
        agent.stop()
    return 0


def referee_status(address: str, timeout: float = 10.0) -> referee_pb2.LeagueStatus:
    with srv.channel(address) as channel:
        return referee_pb2_grpc.RefereeStub(channel).Status(referee_pb2.StatusRequest(), timeout=timeout)


def status_dict(status: referee_pb2.LeagueStatus) -> dict[str, Any]:
    return {"round": status.round, "env": status.env, "aborted_matches": status.aborted_matches,
            "protocol_version": status.protocol_version,
            "members": [{"agent_id": m.agent_id, "address": m.address, "role": m.role,
                         "policy_version": m.policy_version, "episodes": m.episodes, "matches": m.matches,
                         "mean_return": m.mean_return, "lease_remaining_seconds": round(m.lease_remaining_seconds, 2)}
                        for m in status.members]}


def format_status(d: dict[str, Any]) -> str:
    lines = [f"round {d['round']}  env {d['env']}  aborted matches {d['aborted_matches']}",
             f"  {'agent':<14}{'role':<9}{'version':>8}{'episodes':>10}{'matches':>9}{'mean reward':>13}{'lease s':>9}"]
    for m in d["members"]:
        lines.append(f"  {m['agent_id']:<14}{m['role']:<9}{m['policy_version']:>8}{m['episodes']:>10}"
                     f"{m['matches']:>9}{m['mean_return']:>13.3f}{m['lease_remaining_seconds']:>9.1f}")
    return "\n".join(lines)


# -- launcher ----------------------------------------------------------------------------
def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "league.cli", *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready; see {log}:\n"
                               + log.read_text()[-2000:])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s; see {log}")
        time.sleep(0.05)
    return json.loads(path.read_text())


def up(config_path: str, overrides: list[str], out: Path, quiet: bool = False) -> dict[str, Any]:
    """Start referee and agents as local processes, show progress, stop them when the
    referee's rounds are done (or on Ctrl-C), and return the league's summary."""
    from league.progress import Progress

    cfg = load_league_config(config_path, overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "league.toml").write_text(Path(config_path).read_text())
    for f in out.glob("*.ready.json"):
        f.unlink()
    procs: dict[str, subprocess.Popen] = {}
    state = {"run": str(out), "pids": {}}

    def stop_all() -> None:
        for name, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        if STATE_FILE.exists():
            STATE_FILE.unlink()

    try:
        ref_log = out / "logs" / "referee.log"
        procs["referee"] = _spawn(["referee", config_path, *sum((["--set", s] for s in overrides), []),
                                   "--ready-file", str(out / "referee.ready.json"),
                                   "--results", str(out / "referee_results.json"),
                                   "--wait-for", str(len(cfg.agents))], ref_log)
        ref = _wait_file(out / "referee.ready.json", procs["referee"], 120, "referee", ref_log)
        state["pids"]["referee"] = procs["referee"].pid
        state["referee"] = ref["address"]
        for spec in cfg.agents:
            log = out / "logs" / f"{spec.id}.log"
            procs[spec.id] = _spawn(["agent", "--join", ref["address"], "--config", config_path,
                                     *sum((["--set", s] for s in overrides), []), "--id", spec.id,
                                     "--checkpoint-dir", str(out / "agents"),
                                     "--ready-file", str(out / f"{spec.id}.ready.json")], log)
            state["pids"][spec.id] = procs[spec.id].pid
        _write_json(STATE_FILE, state)
        infos = {s.id: _wait_file(out / f"{s.id}.ready.json", procs[s.id], 120, f"agent {s.id}",
                                  out / "logs" / f"{s.id}.log") for s in cfg.agents}
        if not quiet:
            print(f"referee   {ref['address']}   metrics {ref['metrics']}")
            for a, info in infos.items():
                print(f"agent {a:<10} {info['address']}   metrics {info['metrics']}")
            print(f"status: league status {ref['address']}    stop: Ctrl-C or league down", flush=True)
        bar = Progress(cfg.referee.rounds or 1, cfg.name)
        while procs["referee"].poll() is None:
            try:
                st = referee_status(ref["address"], timeout=2)
                bar.update(st.round, f"{len(st.members)} members, {st.aborted_matches} aborted")
            except grpc.RpcError:
                pass
            time.sleep(0.5)
        bar.close()
    except KeyboardInterrupt:
        print("league: stopping", file=sys.stderr)
    finally:
        stop_all()
    results_path = out / "referee_results.json"
    summary = json.loads(results_path.read_text()) if results_path.exists() else {}
    summary["name"] = cfg.name
    _write_json(out / "summary.json", summary)
    return summary


def down() -> int:
    """Stop the processes of the league started by ``league up`` (by their recorded PIDs)."""
    if not STATE_FILE.exists():
        print("league: no running league recorded", file=sys.stderr)
        return 1
    state = json.loads(STATE_FILE.read_text())
    for name, pid in state["pids"].items():
        try:
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} (pid {pid})")
        except ProcessLookupError:
            pass
    return 0


def league_table(summary: dict[str, Any]) -> str:
    lines = [f"league {summary.get('name', '')}: {summary.get('rounds', 0)} rounds, "
             f"{summary.get('aborted_matches', 0)} aborted matches"]
    chains = [c for c in summary.get("chains", []) if c["rewards"]]
    if chains:
        L = max(len(c["rewards"]) for c in chains)
        full = [c for c in chains if len(c["rewards"]) == L]
        curve = [sum(c["rewards"][l] for c in full) / len(full) for l in range(L)]
        lines.append(f"meta-agent reward per step at phi_0..phi_{L - 1} over {len(full)} complete chains: "
                     + " ".join(f"{v:.3f}" for v in curve))
    for m in summary.get("members", []):
        lines.append(f"  {m['agent_id']:<12}{m['role']:<9} version {m['policy_version']:<5} episodes {m['episodes']:<7} "
                     f"mean reward {m['mean_return']:.3f}")
    return "\n".join(lines)
