"""The ``league`` console script: the library's commands (``league.cli``: ``train``,
``evaluate``, ``config show``, ``bench``) plus the league of processes (``up``, ``down``,
``status``, ``referee``, ``agent``, ``coordinator``, ``health``, ``certs``). Process commands
live here, outside ``league/``, because they start servers and dial them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from league import cli as library
from league.cli import EXPERIMENT_SET, HelpFormatter, UsageError, fail, overrides

# league.config (and so torch, ~1 s of CPU) and grpc are imported where they are needed, so
# that `league health`, a container healthcheck run every few seconds, stays cheap.

LEAGUE_SET = "override a league config field (repeatable), e.g. --set referee.rounds=20; " \
             "`league config show CONFIG` lists every field"


def _is_league_config(table: dict) -> bool:
    return "agents" in table or "referee" in table


def _load_league_config(path: str, sets: list[str]):
    from services.league_config import load_league_config

    return load_league_config(path, sets)


library.CONFIG_KINDS.append((_is_league_config, _load_league_config, "league config"))


def _credentials(args: argparse.Namespace):
    """The process's mutual-TLS credentials (``--credentials DIR``, else $LEAGUE_CREDENTIALS),
    or None with an explicit ``--insecure``; a secured league is the default."""
    import os

    from services.pki import load_credentials

    directory = args.credentials or os.environ.get("LEAGUE_CREDENTIALS", "")
    if args.insecure:
        if args.credentials:
            raise UsageError("--insecure and --credentials exclude each other")
        return None
    if not directory:
        raise UsageError("the league is secured (mutual TLS): give --credentials DIR (or set LEAGUE_CREDENTIALS; "
                         "`league up` writes RUN/pki/<process>, `league certs issue` makes one), or --insecure "
                         "for a plaintext local experiment")
    return load_credentials(directory)


def _certs_init(args: argparse.Namespace) -> int:
    from services.pki import create_ca

    create_ca(Path(args.ca), args.name)
    print(f"league CA in {args.ca} (ca.pem; ca.key is its secret: keep it 0600, off the agents' hosts)")
    return 0


def _certs_issue(args: argparse.Namespace) -> int:
    from services.pki import issue

    who = issue(Path(args.ca), args.role, args.id, Path(args.out), tuple(args.host), args.days)
    print(json.dumps({"role": who.role, "id": who.id, "fingerprint": who.fingerprint, "credentials": args.out})
          if args.json else f"issued {who} in {args.out} (ca.pem, cert.pem, key.pem)")
    return 0


def _certs_ensure(args: argparse.Namespace) -> int:
    from services.pki import ensure

    def split(spec: str, parts: int) -> list[str]:
        fields = spec.split(":")
        if len(fields) != parts:
            raise UsageError(f"{spec!r}: expected {parts} fields separated by ':'")
        return fields

    identities = [tuple(split(s, 2)) for s in args.issue]
    pools = [(r, p, int(n)) for r, p, n in (split(s, 3) for s in args.pool)]
    made = ensure(Path(args.dir), identities, pools, Path(args.ca) if args.ca else None)
    print(f"{len(made)} credentials issued in {args.dir} ({len(identities)} identities, "
          f"{sum(n for _, _, n in pools)} pool entries wanted)")
    return 0


def _certs_claim(args: argparse.Namespace) -> int:
    from services.pki import claim

    print(claim(Path(args.pool), args.holder, Path(args.claims) if args.claims else None))
    return 0


def _up(args: argparse.Namespace) -> int:
    from services.league_config import load_league_config
    from services.processes import REFEREE_RESTARTS, league_table, up

    budget = REFEREE_RESTARTS if args.referee_restarts is None else args.referee_restarts
    cfg = load_league_config(args.config, overrides(args))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    try:
        summary = up(args.config, overrides(args), out, quiet=args.json, insecure=args.insecure,
                     referee_restarts=budget)
    except (RuntimeError, TimeoutError, OSError, ValueError) as err:  # a process did not start
        return fail(err)
    print(json.dumps(summary) if args.json else league_table(summary))
    if summary.get("referee_exit_code"):
        return fail(f"gave up on the referee: it exited with code {summary['referee_exit_code']} after "
                    f"{summary['referee_restarts']} of {budget} restarts; the partial summary "
                    f"({summary['rounds']} rounds) is in {out / 'summary.json'}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from services.processes import down

    return down()


def _status(args: argparse.Namespace) -> int:
    import grpc

    from services.processes import format_status, referee_status, status_dict

    credentials = _credentials(args)
    try:
        d = status_dict(referee_status(args.address, timeout=args.timeout, credentials=credentials))
    except grpc.RpcError as err:
        print(f"league: error: no referee answers at {args.address}: {err.code().name}", file=sys.stderr)
        return 1
    print(json.dumps(d) if args.json else format_status(d))
    return 0


def _referee(args: argparse.Namespace) -> int:
    from services.league_config import load_league_config
    from services.processes import run_referee

    cfg = load_league_config(args.config, overrides(args))
    try:
        return run_referee(cfg, args.host, args.port, args.metrics_port,
                           Path(args.ready_file) if args.ready_file else None,
                           Path(args.results) if args.results else None, args.wait_for, args.log_file,
                           Path(args.state) if args.state else None, _credentials(args))
    except (OSError, TimeoutError) as err:  # a port in use; agents that never joined
        return fail(err)


def _agent(args: argparse.Namespace) -> int:
    import socket

    import grpc

    from agents.runtime import JoinRefused
    from league.config import ConfigError
    from services import server as srv
    from services.client import Unreachable, connect
    from services.league_config import AgentSpec, load_league_config
    from services.processes import referee_status, run_agent

    srv.configure_logging(args.log_file)
    spec_flags = {"role": "learner", "policy": "tabular", "hidden": 64, "init": "uniform", "lr": "1.0", "rule": "pg",
                  "env": "", "gamma": 0.96, "chain_length": 3, "population_seed": 0}
    if args.config:
        given = [f"--{k.replace('_', '-')}" for k in spec_flags if getattr(args, k) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} would be ignored: with --config the agent's spec comes from "
                             f"{args.config}'s [[agents]] entry for {args.id!r}")
    elif args.set:
        raise UsageError("--set overrides fields of a league config: it needs --config")
    credentials = _credentials(args)
    args.id = args.id or (credentials.identity.id if credentials is not None else socket.gethostname())
    if credentials is not None and (credentials.identity.role, credentials.identity.id) != ("agent", args.id):
        raise UsageError(f"--id {args.id} but the credentials in {credentials.directory} are {credentials.identity}: "
                         f"the referee admits an agent only under the id its certificate names")
    for k, v in spec_flags.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.config:
        cfg = load_league_config(args.config, overrides(args))
        specs = {a.id: a for a in cfg.agents}
        if args.id not in specs:
            raise ConfigError(f"agent {args.id!r} is not in {args.config}; agents: {sorted(specs)}")
        spec = specs[args.id]
        env, gamma, L, pop = cfg.referee.env, cfg.referee.gamma, cfg.referee.chain_length, cfg.population_seed
        n_players, env_kwargs, horizon = cfg.referee.n_players, cfg.referee.env_kwargs, cfg.referee.horizon
    else:
        spec = AgentSpec(id=args.id, role=args.role, policy=args.policy, hidden=args.hidden, init=args.init,
                         lr=[float(x) for x in args.lr.split(",")], rule=args.rule)
        gamma, L, pop = args.gamma, args.chain_length, args.population_seed
        env, n_players, env_kwargs, horizon = args.env, 2, {}, 50
    try:
        if not env:  # the referee's environment (with its factory arguments) and seat count
            connect(args.join, args.join_wait, credentials=credentials).close()
            status = referee_status(args.join, credentials=credentials)
            env, n_players = status.env, status.n_players or 2
            env_kwargs = json.loads(status.env_kwargs_json or "{}")
        return run_agent(spec, args.join, env, gamma, L, pop, args.checkpoint_dir, args.host, args.port,
                         args.metrics_port, Path(args.ready_file) if args.ready_file else None, args.advertise,
                         args.join_wait, credentials, args.peer_access, n_players, env_kwargs, horizon)
    except (Unreachable, JoinRefused, OSError) as err:
        return fail(err)
    except grpc.RpcError as err:
        return fail(f"the referee at {args.join} answered {err.code().name}: {err.details()}")


def _diff_agent(args: argparse.Namespace) -> int:
    from agents.diffgame import DiffAgentConfig, run_diff_agent
    from services import server as srv

    srv.configure_logging(args.log_file)
    cfg = DiffAgentConfig(host=args.host, port=args.port, metrics_port=args.metrics_port, model_wait=args.model_wait,
                          credentials=_credentials(args))
    try:
        return run_diff_agent(args.config, args.id, cfg, args.ready_file)
    except (OSError, ValueError) as err:
        return fail(err)


def _coordinator(args: argparse.Namespace) -> int:
    import grpc

    from league.config import load_config
    from services import server as srv
    from services.client import Unreachable, connect
    from services.coordinator import MODES, CoordinatorConfig, ReplicaMismatch, run_coordinator

    if args.mode not in MODES:
        return fail(f"unknown coordinator mode {args.mode!r}; known: {', '.join(MODES)}")
    method = args.method or MODES[args.mode].methods[0]

    srv.configure_logging(args.log_file)
    experiment = getattr(MODES[args.mode], "load_experiment", load_config)(args.experiment, overrides(args))
    agents = dict((item.split("=", 1) + [""])[:2] for item in args.agents.split(",") if item)
    cfg = CoordinatorConfig(referee=args.join, meta_agent=args.meta, personas=[p for p in args.personas.split(",") if p],
                            tolerance=args.tolerance, credentials=_credentials(args), timeout=args.timeout,
                            agents=agents)
    try:
        if args.join:
            connect(args.join, args.join_wait, credentials=cfg.credentials).close()
        return run_coordinator(experiment, method, args.seed, cfg, args.iterations, args.host, args.port,
                               args.metrics_port, args.results, args.ready_file, args.linger, args.mode,
                               args.state, args.pace)
    except (Unreachable, ReplicaMismatch, TimeoutError, OSError, ValueError) as err:
        return fail(err)
    except grpc.RpcError as err:
        return fail(f"coordinator stopped: {err.code().name}: {err.details()}")


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when the server at ADDRESS reports SERVING through grpc.health.v1 (a container
    healthcheck; no extra probe binary needed)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.auth import CHANNEL_OPTIONS, channel_credentials

    credentials = _credentials(args)
    try:
        with (grpc.secure_channel(args.address, channel_credentials(credentials), options=CHANNEL_OPTIONS)
              if credentials is not None else grpc.insecure_channel(args.address)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                              timeout=args.timeout)
    except grpc.RpcError as err:
        print(f"league: {args.address}: {err.code().name}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(name)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def add_process_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The league's process commands, added to the library's parser."""
    u = command("up", "start a local league of processes (referee + agents) from a league config")
    u.add_argument("config", help="league TOML (see configs/league_*.toml)")
    u.add_argument("--out", help="run directory (default: runs/<name>)")
    u.add_argument("--referee-restarts", type=int, metavar="N",
                   help="restart a referee that dies up to N times in all (a failed restart counts), then end "
                   "non-zero with the partial summary (default: services.processes.REFEREE_RESTARTS, 3; "
                   "0: never restart)")
    u.set_defaults(func=_up)
    d = command("down", "stop the league started by `league up`")
    d.set_defaults(func=_down)
    st = command("status", "members, versions, rounds and recent returns of a running league")
    st.add_argument("address", help="referee host:port")
    st.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the referee's answer")
    st.set_defaults(func=_status)
    r = command("referee", "run the referee process")
    r.add_argument("config", help="league TOML")
    r.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    r.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    r.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics and /sd port (0: any free port)")
    r.add_argument("--ready-file", help="write {address, metrics, pid} here once serving")
    r.add_argument("--results", help="write chains and member returns here when the rounds are done")
    r.add_argument("--wait-for", type=int, default=0, help="agents to wait for before the first round")
    r.add_argument("--state", help="persist the league's state here after every round; resume from it if it exists")
    a_join_wait = "seconds to keep retrying a referee that does not answer (then exit 1)"
    r.set_defaults(func=_referee)
    a = command("agent", "run an agent process and join a running league")
    a.add_argument("--join", required=True, metavar="HOST:PORT", help="the referee's address")
    a.add_argument("--id", default="", help="agent id (a restarted agent with the same id resumes); "
                   "default: this host's name, so scaled container replicas get distinct ids")
    a.add_argument("--config", help="take this agent's spec (and env, gamma, chain length, population seed) from "
                   "a league TOML; the spec flags below are then errors")
    spec = a.add_argument_group("agent spec (without --config)")
    spec.add_argument("--role", choices=["meta", "persona", "learner"], help="the agent's part in the league (default: learner)")
    spec.add_argument("--policy", help="policy class, a name in league.policies.POLICIES or lstm (default: tabular)")
    spec.add_argument("--hidden", type=int, help="LSTM units (default: 64)")
    spec.add_argument("--init", help="uniform | random:SEED | persona:SPLIT:INDEX | checkpoint:PATH (default: uniform)")
    spec.add_argument("--lr", help="inner learning rate(s), comma-separated per chain step (default: 1.0)")
    spec.add_argument("--rule", choices=["pg", "frozen"], help="learning rule (default: pg)")
    spec.add_argument("--env", help="game (default: the referee's)")
    spec.add_argument("--gamma", type=float, help="discount of the agent's returns (default: 0.96)")
    spec.add_argument("--chain-length", type=int, help="inner steps of a chain, L (default: 3)")
    spec.add_argument("--population-seed", type=int, help="seed of the persona population that persona: inits "
                      "index into (default: 0)")
    a.add_argument("--checkpoint-dir", default="runs/league/agents", help="where the agent checkpoints itself")
    a.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    a.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    a.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: any free port)")
    a.add_argument("--advertise", default="", help="host name the referee and Prometheus dial (default: --host)")
    a.add_argument("--ready-file", help="write {agent_id, address, metrics, pid, resumed} here once joined")
    a.add_argument("--join-wait", type=float, default=60.0, help=a_join_wait)
    a.set_defaults(func=_agent)
    c = command("coordinator", "run a coordinator mode against a running league (meta-mapg: Algorithm 1; "
                "opponent-modeling: Algorithms 3 and 4, no reads of the personas' parameters)")
    c.add_argument("--mode", default="meta-mapg",
                   help="coordinator mode (services.coordinator.MODES): meta-mapg, opponent-modeling, matrl, diffgame "
                   "(the rounds of a differentiable-game league) or meva (trains and serves MeVa's model; docs/meva.md)")
    c.add_argument("--join", default="", metavar="HOST:PORT",
                   help="the referee's address (meta-mapg, opponent-modeling, matrl)")
    c.add_argument("--experiment", required=True, help="experiment TOML (chain, agent and train sections; mode matrl: "
                   "the fields of league.matrl.sampled.SampledMATRLConfig; diffgame, meva: a differentiable league)")
    c.add_argument("--method", help="meta-gradient of the meta-training (default: the mode's first; meta-mapg: "
                   "meta-mapg, meta-pg or no-own-learning; opponent-modeling: meta-mapg-om)")
    c.add_argument("--seed", type=int, default=0, help="training seed (the embedded run's random stream)")
    c.add_argument("--meta", default="", help="agent id of the meta-agent (modes meta-mapg, opponent-modeling)")
    c.add_argument("--agents", default="", metavar="ID[=HOST:PORT],...",
                   help="mode matrl: agent ids, consecutive groups of the game's n players each playing its own MATRL "
                   "rounds; modes diffgame and meva: ID=HOST:PORT of every agent of the differentiable league")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an RPC or an agent's update "
                   "(mode matrl: a group whose agent is later than this has its round voided)")
    c.add_argument("--personas", default="", help="comma-separated agent ids of the persona agents: (n-1) x meta_batch for an n-player game, chain b seating the b-th n-1 of them in order")
    c.add_argument("--iterations", type=int, default=1, help="meta-training iterations to run")
    c.add_argument("--tolerance", type=float, default=1e-5,
                   help="largest difference allowed between a peer's published update and the coordinator's replica")
    c.add_argument("--results", help="write the iterations and final meta-parameters here (JSON)")
    c.add_argument("--state", help="resumable run: save the meta-learner, optimisers, random stream and history "
                   "here after every iteration (mode matrl also at each decided round, before its commits), and continue "
                   "from this file if it exists (see docs/league.md)")
    c.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    c.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    c.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: any free port)")
    c.add_argument("--ready-file", help="write {address, metrics, pid} here once serving")
    c.add_argument("--linger", type=float, default=0.0, help="seconds to keep serving /metrics after the last iteration")
    c.add_argument("--pace", type=float, default=0.0, help="least seconds from one iteration's start to the next's "
                   "(0: back to back; a long-running demonstration league need not keep every core busy)")
    c.add_argument("--join-wait", type=float, default=60.0, help=a_join_wait)
    c.set_defaults(func=_coordinator)
    da = command("diff-agent", "run an agent of a differentiable-game league (naive, LOLA, MeVa...; driven by "
                 "`league coordinator --mode diffgame`, its model served by `--mode meva`; docs/meva.md)")
    da.add_argument("--config", required=True, help="differentiable-league TOML (configs/meva/league_ipd.toml)")
    da.add_argument("--id", required=True, help="this agent's id in the config's [[agents]]")
    da.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    da.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    da.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: any free port)")
    da.add_argument("--model-wait", type=float, default=30.0,
                    help="seconds a MeVa agent waits for the round's model before stepping with its last one")
    da.add_argument("--ready-file", help="write {agent_id, address, metrics, pid} here once serving")
    da.set_defaults(func=_diff_agent)
    h = command("health", "exit 0 if a league server reports SERVING (grpc.health.v1)")
    h.add_argument("address", help="host:port")
    h.add_argument("--service", default="", help="service name (default: the whole server)")
    h.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    h.set_defaults(func=_health)
    ce = command("certs", "the league's certificate authority and per-process credentials (mutual TLS)")
    ce_sub = ce.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    ci = ce_sub.add_parser("init", formatter_class=HelpFormatter, help="create a league CA",
                           description="create a league certificate authority (ca.pem and a 0600 ca.key) in CA")
    ci.add_argument("ca", help="directory for the CA (must not hold one already)")
    ci.add_argument("--name", default="league", help="organisation name in the CA certificate")
    ci.set_defaults(func=_certs_init)
    cs = ce_sub.add_parser("issue", formatter_class=HelpFormatter,
                           help="issue one process its own key and certificate from the league CA",
                           description="issue one process a key and a certificate naming its role and id, signed by "
                                       "the league CA; OUT then holds ca.pem, cert.pem and key.pem (0600), the "
                                       "directory its --credentials takes")
    cs.add_argument("--ca", required=True, help="the CA directory (`league certs init`; `league up` makes RUN/pki/ca)")
    cs.add_argument("--role", required=True, choices=["agent", "referee", "coordinator", "admin"],
                    help="what the holder may do (docs/security.md has the table)")
    cs.add_argument("--id", required=True, help="the holder's id (for an agent: the agent id it joins under)")
    cs.add_argument("--out", required=True, help="credentials directory to write")
    cs.add_argument("--host", action="append", default=[], help="extra DNS name or IP for the certificate "
                    "(for non-league TLS clients; league clients verify the name league.internal)")
    cs.add_argument("--days", type=int, default=365, help="validity in days")
    cs.add_argument("--json", action="store_true", help="print machine-readable JSON")
    cs.set_defaults(func=_certs_issue)
    cn = ce_sub.add_parser("ensure", formatter_class=HelpFormatter,
                           help="create a CA and credentials that are missing (idempotent; compose's init service)",
                           description="in DIR: the CA (DIR/ca) unless it exists, DIR/<ID> for each --issue ROLE:ID "
                                       "and DIR/pool/<PREFIX>-<k> for each --pool ROLE:PREFIX:N, each only if missing")
    cn.add_argument("dir", help="directory of the league's credentials")
    cn.add_argument("--ca", help="the CA's directory (default: DIR/ca); elsewhere keeps the CA key out of DIR")
    cn.add_argument("--issue", action="append", default=[], metavar="ROLE:ID", help="one identity (repeatable)")
    cn.add_argument("--pool", action="append", default=[], metavar="ROLE:PREFIX:N",
                    help="N credentials PREFIX-1..PREFIX-N for replicas that claim one each (repeatable)")
    cn.set_defaults(func=_certs_ensure)
    cc = ce_sub.add_parser("claim", formatter_class=HelpFormatter,
                           help="claim a pool's credentials for a replica and print their directory",
                           description="print the directory of the pool entry HOLDER claimed before, else claim the "
                                       "first free one (atomically); exit 2 when all are taken")
    cc.add_argument("pool", help="a pool directory made by `league certs ensure --pool`")
    cc.add_argument("--holder", required=True, help="who claims (e.g. the container's host name)")
    cc.add_argument("--claims", help="writable directory of the claims (default: POOL/.claims)")
    cc.set_defaults(func=_certs_claim)
    for p in (r, a, c, st, h, u, da):
        p.add_argument("--insecure", action="store_true",
                       help="plaintext gRPC without authentication, for local experiments only")
    for p in (r, a, c, st, h, da):
        p.add_argument("--credentials", metavar="DIR",
                       help="this process's credentials (ca.pem, cert.pem, key.pem); default: $LEAGUE_CREDENTIALS")
    a.add_argument("--peer-access", default="direct", choices=["direct", "inferred"],
                   help="who may read this agent's parameters: direct (referee and coordinator) or inferred "
                        "(opponent modeling: the referee only)")
    for p in (c,):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=EXPERIMENT_SET)
    for p in (u, r, a):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=LEAGUE_SET)
    for p in (u, st):
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    for p in (r, a, c, da):
        p.add_argument("--log-file", help="also append the log to this file (it always goes to stderr)")


def build_parser() -> argparse.ArgumentParser:
    return library.build_parser(add_process_commands, description=__doc__)


def main(argv: list[str] | None = None) -> int:
    return library.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
