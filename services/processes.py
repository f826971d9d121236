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
from services.durable import write_json_atomic
from services.pki import Credentials

STATE_FILE = Path(os.environ.get("LEAGUE_STATE", "runs/league/up.json"))


# -- referee -----------------------------------------------------------------------------
def referee_server(referee, credentials: Credentials | None = None,
                   unary_workers: int | None = None, slow_workers: int | None = None):
    """The referee's ``grpc.aio`` server, not yet bound or started, and the function that
    flips its health to NOT_SERVING. The Subscribe streams wait on its event loop and hold
    no thread; the quick unary RPCs (Status, Heartbeat, Leave) run in a fixed pool of
    ``limits.REFEREE_UNARY_WORKERS`` threads, Join and PlayMatches (which wait on agents)
    in one of ``limits.REFEREE_SLOW_WORKERS`` of their own."""
    from services import limits
    from services.auth import REFEREE as REFEREE_RPC

    server = srv.AioServer(unary_workers=unary_workers or limits.REFEREE_UNARY_WORKERS,
                           slow_methods=(REFEREE_RPC["Join"], REFEREE_RPC["PlayMatches"]),
                           slow_workers=slow_workers or limits.REFEREE_SLOW_WORKERS,
                           interceptors=[referee.metrics.rpc.aio(),
                                         *(i.aio() for i in srv.access_control(credentials, referee.metrics.registry))])
    referee_pb2_grpc.add_RefereeServicer_to_server(referee, server.server)
    return server, srv.add_health_and_reflection_aio(server, ["league.v1.Referee"])


