"""The league's certificate authority: create it, issue each process its own key and
certificate (its role and id in the certificate's subject), and read identities back.

A league has one CA (an ECDSA P-256 key and a self-signed certificate). Every process
holds a credentials directory with three files: ``ca.pem`` (the CA certificate, the only
trust anchor), ``cert.pem`` (its own certificate) and ``key.pem`` (its private key, mode
0600). The identity is the subject: ``OU=<role>`` and ``CN=<id>``. Every leaf certificate
also names :data:`LEAGUE_SERVER_NAME` as a DNS subject alternative name: clients check a
server's certificate against that name (agents' host names and container IPs are not
known when their certificates are issued), so a server is authenticated as "a process of
this league's CA"; what it may do is then the access table's business
(:mod:`services.auth`). No sockets here."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# No torch here (services.limits imports it through services.wire): `league health`, a
# container healthcheck run every few seconds, loads credentials and must stay cheap.

ROLES = ("referee", "agent", "coordinator", "admin")
"""Certificate roles: the league's three kinds of process and ``admin`` (the CLI's
``league status``, tests and operators). Not to be confused with an agent's league role
(meta, persona, learner), which the agent declares when it joins."""
LEAGUE_SERVER_NAME = "league.internal"
"""The DNS name in every league certificate; clients verify servers against it."""
CA_CERT, CA_KEY = "ca.pem", "ca.key"
"""Files of a CA directory (the key is what ``league certs issue`` signs with; keep it 0600)."""
CERT, KEY = "cert.pem", "key.pem"
"""A process's certificate and key, next to ``ca.pem`` in its credentials directory."""
DEFAULT_DAYS = 365
"""Validity of an issued certificate."""


class PkiError(ValueError):
    """A CA or credentials directory that is missing, incomplete or not the league's."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate says its holder is; ``fingerprint`` (SHA-256 of the DER
    certificate, hex) tells two certificates with the same role and id apart."""

    role: str
    id: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.role}:{self.id}"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created with mode 0600 (never readable by others, not even briefly)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def create_ca(directory: Path, name: str = "league", days: int = 10 * DEFAULT_DAYS) -> Path:
    """A fresh CA in ``directory`` (``ca.pem`` and a 0600 ``ca.key``); refuses to overwrite one."""
    directory = Path(directory)
    if (directory / CA_KEY).exists():
        raise PkiError(f"{directory} already holds a CA; use it, or remove the directory for a new league")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{name} league CA")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(directory / CA_KEY, _key_pem(key))
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory


def issue(ca_dir: Path, role: str, ident: str, out: Path, hosts: tuple[str, ...] = (),
          days: int = DEFAULT_DAYS) -> Identity:
    """Issue ``role``/``ident`` a key and certificate signed by the CA in ``ca_dir``, written
    with ``ca.pem`` to the credentials directory ``out``. ``hosts`` are extra names or IPs
    for the certificate's subject alternative names (not needed by league clients, which
    verify :data:`LEAGUE_SERVER_NAME`; useful for other TLS clients such as grpcurl)."""
    from services import limits
    from services.wire import WireError

    if role not in ROLES:
        raise PkiError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    try:
        limits.check_id(ident, "id")  # the CA issues only ids the league accepts in requests
    except WireError as err:
        raise PkiError(str(err)) from None
    ca_dir, out = Path(ca_dir), Path(out)
    try:
        ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    except FileNotFoundError as err:
        raise PkiError(f"{ca_dir} is not a league CA directory (missing {Path(err.filename).name})") from None
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(LEAGUE_SERVER_NAME)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "league"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.COMMON_NAME, ident)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            # every league process is both a server and a client (agents serve and call the referee)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    _write_private(out / KEY, _key_pem(key))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (out / CERT).write_bytes(pem)
    (out / CA_CERT).write_bytes((ca_dir / CA_CERT).read_bytes())
    return identity_of(pem)


