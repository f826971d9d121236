"""Access control of a secured league, with real processes on 127.0.0.1: a referee and
three agents started by the CLI with their own credentials from a league CA. Every RPC is
tried without credentials, with credentials of another CA, with a league certificate that
names no role, with every role the access table does not allow, and (where a member acts
about itself) under another member's id. Each is refused with its code and the league is
unharmed: same members, same parameters, rounds going on, refusals counted in the
``league_rpc_refused_total`` metric. Then the calls the table allows succeed, an agent in
``inferred`` peer-access mode refuses the coordinator, and a newcomer with credentials from
``league certs issue`` attaches with ``league agent --join``."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import grpc
import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import auth, pki
from services import server as srv
from services.client import fetch_parameters, push_parameters
from services.gen.league.v1 import agent_pb2, agent_pb2_grpc, referee_pb2, referee_pb2_grpc
from services.processes import make_league_credentials, referee_status
from services.wire import chunk_parameters
from tests.league_procs import learners_toml, metric_value, metrics, spawn, start_league, wait_json, wait_until

pytestmark = pytest.mark.timeout(300)

LEAGUE = """
name = "access"
[referee]
env = "ipd"
trajectories = 4
horizon = 10
rounds = 0
seed = 3
lease_seconds = 3.0
fetch_timeout = 5.0
""" + learners_toml("a", "b", "c")
AGENTS = ("a", "b", "c")
T = 10.0


@pytest.fixture(scope="module")
def league(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    creds = make_league_credentials(tmp / "pki", list(AGENTS))
    for role, ident in (("coordinator", "coord"), ("agent", "a")):  # a second certificate for agent id "a"
        creds[f"{role}:{ident}"] = tmp / "pki" / "extra" / f"{role}-{ident}"
        pki.issue(tmp / "pki" / "ca", role, ident, creds[f"{role}:{ident}"])
    lg = start_league(tmp, LEAGUE, AGENTS, creds, wait_for=len(AGENTS), agent_extra={"c": ["--peer-access", "inferred"]})
    infos = {a: json.loads((tmp / f"{a}.json").read_text()) for a in AGENTS}
    loaded = {name: pki.load_credentials(d) for name, d in creds.items()}
    yield {"ref": lg.ref, "agents": infos, "creds": loaded, "tmp": tmp, "procs": lg.procs, "config": lg.config}
    lg.stop()


def _foreign_credentials(tmp) -> pki.Credentials:
    """Credentials of the right shape (role agent, id a) from another CA."""
    pki.create_ca(tmp / "rogue-ca")
    pki.issue(tmp / "rogue-ca", "agent", "a", tmp / "rogue")
    return pki.load_credentials(tmp / "rogue")


def _roleless_credentials(tmp) -> pki.Credentials:
    """A certificate the league CA signed that names no role (OU): TLS accepts it, the
    interceptor cannot read an identity from it."""
    ca_key = serialization.load_pem_private_key((tmp / "pki" / "ca" / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((tmp / "pki" / "ca" / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(pki.LEAGUE_SERVER_NAME)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return pki.Credentials(ca_cert.public_bytes(serialization.Encoding.PEM),
                           cert.public_bytes(serialization.Encoding.PEM),
                           key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()),
                           pki.Identity("none", "a", ""), tmp)


def _calls(lg) -> dict[str, tuple[str, object]]:
    """Per RPC of the access table: (server address, a call taking (channel, agent_id) that
    is valid but for its credentials). ``agent_id`` is the member the call is about."""
    ref, agents = lg["ref"]["address"], lg["agents"]
    a_addr = agents["a"]["address"]
    rng = torch.Generator().manual_seed(0).get_state().numpy().tobytes()

    def referee(ch):
        return referee_pb2_grpc.RefereeStub(ch)

    def agent(ch):
        return agent_pb2_grpc.AgentStub(ch)

    def drain(call):
        return list(call)

    def push(ch, _):
        return agent(ch).PushParameters(iter(chunk_parameters("lr", 1, {"lr": torch.full((1, 3), 0.3)},
                                                              expected_version=0)), timeout=T)

    match = referee_pb2.MatchSpec(match_id="x1", seats=[referee_pb2.PinnedSeat(agent_id=a, kind="policy", version=0)
                                                        for a in ("a", "b")])
    return {
        auth.REFEREE["Join"]: (ref, lambda ch, who: referee(ch).Join(referee_pb2.JoinRequest(
            agent_id=who, address=agents[who]["address"], protocol_version=srv.PROTOCOL_VERSION, role="learner"),
            timeout=T)),
        auth.REFEREE["Heartbeat"]: (ref, lambda ch, who: referee(ch).Heartbeat(
            referee_pb2.HeartbeatRequest(agent_id=who), timeout=T)),
        auth.REFEREE["Leave"]: (ref, lambda ch, who: referee(ch).Leave(referee_pb2.LeaveRequest(agent_id=who),
                                                                        timeout=T)),
        auth.REFEREE["Subscribe"]: (ref, lambda ch, who: next(referee(ch).Subscribe(
            referee_pb2.SubscribeRequest(agent_id=who), timeout=T))),
        auth.REFEREE["Status"]: (ref, lambda ch, _: referee(ch).Status(referee_pb2.StatusRequest(), timeout=T)),
        auth.REFEREE["PlayMatches"]: (ref, lambda ch, _: list(referee(ch).PlayMatches(referee_pb2.PlayMatchesRequest(
            matches=[match], episodes=2, horizon=3, rng_state=rng), timeout=T))),
        auth.AGENT["Describe"]: (a_addr, lambda ch, _: agent(ch).Describe(agent_pb2.DescribeRequest(), timeout=T)),
        auth.AGENT["GetParameters"]: (a_addr, lambda ch, _: drain(agent(ch).GetParameters(
            agent_pb2.GetParametersRequest(kind="policy"), timeout=T))),
        auth.AGENT["PushParameters"]: (a_addr, push),
        auth.HEALTH_CHECK: (ref, lambda ch, _: health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=T)),
    }


EVERYONE = {"referee", "agent", "coordinator", "admin"}
SPEC = {  # the issue's rules, written out independently of services/auth.py: (roles allowed, self-only field)
    auth.REFEREE["Join"]: ({"agent"}, "agent_id"),
    auth.REFEREE["Heartbeat"]: ({"agent"}, "agent_id"),
    auth.REFEREE["Leave"]: ({"agent"}, "agent_id"),
    auth.REFEREE["Subscribe"]: ({"agent"}, "agent_id"),
    auth.REFEREE["Status"]: (EVERYONE, ""),
    auth.REFEREE["PlayMatches"]: ({"coordinator"}, ""),
    auth.AGENT["Describe"]: ({"referee", "coordinator", "admin"}, ""),
    auth.AGENT["GetParameters"]: ({"referee", "coordinator"}, ""),
    auth.AGENT["PushParameters"]: ({"coordinator"}, ""),
    auth.HEALTH_CHECK: (EVERYONE, ""),
}


def test_the_access_table_is_the_specified_one():
    for method, (roles, own) in SPEC.items():
        assert (set(auth.ACCESS[method].roles), auth.ACCESS[method].own_id_field) == (roles, own), method


def _code(address, credentials, call, who="a") -> grpc.StatusCode:
    with srv.channel(address, credentials) as ch:
        try:
            call(ch, who)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def _snapshot(lg) -> dict:
    """What an attack must not change: the members and every agent's parameters and versions."""
    coord = lg["creds"]["coordinator:coord"]
    status = referee_status(lg["ref"]["address"], credentials=lg["creds"]["admin"])
    out = {"members": sorted((m.agent_id, m.address) for m in status.members)}
    for a in ("a", "b"):
        with srv.channel(lg["agents"][a]["address"], coord) as ch:
            stub = agent_pb2_grpc.AgentStub(ch)
            out[a] = {k: (v.version, {n: t.clone() for n, t in v.params.items()})
                      for k, v in ((k, fetch_parameters(stub, k, timeout=T)) for k in ("lr",))}
    return out


