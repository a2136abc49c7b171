"""Authorization rules: implication, audit apart, patterns, reserved namespaces, expiry."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.auth.authorize import Principal, authorize, grant_covers, is_allowed
from libs.auth.errors import Forbidden, Unauthenticated
from libs.events.errors import InvalidInput
from libs.events.security import Grant, Scope


def principal(*grants: str, expires_at: datetime | None = None) -> Principal:
    parsed = tuple(Grant(scope=Scope(g.split(":")[0]), namespace=g.split(":")[1]) for g in grants)
    return Principal.build(name="bot", kind="agent", grants=parsed, credential_id="k",
                           method="api_key", expires_at=expires_at)


IMPLIED = {
    Scope.READ: {Scope.READ},
    Scope.WRITE: {Scope.READ, Scope.WRITE},
    Scope.ADMIN: {Scope.READ, Scope.WRITE, Scope.ADMIN},
    Scope.AUDIT: {Scope.AUDIT},
}


@pytest.mark.parametrize(("granted", "asked"), list(itertools.product(Scope, Scope)))
def test_scope_implication_matrix(granted: Scope, asked: Scope) -> None:
    p = principal(f"{granted.value}:team-a")
    assert is_allowed(p, asked, "team-a") == (asked in IMPLIED[granted])


def test_admin_does_not_imply_audit_and_audit_does_not_imply_read() -> None:
    assert not is_allowed(principal("admin:*"), Scope.AUDIT, "team-a")
    assert not is_allowed(principal("audit:*"), Scope.READ, "team-a")
    both = principal("admin:*", "audit:*")
    assert is_allowed(both, Scope.AUDIT, "team-a") and is_allowed(both, Scope.READ, "x")


def test_explicit_and_prefix_patterns() -> None:
    p = principal("write:team-*", "read:solo")
    assert is_allowed(p, Scope.WRITE, "team-a")
    assert is_allowed(p, Scope.WRITE, "team-")
    assert not is_allowed(p, Scope.WRITE, "team")
    assert not is_allowed(p, Scope.WRITE, "teams")
    assert is_allowed(p, Scope.READ, "solo")
    assert not is_allowed(p, Scope.WRITE, "solo")
    assert not is_allowed(p, Scope.READ, "solo2")
    assert not is_allowed(p, Scope.READ, "sol")
    assert is_allowed(principal("read:*"), Scope.READ, "anything_at-all")


@pytest.mark.parametrize("pattern", ["*", "s*", "sys*", "system*"])
def test_patterns_never_reach_a_reserved_namespace(pattern: str) -> None:
    p = principal(f"admin:{pattern}", f"audit:{pattern}")
    for scope in Scope:
        assert not is_allowed(p, scope, "system")


def test_reserved_namespace_needs_a_named_admin_or_audit_grant() -> None:
    admin = principal("admin:system")
    assert all(is_allowed(admin, s, "system") for s in (Scope.READ, Scope.WRITE, Scope.ADMIN))
    assert not is_allowed(admin, Scope.AUDIT, "system")
    auditor = principal("audit:system")
    assert is_allowed(auditor, Scope.AUDIT, "system")
    assert not is_allowed(auditor, Scope.READ, "system")
    for weak in ("read:system", "write:system"):
        assert not any(is_allowed(principal(weak), s, "system") for s in Scope)


@pytest.mark.parametrize("namespace", ["", "*", "team-*", ">", "a.b", "A", "a b", "a\x00",
                                       "é", "a" * 65, "mnemos.evt.>"])
def test_authorize_rejects_invalid_namespaces_before_matching(namespace: str) -> None:
    with pytest.raises(InvalidInput):
        authorize(principal("admin:*"), Scope.READ, namespace)


def test_authorize_raises_forbidden_without_revealing_other_grants() -> None:
    p = principal("write:secret-project", "read:team-a")
    authorize(p, Scope.READ, "team-a")
    with pytest.raises(Forbidden) as info:
        authorize(p, Scope.WRITE, "team-a")
    assert info.value.http_status == 403 and info.value.code == "forbidden"
    assert "secret-project" not in str(info.value.to_dict())
    assert info.value.detail == {"scope": "write", "namespace": "team-a"}


def test_expiry_is_checked_on_every_authorization() -> None:
    now = time.time()
    at = datetime.fromtimestamp(now, UTC) + timedelta(seconds=10)
    p = principal("admin:*", expires_at=at)
    authorize(p, Scope.READ, "a", now_ts=now)
    authorize(p, Scope.READ, "a", now_ts=at.timestamp() - 1e-3)
    with pytest.raises(Unauthenticated) as info:
        authorize(p, Scope.READ, "a", now_ts=at.timestamp())  # the instant itself is expired
    assert info.value.detail["reason"] == "expired"
    assert not is_allowed(p, Scope.READ, "a", now_ts=at.timestamp() + 1)
    never = principal("admin:*")
    assert is_allowed(never, Scope.READ, "a", now_ts=1e18)


def test_no_grants_allows_nothing() -> None:
    assert not any(is_allowed(principal(), s, "a") for s in Scope)


@pytest.mark.parametrize("bad", ["", "**", "a*b", "*a", "TEAM", "team-*x", "a" * 65,
                                 "a" * 64 + "*", "a\x00", "a.b", ">", "team *"])
def test_grant_patterns_are_validated_on_decode(bad: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"scope": "read", "namespace": bad}, Grant)


def test_grant_decode_of_valid_patterns_and_unknown_scope() -> None:
    for ok in ("a", "a" * 64, "*", "a" * 63 + "*", "team_-*"):
        assert msgspec.convert({"scope": "read", "namespace": ok}, Grant).namespace == ok
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"scope": "superuser", "namespace": "a"}, Grant)


NS = st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True).filter(lambda s: s != "system")


@given(ns=NS, other=NS, scope=st.sampled_from(list(Scope)),
       granted=st.sampled_from(list(Scope)), cut=st.integers(0, 12))
def test_property_against_a_reference_model(ns: str, other: str, scope: Scope,
                                            granted: Scope, cut: int) -> None:
    exact = Grant(scope=granted, namespace=ns)
    assert grant_covers(exact, scope, other) == (other == ns and scope in IMPLIED[granted])
    prefix = ns[:cut]
    pattern = Grant(scope=granted, namespace=f"{prefix}*")
    assert grant_covers(pattern, scope, other) == (
        other.startswith(prefix) and scope in IMPLIED[granted])