@lru_cache(maxsize=4096)
def identity_of(cert_pem: bytes) -> Identity:
    """The identity a (league-CA-verified) certificate states; PkiError when it names no
    known role or no id (the ids themselves were checked when the CA issued them). Cached: a
    server reads the same peer certificate on every RPC."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    roles = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ids = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    role = str(roles[0].value) if len(roles) == 1 else ""
    ident = str(ids[0].value) if len(ids) == 1 else ""
    if role not in ROLES:
        raise PkiError(f"the certificate names no league role (OU={role!r})")
    if not ident:
        raise PkiError("the certificate names no id (CN)")
    return Identity(role, ident, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())


@dataclass(frozen=True)
class Credentials:
    """One process's credentials, read from its directory: the CA certificate, its own
    certificate and key (PEM bytes), and the identity they carry."""

    ca: bytes
    cert: bytes
    key: bytes
    identity: Identity
    directory: Path


def load_credentials(directory: str | Path) -> Credentials:
    """Read a credentials directory (``ca.pem``, ``cert.pem``, ``key.pem``); PkiError with a
    one-line reason when a file is missing, the key is readable by others, or the
    certificate was not issued by that CA."""
    directory = Path(directory)
    files = {}
    for name in (CA_CERT, CERT, KEY):
        try:
            files[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            raise PkiError(f"{directory} holds no {name}: not a credentials directory "
                           "(`league certs issue` makes one)") from None
    if os.stat(directory / KEY).st_mode & 0o077:
        raise PkiError(f"{directory / KEY} is readable by others: chmod 600 it")
    ca = x509.load_pem_x509_certificate(files[CA_CERT])
    cert = x509.load_pem_x509_certificate(files[CERT])
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as err:  # noqa: BLE001 - InvalidSignature, ValueError or TypeError: not this CA's
        raise PkiError(f"{directory / CERT} was not issued by the CA of {directory / CA_CERT}: "
                       f"{type(err).__name__}") from None
    return Credentials(files[CA_CERT], files[CERT], files[KEY], identity_of(files[CERT]), directory)


def ensure(directory: Path, identities: list[tuple[str, str]], pools: list[tuple[str, str, int]] = (),
           ca_dir: Path | None = None) -> list[Path]:
    """Idempotent set-up of a league's credentials (the compose file's init service): the CA
    in ``ca_dir`` (default ``directory/ca``; give another place to keep the CA key out of the
    directory every process mounts) unless it exists, ``directory/<id>`` for each (role, id) and
    ``directory/pool/<prefix>-<k>`` (k = 1..n) for each (role, prefix, n) pool, each issued
    only if missing. A pool serves replicas whose ids are not known in advance (scaled
    containers): each replica claims one entry (:func:`claim`). Returns the directories
    issued now."""
    directory = Path(directory)
    ca_dir = Path(ca_dir) if ca_dir is not None else directory / "ca"
    if not (ca_dir / CA_KEY).exists():
        create_ca(ca_dir)
    wanted = [(role, ident, directory / ident) for role, ident in identities]
    wanted += [(role, f"{prefix}-{k}", directory / "pool" / f"{prefix}-{k}") for role, prefix, n in pools
               for k in range(1, n + 1)]
    made = []
    for role, ident, out in wanted:
        if not (out / KEY).exists():
            issue(ca_dir, role, ident, out)
            made.append(out)
    return made


def claim(pool: Path, holder: str, claims: Path | None = None) -> Path:
    """The credentials directory of ``pool`` that ``holder`` (e.g. a container's host name)
    holds: the one it claimed before (a restarted container keeps its id), else the first
    free one, claimed atomically (``mkdir`` of ``claims/<entry>``, default
    ``pool/.claims``, safe between containers sharing the volume; the pool itself may be
    read-only). PkiError when every entry is taken."""
    pool = Path(pool)
    claims = Path(claims) if claims is not None else pool / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    entries = sorted((p for p in pool.iterdir() if (p / CERT).exists()),
                     key=lambda p: (len(p.name), p.name))
    for entry in entries:
        mark = claims / entry.name / "holder"
        if mark.exists() and mark.read_text() == holder:
            return entry
    for entry in entries:
        try:
            (claims / entry.name).mkdir()
        except FileExistsError:
            continue
        (claims / entry.name / "holder").write_text(holder)
        return entry
    raise PkiError(f"every one of the {len(entries)} credentials in {pool} is claimed: issue more "
                   "(a larger pool in the init service) or free a claim by removing its .claims entry")
