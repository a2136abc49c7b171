"""Read models against the stream: does what Postgres says about an event match the event?

The projector writes one ``memory_events`` row per memory event and one ``memory_versions`` row
per version, each carrying the stream ``seq``. Verification walks them in ``seq`` order beside
the stream (a merge, in bounded memory) and compares each with the decoded event. Comparison is
pure (:func:`compare_event_row`, :func:`compare_version_row`); the cursors are the adapter.
The SQL that reads the rows is :mod:`libs.readmodel.verification`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.events import Event, ReadModelIssue, decode_event, storable, storable_json

__all__ = [
    "compare_event_row",
    "compare_version_row",
    "decode_or_none",
]


def _builtins(value: object) -> Any:
    """What the projector stores for a struct: its storable canonical JSON, read back."""
    return msgspec.json.decode(storable_json(value))


def _tag(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def compare_event_row(row: dict[str, Any], event: Event, seq: int) -> ReadModelIssue | None:
    """The first field of a ``memory_events`` row that differs from ``event``."""
    expected: dict[str, Any] = {
        "event_id": event.id, "ns": event.ns, "memory_id": event.aggregate_id,
        "type": _tag(event), "schema": event.schema, "command_id": event.command_id,
        "correlation_id": storable(event.correlation_id), "at": event.at,
        "actor": _builtins(event.actor), "data": _builtins(event.data),
    }
    return _first_difference("memory_events", row, expected, seq, event.id)


def compare_version_row(row: dict[str, Any], event: Event, seq: int) -> ReadModelIssue | None:
    """The first field of a ``memory_versions`` row that differs from ``event``'s payload."""
    data = event.data
    expected: dict[str, Any] = {"event_id": event.id, "ns": event.ns,
                                "memory_id": event.aggregate_id}
    for name in ("version_id", "content", "content_hash"):
        if hasattr(data, name):
            expected[name] = getattr(data, name)
    if "content" in expected:
        expected["content"] = storable(expected["content"])
    return _first_difference("memory_versions", row, expected, seq, event.id)


def _first_difference(table: str, row: dict[str, Any], expected: dict[str, Any], seq: int,
                      event_id: str) -> ReadModelIssue | None:
    for name, want in expected.items():
        have = row.get(name)
        if have != want:
            return ReadModelIssue(
                table=table, seq=seq, event_id=event_id, field=name,
                detail=f"{table}.{name} at seq {seq} is {_short(have)}, the stream event says "
                f"{_short(want)}",
            )
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def decode_or_none(raw: bytes) -> Event | None:
    """The decoded event, or None when the bytes are not a known event."""
    try:
        return decode_event(raw)
    except Exception:  # InvalidInput and anything a damaged message could raise
        return None
