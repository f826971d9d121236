"""The league CA (services/pki.py): issued credentials carry their role and id, are read
back only when the CA really issued them and the key is private, ``ensure`` is idempotent,
and pool claims are exclusive and sticky per holder. No sockets."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from services import pki


def test_issue_and_load_round_trip(tmp_path):
    pki.create_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    who = pki.issue(tmp_path / "ca", "coordinator", "coord-1", tmp_path / "c")
    creds = pki.load_credentials(tmp_path / "c")
    assert (creds.identity.role, creds.identity.id) == ("coordinator", "coord-1") == (who.role, who.id)
    assert (tmp_path / "c" / "key.pem").stat().st_mode & 0o777 == 0o600
    again = pki.issue(tmp_path / "ca", "coordinator", "coord-1", tmp_path / "c2")
    assert again.fingerprint != who.fingerprint  # two certificates for one id are told apart
    with pytest.raises(pki.PkiError, match="already holds a CA"):
        pki.create_ca(tmp_path / "ca")


@pytest.mark.parametrize("role, ident, message", [("root", "x", "unknown role"), ("agent", "", "empty"),
                                                   ("agent", "a b", "may hold only"), ("agent", "x" * 65, "limit")])
def test_the_ca_issues_only_known_roles_and_valid_ids(tmp_path, role, ident, message):
    pki.create_ca(tmp_path / "ca")
    with pytest.raises(pki.PkiError, match=message):
        pki.issue(tmp_path / "ca", role, ident, tmp_path / "out")


def test_credentials_of_another_ca_or_with_a_readable_key_are_refused(tmp_path):
    pki.create_ca(tmp_path / "ca")
    pki.create_ca(tmp_path / "other")
    pki.issue(tmp_path / "other", "agent", "a", tmp_path / "a")
    (tmp_path / "a" / "ca.pem").write_bytes((tmp_path / "ca" / "ca.pem").read_bytes())  # claims the league's CA
    with pytest.raises(pki.PkiError, match="not issued by the CA"):
        pki.load_credentials(tmp_path / "a")
    pki.issue(tmp_path / "ca", "agent", "b", tmp_path / "b")
    os.chmod(tmp_path / "b" / "key.pem", 0o644)
    with pytest.raises(pki.PkiError, match="readable by others"):
        pki.load_credentials(tmp_path / "b")
    with pytest.raises(pki.PkiError, match="no cert.pem"):
        pki.load_credentials(tmp_path / "ca")


def test_ensure_is_idempotent_and_keeps_the_ca(tmp_path):
    made = pki.ensure(tmp_path / "p", [("referee", "referee"), ("agent", "meta")], [("agent", "learner", 3)],
                      ca_dir=tmp_path / "ca")
    assert len(made) == 5 and not (tmp_path / "p" / "ca").exists()  # the CA key stays out of the shared dir
    ca = (tmp_path / "ca" / "ca.pem").read_bytes()
    meta = (tmp_path / "p" / "meta" / "cert.pem").read_bytes()
    assert pki.ensure(tmp_path / "p", [("referee", "referee"), ("agent", "meta"), ("admin", "admin")],
                      [("agent", "learner", 3)], ca_dir=tmp_path / "ca") == [tmp_path / "p" / "admin"]
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == ca and (tmp_path / "p" / "meta" / "cert.pem").read_bytes() == meta
    assert pki.load_credentials(tmp_path / "p" / "pool" / "learner-2").identity.id == "learner-2"


def test_pool_claims_are_exclusive_and_sticky(tmp_path):
    pki.ensure(tmp_path / "p", [], [("agent", "learner", 10)])
    pool = tmp_path / "p" / "pool"
    with ThreadPoolExecutor(8) as ex:  # 10 holders racing for 10 entries
        got = list(ex.map(lambda h: pki.claim(pool, f"host-{h}", tmp_path / "claims"), range(10)))
    assert len(set(got)) == 10
    assert pki.claim(pool, "host-3", tmp_path / "claims") == got[3]  # a restarted holder gets its entry back
    with pytest.raises(pki.PkiError, match="every one of the 10"):
        pki.claim(pool, "host-new", tmp_path / "claims")