def test_access_table_covers_every_rpc_of_every_league_service():
    """Every method of the league's services has a rule (nothing is allowed by omission), and
    no self-only rule sits on a streaming request (the interceptor could not read its id)."""
    from services.gen.league.v1 import agent_pb2 as ap, coordinator_pb2 as cp, referee_pb2 as rp

    methods = {f"/{s.full_name}/{m.name}": m for f in (ap, cp, rp) for s in f.DESCRIPTOR.services_by_name.values()
               for m in s.methods}
    assert set(methods) <= set(auth.ACCESS), set(methods) - set(auth.ACCESS)
    for name, rule in auth.ACCESS.items():
        if rule.own_id_field and name in methods:
            assert not methods[name].client_streaming and rule.own_id_field in methods[name].input_type.fields_by_name
    assert auth.access_table("inferred")[auth.AGENT["GetParameters"]].roles == {"referee"}
    assert auth.access_table("direct")[auth.AGENT["GetParameters"]].roles == {"referee", "coordinator"}
    with pytest.raises(ValueError):
        auth.access_table("open")


def test_every_rpc_refused_without_valid_credentials_and_the_league_unharmed(league):
    lg = league
    tmp, creds = lg["tmp"], lg["creds"]
    wait_until(lambda: referee_status(lg["ref"]["address"], credentials=creds["admin"]).round >= 2, 60, "two rounds")
    before = _snapshot(lg)
    foreign, roleless = _foreign_credentials(tmp), _roleless_credentials(tmp)
    refused = []
    for method, (address, call) in _calls(lg).items():
        allowed, own_id_field = SPEC[method]
        # no credentials (plaintext) and another CA's: the TLS handshake refuses the connection
        assert _code(address, None, call) == grpc.StatusCode.UNAVAILABLE, method
        assert _code(address, foreign, call) == grpc.StatusCode.UNAVAILABLE, method
        # a league-CA certificate without a role: UNAUTHENTICATED from the interceptor
        assert _code(address, roleless, call) == grpc.StatusCode.UNAUTHENTICATED, method
        refused.append((method, "none", "UNAUTHENTICATED"))
        # every role the table does not allow
        for role, name in (("agent", "a"), ("referee", "referee"), ("coordinator", "coordinator:coord"),
                           ("admin", "admin")):
            if role not in allowed:
                got = _code(address, creds[name], call)
                assert got == grpc.StatusCode.PERMISSION_DENIED, (method, role, got)
                refused.append((method, role, "PERMISSION_DENIED"))
        # a member acting about another member: agent b's certificate, a's id
        if own_id_field:
            assert _code(address, creds["b"], call, who="a") == grpc.StatusCode.PERMISSION_DENIED, method
            refused.append((method, "agent", "PERMISSION_DENIED"))
    # the league is unharmed: same members, same parameters, and it goes on playing
    after = _snapshot(lg)
    assert after["members"] == before["members"] == sorted((a, lg["agents"][a]["address"]) for a in AGENTS)
    for a in ("a", "b"):
        (v0, p0), (v1, p1) = before[a]["lr"], after[a]["lr"]
        assert v0 == v1 and all(torch.equal(p0[n], p1[n]) for n in p0)
    r = referee_status(lg["ref"]["address"], credentials=creds["admin"]).round
    wait_until(lambda: referee_status(lg["ref"]["address"], credentials=creds["admin"]).round >= r + 2, 60,
               "rounds after the attacks")
    # every refusal was counted where it happened, by method, role and code
    pages = {lg["ref"]["address"]: metrics(lg["ref"]["metrics"]), lg["agents"]["a"]["address"]:
             metrics(lg["agents"]["a"]["metrics"])}
    calls = _calls(lg)
    for method, role, code in set(refused):
        page = pages[calls[method][0]]
        service, name = method.split("/")[1:3]
        n = metric_value(page, "league_rpc_refused_total", grpc_service=service, grpc_method=name, caller=role,
                         grpc_code=code)
        assert n is not None and n >= 1, (method, role, code)


