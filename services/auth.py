"""Who may call what: the league's access table and the one server interceptor that
enforces it, plus the gRPC credentials of mutual TLS.

Every league server requires a client certificate from the league's CA
(:mod:`services.pki`); the caller's identity (role and id) is read from that certificate,
never from the request. :data:`ACCESS` maps each RPC to a :class:`Rule`: the roles allowed,
and for the RPCs a member makes about itself, the request field that must equal the
caller's certificate id. ``docs/security.md`` renders this table. Opponent-modeling mode
(``peer_access = "inferred"``) is an input of :func:`access_table`, so it is a config
switch, not a code path. No sockets here."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter

from services.gen.league.v1 import agent_pb2, coordinator_pb2, referee_pb2
from services.intercept import AioInterceptor, rewrap
from services.pki import LEAGUE_SERVER_NAME, ROLES, Credentials, Identity, PkiError, identity_of

log = logging.getLogger("league.auth")

EVERYONE = frozenset(ROLES)


@dataclass(frozen=True)
class Rule:
    """Who may call one RPC."""

    roles: frozenset[str]
    """Certificate roles allowed to call it."""
    own_id_field: str = ""
    """Request field that must equal the caller's certificate id ("" when the RPC is not
    about the caller itself). Only unary requests can carry one."""
    why: str = ""
    """One line for the documentation's table."""


def _name(descriptor_file, service: str, method: str) -> str:
    full = descriptor_file.DESCRIPTOR.services_by_name[service].full_name
    assert method in descriptor_file.DESCRIPTOR.services_by_name[service].methods_by_name, (service, method)
    return f"/{full}/{method}"


REFEREE = {m: _name(referee_pb2, "Referee", m) for m in ("Join", "Heartbeat", "Leave", "Subscribe", "Status",
                                                        "PlayMatches")}
AGENT = {m: _name(agent_pb2, "Agent", m) for m in ("Describe", "GetParameters", "PushParameters")}
COORDINATOR_STATUS = _name(coordinator_pb2, "Coordinator", "Status")
HEALTH_CHECK, HEALTH_WATCH = "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"
REFLECTION = ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
              "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")

ACCESS: Mapping[str, Rule] = MappingProxyType({
    REFEREE["Join"]: Rule(frozenset({"agent"}), "agent_id", "an agent joins under its own id only"),
    REFEREE["Heartbeat"]: Rule(frozenset({"agent"}), "agent_id", "only the member itself renews its lease"),
    REFEREE["Leave"]: Rule(frozenset({"agent"}), "agent_id", "only the member itself leaves"),
    REFEREE["Subscribe"]: Rule(frozenset({"agent"}), "agent_id",
                               "an agent receives the batches of its own matches only (no all-batches stream)"),
    REFEREE["Status"]: Rule(EVERYONE, why="membership and progress; read-only"),
    REFEREE["PlayMatches"]: Rule(frozenset({"coordinator"}), why="the coordinator's chain steps and MATRL rounds (agents learn from them)"),
    AGENT["Describe"]: Rule(frozenset({"referee", "coordinator", "admin"}),
                            why="spaces and versions, read at join (referee) and before pushes (coordinator)"),
    AGENT["GetParameters"]: Rule(frozenset({"referee", "coordinator"}),
                                 why="the referee rolls out; the coordinator checks its replica and reads MATRL "
                                     "predictions and acceptances"),
    AGENT["PushParameters"]: Rule(frozenset({"coordinator"}),
                                  why="meta-updates, persona draws and MATRL rounds (kinds matrl-trust, matrl-mixture, "
                                      "matrl-commit)"),
    COORDINATOR_STATUS: Rule(EVERYONE, why="iteration and objective; read-only"),
    HEALTH_CHECK: Rule(EVERYONE, why="liveness (containers' healthchecks use the process's own credentials)"),
    HEALTH_WATCH: Rule(EVERYONE, why="liveness"),
    **{name: Rule(EVERYONE, why="service discovery for grpcurl and the like") for name in REFLECTION},
})
"""RPC (``/package.Service/Method``) -> who may call it, in the default ``direct`` mode.
An RPC missing from the table is refused (PERMISSION_DENIED) to everyone."""

PEER_ACCESS: Mapping[str, Mapping[str, Rule]] = MappingProxyType({
    "direct": MappingProxyType({}),
    "inferred": MappingProxyType({
        AGENT["GetParameters"]: Rule(frozenset({"referee"}),
                                     why="opponent modeling: peers' parameters are inferred, not read; "
                                         "only the referee (it rolls out) reads them"),
    }),
})
"""Peer-access mode -> the rules it changes. ``direct``: the coordinator reads agents'
parameters; ``inferred`` (opponent modeling): agents refuse parameter reads from the coordinator."""


