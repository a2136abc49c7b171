"""Read models against the stream: does what Postgres says about an event match the event?

The projector writes one ``memory_events`` row per memory event and one ``memory_versions`` row
per version, each carrying the stream ``seq``. Verification walks them in ``seq`` order beside
the stream (a merge, in bounded memory) and compares each with the decoded event. Comparison is
pure (:func:`compare_event_row`, :func:`compare_version_row`); the cursors are the adapter.
Rows missing from a read model are not reported (a forgotten memory, or a projection behind);
rows that differ from their event, or that name a sequence the stream does not hold, are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec

from libs.events import Event, ReadModelIssue, decode_event, storable, storable_json
from services.auditor.store import Conn

__all__ = [
    "READ_MODEL_QUERIES",
    "compare_event_row",
    "compare_version_row",
    "decode_or_none",
    "read_model_rows",
    "read_model_tables",
]


READ_MODEL_QUERIES: Final = {
    "memory_events": "SELECT seq, event_id, ns, memory_id, type, schema, actor, command_id, "
                     "correlation_id, at, data FROM memory_events",
    "memory_versions": "SELECT seq, event_id, ns, memory_id, version_id, content, content_hash "
                       "FROM memory_versions",
}
"""The rows compared, per table (``WHERE``/``ORDER BY seq`` are added)."""


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


async def read_model_tables(conn: Conn) -> list[str]:
    """Which read-model tables exist in this schema (none when only the auditor runs)."""
    found = []
    for table in READ_MODEL_QUERIES:
        cur = await conn.execute("SELECT to_regclass(%s) AS t", (table,))
        row = await cur.fetchone()
        if row and row["t"] is not None:
            found.append(table)
    return found


async def read_model_rows(conn: Conn, table: str, first: int, page: int = 2000
                          ) -> AsyncIterator[dict[str, Any]]:
    """Rows of ``table`` with ``seq >= first`` in seq order (server-side cursor)."""
    async with conn.cursor(name=f"audit_rm_{table}") as cur:
        cur.itersize = page
        await cur.execute(f"{READ_MODEL_QUERIES[table]} WHERE seq >= %s ORDER BY seq", (first,))
        async for row in cur:
            yield row