def run_referee(cfg: LeagueConfig, host: str, port: int, metrics_port: int, ready_file: Path | None,
                results_file: Path | None, wait_for: int, log_file: str | None = None,
                state_file: Path | None = None, credentials: Credentials | None = None) -> int:
    """The referee process; ``credentials``: its mutual-TLS credentials (None: plaintext)."""
    from services.referee import Referee

    srv.configure_logging(log_file)
    referee = Referee(cfg.referee, [a.id for a in cfg.agents], state_file, credentials, teams=cfg.teams)
    server, not_serving = referee_server(referee, credentials)
    try:
        bound = srv.bind(server, host, port, credentials)
        http, mport = srv.serve_metrics(referee.metrics.registry, host, metrics_port,
                                        routes={"/sd": referee.service_discovery})
    except OSError:
        referee.stop()
        server.stop(0)
        raise
    server.start()
    info = {"address": f"{host}:{bound}", "metrics": f"http://{host}:{mport}/metrics", "pid": os.getpid()}
    if ready_file:
        write_json_atomic(ready_file, info)
    print(json.dumps({"referee": info}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: referee.stop())
    try:
        referee.run(min_members=0 if referee.resumed else wait_for)
    except KeyboardInterrupt:
        pass
    finally:
        referee.stop()
        referee.save_state()
        if results_file:
            write_json_atomic(results_file, {
                "rounds": referee.round, "aborted_matches": referee.aborted,
                "chains": referee.chain_curves,
                "members": [{"agent_id": a, "role": r["role"], "policy_version": r["policy_version"],
                             "episodes": r["episodes"], "matches": r["matches"],
                             "mean_return": sum(r["returns"][-10:]) / len(r["returns"][-10:]) if r["returns"] else 0.0}
                            for a, r in referee.member_records().items()]})
        not_serving()
        server.stop(grace=1.0)
        http.shutdown()
    return 0


# -- agent -------------------------------------------------------------------------------
def run_agent(spec: AgentSpec, referee: str, env: str, gamma: float, chain_length: int, population_seed: int,
              checkpoint_dir: str, host: str, port: int, metrics_port: int, ready_file: Path | None,
              advertise: str = "", join_wait: float = 60.0, credentials: Credentials | None = None,
              peer_access: str = "direct", n_players: int = 2, env_kwargs: dict | None = None,
              horizon: int = 50) -> int:
    """The agent process: serve, join, learn. Raises client.Unreachable, runtime.JoinRefused or
    OSError (a port in use) with one-line messages."""
    from agents.runtime import AgentProcess, AgentRuntimeConfig

    validate_agent(spec)
    cfg = AgentRuntimeConfig(referee=referee, env=env, n_players=n_players, env_kwargs=dict(env_kwargs or {}),
                             horizon=horizon, gamma=gamma, chain_length=chain_length,
                             population_seed=population_seed, checkpoint_dir=checkpoint_dir, host=host, port=port,
                             metrics_port=metrics_port, advertise=advertise, join_wait=join_wait,
                             credentials=credentials, peer_access=peer_access)
    agent = AgentProcess(spec, cfg)
    try:
        gport, mport = agent.start()
    except OSError:
        agent.stop()
        raise
    info = {"agent_id": spec.id, "address": agent.address(), "metrics": f"http://{agent.advertised_host()}:{mport}/metrics",
            "pid": os.getpid(), "resumed": agent.resumed}
    if ready_file:
        write_json_atomic(ready_file, info)
    print(json.dumps({"agent": info}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
    return 0


def referee_status(address: str, timeout: float = 10.0,
                   credentials: Credentials | None = None) -> referee_pb2.LeagueStatus:
    with srv.channel(address, credentials) as channel:
        return referee_pb2_grpc.RefereeStub(channel).Status(referee_pb2.StatusRequest(), timeout=timeout)


def status_dict(status: referee_pb2.LeagueStatus) -> dict[str, Any]:
    return {"round": status.round, "env": status.env, "n_players": status.n_players or 2,
            "aborted_matches": status.aborted_matches,
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
def _spawn(args: list[str], log: Path, append: bool = False) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], stdout=open(log, "a" if append else "w"),
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


REFEREE_RESTARTS = 3
"""Default restart budget: times ``league up`` restarts a referee that died (or whose
restart failed) before it ends the league for good (``league up --referee-restarts N``)."""


def _summary_from_state(state_path: Path) -> dict[str, Any]:
    """A partial summary from the referee's persisted state (every completed round's results)."""
    from services import referee_state

    saved = referee_state.load(state_path) or {}
    members = [{"agent_id": a, "role": r["role"], "policy_version": r["policy_version"], "episodes": r["episodes"],
                "matches": r["matches"],
                "mean_return": sum(r["returns"][-10:]) / len(r["returns"][-10:]) if r["returns"] else 0.0}
               for a, r in sorted(saved.get("members", {}).items(), key=lambda kv: kv[1]["order"])]
    return {"rounds": saved.get("round", 0), "aborted_matches": saved.get("aborted", 0),
            "chains": saved.get("chain_curves", []), "members": members}


def make_league_credentials(pki: Path, agent_ids: list[str]) -> dict[str, Path]:
    """A fresh league CA in ``pki/ca`` and one credentials directory per process (files
    0600): ``pki/referee``, ``pki/admin`` (``league status``) and ``pki/agents/<id>``.
    Returns process name (``referee``, ``admin`` or an agent id) -> its directory."""
    import shutil

    from services.pki import create_ca, issue

    shutil.rmtree(pki, ignore_errors=True)  # a fresh league, a fresh CA
    create_ca(pki / "ca")
    dirs = {"referee": pki / "referee", "admin": pki / "admin", **{a: pki / "agents" / a for a in agent_ids}}
    for name, directory in dirs.items():
        role = name if name in ("referee", "admin") else "agent"
        issue(pki / "ca", role, name, directory, hosts=("127.0.0.1", "localhost"))
    return dirs


def up(config_path: str, overrides: list[str], out: Path, quiet: bool = False,
       insecure: bool = False, referee_restarts: int = REFEREE_RESTARTS) -> dict[str, Any]:
    """Start referee and agents as local processes, show progress, stop them when the
    referee's rounds are done (or on Ctrl-C or SIGTERM), and return the league's summary.

    The league is secured: a fresh CA under ``out/pki`` issues every process its own
    credentials (see :func:`make_league_credentials`); ``insecure`` runs it in plaintext.

    The referee persists the league's state after every round; one that dies is restarted
    on the same ports (up to ``referee_restarts`` times in all; a restart that fails to come
    up counts), resumes from that state, and the agents reconnect. If it cannot be brought
    back, the summary is the persisted state, marked ``partial`` with the referee's last exit
    code and ``referee_restart_budget``."""
    if referee_restarts < 0:
        raise ValueError(f"referee_restarts must be >= 0, got {referee_restarts}")
    from league.progress import Progress

    from services.pki import load_credentials

    cfg = load_league_config(config_path, overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "league.toml").write_text(Path(config_path).read_text())
    if insecure:
        creds: dict[str, Path] = {}
        flags = {name: ["--insecure"] for name in ["referee", *(a.id for a in cfg.agents)]}
    else:
        creds = make_league_credentials(out / "pki", [a.id for a in cfg.agents])
        flags = {name: ["--credentials", str(d)] for name, d in creds.items()}
    admin = load_credentials(creds["admin"]) if creds else None
    state_path, results_path = out / "referee_state.json", out / "referee_results.json"
    for f in [*out.glob("*.ready.json"), state_path, results_path]:  # a fresh league
        f.unlink(missing_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    state = {"run": str(out), "pids": {}, "credentials": str(creds["admin"].resolve()) if creds else ""}
    referee_code, restarts = 0, 0
    sets = sum((["--set", s] for s in overrides), [])

    def terminated(*_: Any) -> None:  # SIGTERM (docker stop, systemd, kill) stops the league like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)

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

    def start_referee(*extra: str, append: bool = False) -> dict:
        (out / "referee.ready.json").unlink(missing_ok=True)
        procs["referee"] = _spawn(["referee", config_path, *sets, "--ready-file", str(out / "referee.ready.json"),
                                   "--results", str(results_path), "--state", str(state_path),
                                   *flags["referee"], *extra],
                                  out / "logs" / "referee.log", append=append)
        state["pids"]["referee"] = procs["referee"].pid
        return _wait_file(out / "referee.ready.json", procs["referee"], 120, "referee", out / "logs" / "referee.log")

    try:
        ref = start_referee("--wait-for", str(len(cfg.agents)))
        state["referee"] = ref["address"]
        for spec in cfg.agents:
            log = out / "logs" / f"{spec.id}.log"
            procs[spec.id] = _spawn(["agent", "--join", ref["address"], "--config", config_path, *sets,
                                     "--id", spec.id, "--checkpoint-dir", str(out / "agents"),
                                     "--ready-file", str(out / f"{spec.id}.ready.json"), *flags[spec.id],
                                     "--peer-access", "direct" if spec.role == "meta" else cfg.peer_access], log)
            state["pids"][spec.id] = procs[spec.id].pid
        write_json_atomic(STATE_FILE, state)
        infos = {s.id: _wait_file(out / f"{s.id}.ready.json", procs[s.id], 120, f"agent {s.id}",
                                  out / "logs" / f"{s.id}.log") for s in cfg.agents}
        if not quiet:
            print(f"referee   {ref['address']}   metrics {ref['metrics']}")
            for a, info in infos.items():
                print(f"agent {a:<10} {info['address']}   metrics {info['metrics']}")
            how = "--insecure" if insecure else f"--credentials {creds['admin']}"
            print(f"status: league status {ref['address']} {how}    stop: Ctrl-C or league down", flush=True)
        bar = Progress(cfg.referee.rounds or 1, cfg.name)
        while True:
            while procs["referee"].poll() is None:
                try:
                    st = referee_status(ref["address"], timeout=2, credentials=admin)
                    bar.update(st.round, f"{len(st.members)} members, {st.aborted_matches} aborted")
                except grpc.RpcError:
                    pass
                time.sleep(0.5)
            referee_code = procs["referee"].returncode
            if referee_code == 0 or restarts >= referee_restarts:
                break
            restarts += 1
            print(f"league: the referee exited with code {referee_code}: restarting it on {ref['address']} "
                  f"({restarts}/{referee_restarts}); it resumes from {state_path}", file=sys.stderr, flush=True)
            port = ref["address"].rpartition(":")[2]
            mport = ref["metrics"].rpartition(":")[2].split("/")[0]
            try:
                start_referee("--port", port, "--metrics-port", mport, "--host", ref["address"].rpartition(":")[0],
                              append=True)
                write_json_atomic(STATE_FILE, state)
            except (RuntimeError, TimeoutError) as err:
                print(f"league: the restarted referee did not come up: {str(err).splitlines()[0]}", file=sys.stderr)
        bar.close()
    except KeyboardInterrupt:
        print("league: stopping", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        stop_all()
        signal.signal(signal.SIGTERM, previous)
    summary = json.loads(results_path.read_text()) if results_path.exists() else {}
    if referee_code != 0:  # the referee died for good: every completed round is in its persisted state
        summary = {**_summary_from_state(state_path), "referee_exit_code": referee_code, "partial": True,
                   "referee_restart_budget": referee_restarts}
    summary["referee_restarts"] = restarts
    summary["name"] = cfg.name
    write_json_atomic(out / "summary.json", summary)
    return summary


def _league_process(pid: int, name: str) -> bool | None:
    """Whether PID runs the league command as ``name`` (``referee`` or an agent id), read
    from /proc/PID/cmdline; False when it is gone, None when it cannot be read."""
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    is_league = any(p in (b"league.cli", b"services.cli") or p.endswith(b"/league") or p == b"league" for p in parts)
    return is_league and name.encode() in parts


def down() -> int:
    """Stop the processes of the league started by ``league up`` (by their recorded PIDs),
    each only after checking that the PID still runs that league process."""
    if not STATE_FILE.exists():
        print("league: no running league recorded", file=sys.stderr)
        return 1
    try:
        state = json.loads(STATE_FILE.read_text())
        pids = {str(name): int(pid) for name, pid in state["pids"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        print(f"league: error: {STATE_FILE} is not a league state file", file=sys.stderr)
        return 1
    for name, pid in pids.items():
        mine = _league_process(pid, name)
        if mine is None:
            print(f"skipped {name} (pid {pid}): cannot read its command line to check it is the league's")
            continue
        if not mine:
            print(f"skipped {name} (pid {pid}): no longer a league process")
            continue
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