REDACTED: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType({
    "direct": MappingProxyType({}),
    "inferred": MappingProxyType({"rule_config_json": frozenset({"coordinator"})}),
})
"""Peer-access mode -> ``AgentDescription`` field -> the roles that get it empty. In
``inferred`` mode the coordinator still calls ``Describe`` (versions, before its pushes) but
does not learn an agent's learning-rule settings (its learning rates): opponent modeling
assumes or infers them."""


def redacted_fields(peer_access: str, context: grpc.ServicerContext) -> frozenset[str]:
    """The description fields this caller (by its certificate role) gets empty."""
    who = peer_identity(context)
    role = who.role if who is not None else "none"
    return frozenset(name for name, roles in REDACTED[peer_access].items() if role in roles)


def access_table(peer_access: str = "direct") -> Mapping[str, Rule]:
    """The access table of a league in the given peer-access mode."""
    if peer_access not in PEER_ACCESS:
        raise ValueError(f"peer_access must be one of {', '.join(PEER_ACCESS)}, not {peer_access!r}")
    return MappingProxyType({**ACCESS, **PEER_ACCESS[peer_access]})


class Refused(Exception):
    """A call the table does not allow: the status code and a one-line reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, role: str) -> None:
        super().__init__(reason)
        self.code, self.role = code, role


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The caller's identity from its verified TLS certificate (None on a plaintext
    connection or a certificate that names no league role and id)."""
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return None
    try:
        return identity_of(pem[0])
    except (PkiError, ValueError):
        return None


def authorise(rule: Rule | None, context: grpc.ServicerContext, request: Any = None) -> Identity:
    """The caller's identity if ``rule`` lets it make this call, else :class:`Refused`:
    UNAUTHENTICATED without a readable league identity, PERMISSION_DENIED for a role the
    rule does not list or a request about another member's id."""
    who = peer_identity(context)
    if who is None:
        raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                      "no league client certificate with a role and an id: this league needs mutual TLS "
                      "credentials (`league certs issue`)", "none")
    if rule is None:
        raise Refused(grpc.StatusCode.PERMISSION_DENIED, "this RPC is not in the league's access table", who.role)
    if who.role not in rule.roles:
        raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                      f"role {who.role!r} may not call this RPC (allowed: {', '.join(sorted(rule.roles))})", who.role)
    if rule.own_id_field:
        claimed = getattr(request, rule.own_id_field)
        if claimed != who.id:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{who} may make this call only about itself, not about {claimed[:64]!r}", who.role)
    return who


class AccessControl(grpc.ServerInterceptor):
    """Enforces an access table on every RPC of a server before its handler runs; a refusal
    is logged, counted in ``league_rpc_refused_total{grpc_service, grpc_method, caller,
    grpc_code}`` (``caller``: the certificate role, ``none`` without a readable identity;
    not ``role``, which in league metrics is always an agent's league role) and answered
    with its code, and the handler never sees the request. A call let through is counted in
    ``league_rpc_authorised_total{grpc_service, grpc_method, caller}``, so an agent's own
    metrics say who read its parameters."""

    def __init__(self, table: Mapping[str, Rule], registry: CollectorRegistry) -> None:
        for method, rule in table.items():
            assert rule.roles <= EVERYONE, (method, rule.roles)
        self.table = table
        self.refused = Counter("league_rpc_refused", "RPCs refused by the access table, by method, caller's "
                               "certificate role (none: no readable identity) and status code",
                               ["grpc_service", "grpc_method", "caller", "grpc_code"], registry=registry)
        self.authorised = Counter("league_rpc_authorised", "RPCs the access table let through, by method and "
                                  "caller's certificate role (who reads whose parameters, counted by the one read)",
                                  ["grpc_service", "grpc_method", "caller"], registry=registry)

    def _refusal(self, method: str, context: Any, request: Any) -> Refused | None:
        """The refusal of this call (logged and counted), or None when the table allows it."""
        try:
            who = authorise(self.table.get(method), context, request)
            service, name = method.split("/")[1:3]
            self.authorised.labels(service, name, who.role).inc()
        except Refused as err:
            service, name = method.split("/")[1:3] if method in self.table else ("unknown", "unknown")
            self.refused.labels(service, name, err.role, err.code.name).inc()
            log.warning("refused %s from %s (%s): %s: %s", method, context.peer(), err.role, err.code.name, err)
            return err
        return None

    def wrap(self, behavior: Callable, method: str, handler: grpc.RpcMethodHandler) -> Callable:
        """``behavior`` behind the table's check (``services.intercept.Wrap``); plain or async
        as ``behavior`` is. A streaming request carries no id to check (``own_id_field``)."""
        rule = self.table.get(method)
        if rule is not None and rule.own_id_field and handler.request_streaming:
            raise AssertionError(f"{method}: a streaming request cannot carry {rule.own_id_field}")
        streaming = handler.response_streaming

        def about(request: Any) -> Any:
            return None if handler.request_streaming else request

        if inspect.isasyncgenfunction(behavior):
            async def stream_async(request: Any, context: Any) -> AsyncIterator[Any]:
                refused = self._refusal(method, context, about(request))
                if refused is not None:
                    await context.abort(refused.code, str(refused))
                async for item in behavior(request, context):
                    yield item
            return stream_async
        if inspect.iscoroutinefunction(behavior):  # a unary reply, or a stream written with context.write
            async def unary_async(request: Any, context: Any) -> Any:
                refused = self._refusal(method, context, about(request))
                if refused is not None:
                    await context.abort(refused.code, str(refused))
                return await behavior(request, context)
            return unary_async

        def unary(request: Any, context: Any) -> Any:
            refused = self._refusal(method, context, about(request))
            if refused is not None:
                context.abort(refused.code, str(refused))
            return behavior(request, context)

        def stream(request: Any, context: Any) -> Iterator[Any]:
            refused = self._refusal(method, context, about(request))
            if refused is not None:
                context.abort(refused.code, str(refused))
            yield from behavior(request, context)

        return stream if streaming else unary

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        return rewrap(continuation(handler_call_details), handler_call_details.method, self.wrap)

    def aio(self) -> AioInterceptor:
        """The same access control (same table, same refusal counter) for a ``grpc.aio`` server."""
        return AioInterceptor(self.wrap)


