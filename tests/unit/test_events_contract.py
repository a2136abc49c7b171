"""The event contract: encoding, decoding, upcasting, ids, subjects, tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.events import (
    Actor,
    Conflict,
    InvalidInput,
    MemoryCreated,
    MemoryCreatedData,
    MemoryTagged,
    MemoryTaggedData,
    UnknownCommand,
    command_subject,
    content_hash,
    decode_command,
    decode_event,
    derive_event_id,
    encode_event,
    error_from_code,
    event_subject,
    event_types,
    new_command_id,
    new_memory_id,
    parse_command_subject,
    validate_command_id,
    version_id,
)
from libs.events.ids import uuid7_timestamp_ms


def _created(ns: str = "team-a", content: str = "The user prefers dark mode") -> MemoryCreated:
    command_id = new_command_id()
    memory_id = new_memory_id()
    digest = content_hash(content)
    return MemoryCreated(
        id=derive_event_id(ns, command_id),
        schema=MemoryCreated.SCHEMA,
        ns=ns,
        aggregate="memory",
        aggregate_id=memory_id,
        actor=Actor(principal="alice", agent_id="planner", model="m-1", provider="p"),
        command_id=command_id,
        correlation_id=command_id,
        at=datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC),
        data=MemoryCreatedData(
            memory_id=memory_id,
            version_id=version_id(memory_id, digest, {}, []),
            kind="preference",
            content=content,
            content_hash=digest,
            tags=("ui",),
            metadata={"confidence": 0.9},
            occurred_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        ),
    )


def test_roundtrip_is_lossless_and_canonical() -> None:
    event = _created()
    raw = encode_event(event)
    assert decode_event(raw) == event
    # Canonical: keys sorted at every level, so re-encoding the decoded form is byte-identical.
    assert encode_event(decode_event(raw)) == raw
    as_dict = msgspec.json.decode(raw)
    assert list(as_dict) == sorted(as_dict)
    assert list(as_dict["data"]) == sorted(as_dict["data"])
    assert as_dict["type"] == "MemoryCreated" and as_dict["schema"] == 3


def test_old_schema_is_upcast_on_read() -> None:
    """A stored schema-1 MemoryCreated (``text``, no ``kind``) decodes as the current type."""
    current = _created()
    old = msgspec.json.decode(encode_event(current))
    old["schema"] = 1
    old["data"]["text"] = old["data"].pop("content")
    del old["data"]["kind"]
    decoded = decode_event(msgspec.json.encode(old))
    assert isinstance(decoded, MemoryCreated)
    assert decoded.schema == MemoryCreated.SCHEMA
    assert decoded.data.content == current.data.content
    assert decoded.data.kind == "note"


def test_unknown_type_and_garbage_are_typed_errors() -> None:
    with pytest.raises(InvalidInput, match="unknown event type"):
        decode_event(b'{"type":"Nope","schema":1}')
    with pytest.raises(InvalidInput):
        decode_event(b"\x00garbage")
    newer = msgspec.json.decode(encode_event(_created()))
    newer["schema"] = 99
    with pytest.raises(InvalidInput):
        decode_event(msgspec.json.encode(newer))


def test_every_event_type_is_in_the_union() -> None:
    assert {"MemoryCreated", "MemoryRevised", "MemoryTagged", "MemoryMetadataChanged",
            "MemoryLinked", "MemoryForgotten"} <= set(event_types())


def test_event_id_is_derived_from_the_command() -> None:
    command_id = new_command_id()
    first = derive_event_id("ns", command_id)
    assert first == derive_event_id("ns", command_id)
    assert first != derive_event_id("other", command_id)
    assert first != derive_event_id("ns", command_id, 1)
    parsed = uuid.UUID(first)
    assert parsed.version == 7
    assert uuid7_timestamp_ms(first) == uuid7_timestamp_ms(command_id)


@pytest.mark.parametrize("bad", ["", "not-a-uuid", str(uuid.uuid4()), new_command_id().upper(), 7])
def test_command_id_must_be_uuid7(bad: object) -> None:
    with pytest.raises(InvalidInput):
        validate_command_id(bad)


@pytest.mark.parametrize("bad_ns", ["", "a.b", "*", ">", "UPPER", "sp ace", "x" * 65, "ns\n"])
def test_subject_tokens_reject_injection(bad_ns: str) -> None:
    with pytest.raises(InvalidInput):
        event_subject(bad_ns, "memory", "abc")
    with pytest.raises(InvalidInput):
        command_subject(bad_ns, "remember")


def test_subjects() -> None:
    assert event_subject("t1", "memory", "m-1") == "mnemos.evt.t1.memory.m-1"
    assert parse_command_subject(command_subject("t1", "remember")) == ("t1", "remember")
    with pytest.raises(InvalidInput):
        parse_command_subject("mnemos.cmd.t1.a.b")


def test_version_ids_are_content_addressed() -> None:
    a = version_id("m", content_hash("x"), {"k": 1}, ["p2", "p1"])
    assert a == version_id("m", content_hash("x"), {"k": 1}, ["p1", "p2"])
    assert a != version_id("m", content_hash("x"), {"k": 2}, ["p1", "p2"])
    assert a != version_id("m2", content_hash("x"), {"k": 1}, ["p1", "p2"])


@given(st.text(max_size=200), st.lists(st.text(max_size=5), max_size=4))
def test_version_id_ignores_parent_order(content: str, parents: list[str]) -> None:
    h = content_hash(content)
    assert version_id("m", h, {}, parents) == version_id("m", h, {}, list(reversed(parents)))


def test_commands_decode_and_reject_bad_input() -> None:
    cmd = decode_command("remember", b'{"content": "hi", "tags": ["a"]}')
    assert cmd.__class__.__name__ == "Remember"
    with pytest.raises(UnknownCommand):
        decode_command("explode", b"{}")
    with pytest.raises(InvalidInput, match="malformed JSON"):
        decode_command("remember", b"{not json")
    with pytest.raises(InvalidInput):
        decode_command("remember", b'{"content": "hi", "surprise": 1}')
    with pytest.raises(InvalidInput):
        decode_command("remember", b'{"content": "hi", "tags": ["has space"]}')


def test_errors_roundtrip_by_code() -> None:
    err = error_from_code("conflict", "moved", {"expected": 3, "actual": 5})
    assert isinstance(err, Conflict) and err.http_status == 409
    assert err.to_dict() == {"code": "conflict", "message": "moved",
                             "detail": {"expected": 3, "actual": 5}}


def test_tagged_event_payload_is_typed() -> None:
    base = _created()
    tagged = MemoryTagged(
        id=derive_event_id(base.ns, base.command_id, 1), schema=1, ns=base.ns,
        aggregate="memory", aggregate_id=base.aggregate_id, actor=base.actor,
        command_id=base.command_id, correlation_id=base.correlation_id, at=base.at,
        data=MemoryTaggedData(added=("a",), removed=()),
    )
    assert decode_event(encode_event(tagged)) == tagged
