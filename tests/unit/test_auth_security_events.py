"""Wire structs of security: encoding, strict decoding, and no secret on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from libs.auth.keys import generate_key, parse_key
from libs.events.model import Actor, ApiKeyIssued, ApiKeyRevoked
from libs.events.security import (
    AGGREGATE_API_KEY,
    ApiKeyIssuedData,
    ApiKeyRevokedData,
    Grant,
    Scope,
)
from libs.events.subjects import event_subject

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def issued_event() -> tuple[ApiKeyIssued, str]:
    key = generate_key()
    data = ApiKeyIssuedData(
        key_id=key.key_id, prefix=key.prefix, secret_hash=key.secret_hash, principal="ci-bot",
        grants=(Grant(scope=Scope.WRITE, namespace="team-*"),
                Grant(scope=Scope.AUDIT, namespace="system")),
        expires_at=datetime(2026, 1, 1, tzinfo=UTC), issued_by="admin", at=AT,
    )
    event = ApiKeyIssued(
        id="0190a8b2-0000-7000-8000-000000000001", schema=ApiKeyIssued.SCHEMA, ns="system",
        aggregate=AGGREGATE_API_KEY, aggregate_id=key.key_id, actor=Actor(principal="admin"),
        command_id="c", correlation_id="c", at=AT, data=data,
    )
    return event, key.key


def test_issued_event_round_trips_and_never_carries_the_secret() -> None:
    event, secret_key = issued_event()
    raw = msgspec.json.encode(event)
    assert secret_key.encode() not in raw
    assert parse_key(secret_key).secret.encode() not in raw
    assert msgspec.json.decode(raw, type=ApiKeyIssued) == event
    body = msgspec.json.decode(raw)
    assert body["type"] == "ApiKeyIssued"
    assert body["data"]["grants"] == [{"scope": "write", "namespace": "team-*"},
                                      {"scope": "audit", "namespace": "system"}]
    # The subject of a key's events is a valid token path.
    assert event_subject("system", AGGREGATE_API_KEY, event.aggregate_id).startswith(
        "mnemos.evt.system.apikey.")


def test_revoked_event_round_trips() -> None:
    data = ApiKeyRevokedData(key_id="abcdefghijklmnop", reason="leaked in a log", by="admin")
    event = ApiKeyRevoked(
        id="0190a8b2-0000-7000-8000-000000000002", schema=ApiKeyRevoked.SCHEMA, ns="system",
        aggregate=AGGREGATE_API_KEY, aggregate_id=data.key_id, actor=Actor(principal="admin"),
        command_id="c2", correlation_id="c2", at=AT, data=data,
    )
    raw = msgspec.json.encode(event)
    assert msgspec.json.decode(raw, type=ApiKeyRevoked) == event
    assert msgspec.json.decode(raw)["type"] == "ApiKeyRevoked"


@pytest.mark.parametrize(("field", "value"), [
    ("key_id", "ABCDEFGHIJKLMNOP"), ("key_id", "short"), ("principal", ""),
    ("principal", "a\x00b"), ("principal", "a\nb"), ("principal", "x" * 257),
    ("issued_by", ""), ("principal_kind", "root"),
])
def test_issued_payload_rejects_invalid_fields(field: str, value: str) -> None:
    event, _ = issued_event()
    body = msgspec.json.decode(msgspec.json.encode(event.data))
    body[field] = value
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, ApiKeyIssuedData)


def test_unknown_fields_are_refused() -> None:
    body = {"key_id": "abcdefghijklmnop", "reason": "r", "by": "admin", "secret": "x"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, ApiKeyRevokedData)


def test_reason_is_bounded_and_unicode_is_kept() -> None:
    ok = msgspec.convert({"key_id": "abcdefghijklmnop", "reason": "fuite 🔑 clé", "by": "ä"},
                         ApiKeyRevokedData)
    assert ok.reason == "fuite 🔑 clé"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"key_id": "abcdefghijklmnop", "reason": "r" * 1025, "by": "a"},
                        ApiKeyRevokedData)


def test_scope_values_are_the_documented_strings() -> None:
    assert [s.value for s in Scope] == ["read", "write", "admin", "audit"]
    assert str(Grant(scope=Scope.ADMIN, namespace="team-*")) == "admin:team-*"