# -- credentials ---------------------------------------------------------------------------
CHANNEL_OPTIONS: list[tuple[str, str]] = [("grpc.ssl_target_name_override", LEAGUE_SERVER_NAME)]
"""Clients verify every league server's certificate against the league's name, not the
dialled host (agents advertise container IPs that no certificate could list in advance)."""


def server_credentials(creds: Credentials) -> grpc.ServerCredentials:
    """TLS with the process's certificate; a client certificate from the league CA is required."""
    return grpc.ssl_server_credentials([(creds.key, creds.cert)], root_certificates=creds.ca,
                                       require_client_auth=True)


def channel_credentials(creds: Credentials) -> grpc.ChannelCredentials:
    """TLS trusting only the league CA, presenting the process's own certificate."""
    return grpc.ssl_channel_credentials(root_certificates=creds.ca, private_key=creds.key,
                                        certificate_chain=creds.cert)


def render_access_table() -> str:
    """The access table as the markdown table of ``docs/security.md`` (a test keeps them equal):
    one row per RPC, the roles allowed in each peer-access mode, the self-only field and why."""
    modes = list(PEER_ACCESS)
    tables = {m: access_table(m) for m in modes}
    rows = ["| RPC | " + " | ".join(f"roles (`{m}`)" for m in modes) + " | only about itself | why |",
            "|---|" + "---|" * len(modes) + "---|---|"]
    for method in ACCESS:
        rules = [tables[m][method] for m in modes]
        roles = [", ".join(r for r in ROLES if r in rule.roles) for rule in rules]
        own = f"request `{rules[0].own_id_field}` = certificate id" if rules[0].own_id_field else ""
        why = "; ".join(dict.fromkeys(rule.why for rule in rules))
        rows.append(f"| `{method}` | " + " | ".join(roles) + f" | {own} | {why} |")
    return "\n".join(rows)


KINDS: Mapping[str, tuple[str, str, str]] = MappingProxyType({
    "policy": ("the agent (its own learning); coordinator (PushParameters)", "referee, coordinator",
               "an agent's base parameters"),
    "lr": ("coordinator (PushParameters)", "coordinator", "a meta-agent's inner learning rates"),
    "value": ("coordinator (PushParameters)", "coordinator", "the coordinator's critic, served for inspection"),
    "policy@<chain>": ("the agent (its own learning)", "referee, coordinator", "parameters adapted within a chain"),
    "x": ("the agent (its own learning)", "coordinator", "a differentiable-game agent's parameters"),
    "joint": ("coordinator (PushParameters, mode diffgame)", "coordinator",
              "the joint point of the agent's match: the push makes it step"),
    "trajectory": ("the agent (its own learning)", "coordinator", "the agent's optimisation trajectory, MeVa's "
                   "training data (mode meva)"),
    "meva-model": ("coordinator (PushParameters, mode meva)", "coordinator",
                   "the meta-value model a MeVa agent follows, versioned"),
})
"""Parameter kind -> (who writes it, who reads it, what it is). Kinds travel on the Agent
service's RPCs, so the access table above decides who may call them: only the coordinator
role pushes (an agent cannot push a model or a joint point into another agent), the referee
and the coordinator read. ``docs/security.md`` renders this table."""


def render_kinds_table() -> str:
    """The kinds table as markdown (``docs/security.md``; a test keeps them equal)."""
    rows = ["| kind | written by | read by (`GetParameters`, as the access table allows) | what |", "|---|---|---|---|"]
    rows += [f"| `{kind}` | {w} | {r} | {what} |" for kind, (w, r, what) in KINDS.items()]
    return "\n".join(rows)


if __name__ == "__main__":  # python -m services.auth [kinds]: print a table for docs/security.md
    import sys

    print(render_kinds_table() if sys.argv[1:] == ["kinds"] else render_access_table())