def test_allowed_calls_succeed_and_hyperparameters_are_range_checked(league):
    lg = league
    creds, calls = lg["creds"], _calls(lg)
    for method, who in ((auth.REFEREE["Status"], "admin"), (auth.REFEREE["Status"], "a"),
                        (auth.REFEREE["Heartbeat"], "a"), (auth.AGENT["Describe"], "referee"),
                        (auth.AGENT["GetParameters"], "coordinator:coord"), (auth.HEALTH_CHECK, "b")):
        address, call = calls[method]
        assert _code(address, creds[who], call) == grpc.StatusCode.OK, (method, who)
    a_addr = lg["agents"]["a"]["address"]
    with srv.channel(a_addr, creds["coordinator:coord"]) as ch:
        stub = agent_pb2_grpc.AgentStub(ch)
        version, lr = fetch_parameters(stub, "lr", timeout=T).version, fetch_parameters(stub, "lr", timeout=T).params
        for bad in (3e38, -0.1, float("inf")):
            with pytest.raises(grpc.RpcError) as err:
                push_parameters(stub, "lr", {"lr": torch.full_like(lr["lr"], bad)}, version, timeout=T)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, err.value.details())
        got = fetch_parameters(stub, "lr", timeout=T)
        assert got.version == version and torch.equal(got.params["lr"], lr["lr"])  # nothing applied
        assert push_parameters(stub, "lr", {"lr": torch.full_like(lr["lr"], 0.25)}, version, timeout=T) == version + 1


def test_inferred_peer_access_refuses_the_coordinator_but_not_the_referee(league):
    lg = league
    creds = lg["creds"]
    c = lg["agents"]["c"]["address"]
    read = lambda ch, _: fetch_parameters(agent_pb2_grpc.AgentStub(ch), "policy", timeout=T)  # noqa: E731
    assert _code(c, creds["coordinator:coord"], read) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(c, creds["referee"], read) == grpc.StatusCode.OK
    assert _code(lg["agents"]["a"]["address"], creds["coordinator:coord"], read) == grpc.StatusCode.OK
    # the referee still rolls c out: its matches are played and it learns
    admin = creds["admin"]
    wait_until(lambda: {m.agent_id: m for m in referee_status(lg["ref"]["address"], credentials=admin).members}["c"]
               .matches >= 2, 60, "c to play")


def test_a_second_certificate_for_a_live_id_cannot_take_it_over(league):
    lg = league
    creds = lg["creds"]
    ref = lg["ref"]["address"]
    # the CA issued another certificate for id "a": a live lease belongs to the first one
    code = _code(ref, creds["agent:a"], _calls(lg)[auth.REFEREE["Join"]][1], who="a")
    assert code == grpc.StatusCode.ALREADY_EXISTS
    status = referee_status(ref, credentials=creds["admin"])
    assert {m.agent_id for m in status.members} >= set(AGENTS)


def test_newcomer_attaches_with_issued_credentials_and_not_without(league, capsys):
    """``league certs issue`` then ``league agent --join --credentials`` attaches a new agent
    to the running secured league (the CLI's checks run in-process; the agent is a process)."""
    from services.cli import main

    lg = league
    tmp, ref = lg["tmp"], lg["ref"]["address"]

    def cli(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("certs", "issue", "--ca", str(tmp / "pki" / "ca"), "--role", "agent", "--id", "late",
                       "--out", str(tmp / "late-creds"), "--json")
    assert code == 0 and '"id": "late"' in out
    assert (tmp / "late-creds" / "key.pem").stat().st_mode & 0o777 == 0o600
    # without credentials: a one-line usage error naming the flag
    code, _, err = cli("agent", "--join", ref, "--id", "late", "--env", "ipd")
    assert code == 2 and "--credentials" in err
    # another id than the certificate's: refused before it dials
    code, _, err = cli("agent", "--join", ref, "--id", "other", "--credentials", str(tmp / "late-creds"))
    assert code == 2 and "its certificate names" in err
    # plaintext status against the secured referee: no answer
    code, _, err = cli("status", ref, "--insecure", "--timeout", "3")
    assert code == 1 and "UNAVAILABLE" in err
    late = spawn(["agent", "--join", ref, "--credentials", str(tmp / "late-creds"), "--lr", "0.5",
                  "--checkpoint-dir", str(tmp / "ckpt"), "--ready-file", str(tmp / "late.json")], tmp / "late.log")
    lg["procs"]["late"] = late
    info = wait_json(tmp / "late.json", late, timeout=120)
    assert info["agent_id"] == "late"  # the id comes from the certificate
    admin = lg["creds"]["admin"]
    wait_until(lambda: (m := {m.agent_id: m for m in referee_status(ref, credentials=admin).members}.get("late"))
               and m.policy_version >= 1, 90, "the newcomer to play and learn")
    code, out, err = cli("status", ref, "--json", "--credentials", str(tmp / "pki" / "admin"))
    assert code == 0 and '"late"' in out, err


def test_docs_hold_the_access_table_as_the_code_has_it():
    text = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    block = text.split("<!-- access-table:begin -->\n", 1)[1].split("\n<!-- access-table:end -->", 1)[0]
    assert block == auth.render_access_table(), "docs/security.md is stale: paste `python -m services.auth`"
