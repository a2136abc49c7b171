"""Threads over the read models: a memory's neighbours in its thread, and a thread in order.

A thread's order is ``(thread_position, memory_id)`` (positions are the writer's, else the
creating event's sequence; the id breaks a tie between equal positions). Namespace-scoped and
live-only, as every statement of the read-model query layer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from libs.events import (
    MAX_THREAD_POSITION,
    Filters,
    GetThread,
    InvalidInput,
    MemoryView,
    ThreadView,
    validate_namespace,
)
from libs.events.text import unstorable_reason
from libs.readmodel.context import Neighbours
from libs.readmodel.memories import _LIVE, _MEMORY_COLUMNS, _links, _memory_view, filter_sql
from libs.readmodel.pool import Conn

__all__ = ["adjacent", "context_of", "get_thread"]

# For each anchor, up to %(n)s turns on each side; `side` is -1 (before) or 1 (after), `place`
# the distance from the anchor (1 = adjacent). The lateral scans read the thread index.
_NEIGHBOURS_SQL: Final = """
SELECT h.memory_id AS anchor, n.side, n.place, {columns}
FROM memories h
CROSS JOIN LATERAL (
    (SELECT -1 AS side,
            row_number() OVER (ORDER BY m.thread_position DESC, m.memory_id DESC) AS place, m.*
       FROM memories m
      WHERE {where} AND m.thread_id = h.thread_id
        AND (m.thread_position, m.memory_id) < (h.thread_position, h.memory_id)
      ORDER BY m.thread_position DESC, m.memory_id DESC LIMIT %(n)s)
    UNION ALL
    (SELECT 1 AS side,
            row_number() OVER (ORDER BY m.thread_position, m.memory_id) AS place, m.*
       FROM memories m
      WHERE {where} AND m.thread_id = h.thread_id
        AND (m.thread_position, m.memory_id) > (h.thread_position, h.memory_id)
      ORDER BY m.thread_position, m.memory_id LIMIT %(n)s)
) AS n
WHERE h.ns = %(ns)s AND h.memory_id = ANY (%(ids)s) AND h.thread_id IS NOT NULL
"""


async def adjacent(conn: Conn, ns: str, filters: Filters, memory_ids: Sequence[str]
                   ) -> dict[str, Neighbours]:
    """The turn just before and just after each of ``memory_ids`` in its thread, among the live
    memories passing ``filters`` (a memory outside a thread has none)."""
    if not memory_ids:
        return {}
    params: dict[str, Any] = {"ns": validate_namespace(ns), "ids": list(memory_ids), "n": 1}
    where = filter_sql(filters, params)
    statement = _NEIGHBOURS_SQL.format(columns="n.memory_id", where=where)
    cur = await conn.execute(statement, params, prepare=False)
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for row in await cur.fetchall():
        (before if row["side"] < 0 else after)[row["anchor"]] = row["memory_id"]
    return {anchor: Neighbours(before=before.get(anchor), after=after.get(anchor))
            for anchor in set(before) | set(after)}


async def context_of(conn: Conn, ns: str, memory_ids: Sequence[str], n: int
                     ) -> dict[str, list[MemoryView]]:
    """Up to ``n`` live turns before and after each of ``memory_ids``, in thread order (the
    memory itself left out). Filters do not apply: context is what surrounds a hit."""
    if not memory_ids or n <= 0:
        return {}
    params: dict[str, Any] = {"ns": validate_namespace(ns), "ids": list(memory_ids), "n": n}
    columns = _MEMORY_COLUMNS.replace("m.", "n.")
    cur = await conn.execute(_NEIGHBOURS_SQL.format(columns=columns, where=_LIVE), params,
                             prepare=False)
    rows = await cur.fetchall()
    links = await _links(conn, ns, sorted({row["memory_id"] for row in rows}))
    placed: dict[str, list[tuple[int, MemoryView]]] = {}
    for row in rows:
        order = int(row["side"]) * int(row["place"])
        view = _memory_view(row, links.get(row["memory_id"], []))
        placed.setdefault(row["anchor"], []).append((order, view))
    return {anchor: [view for _, view in sorted(items, key=lambda item: item[0])]
            for anchor, items in placed.items()}


def _encode_cursor(position: int, memory_id: str) -> str:
    raw = msgspec.json.encode([position, memory_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position, memory_id = msgspec.json.decode(raw, type=tuple[int, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("malformed cursor", field="cursor") from None
    if not 0 <= position <= MAX_THREAD_POSITION or unstorable_reason(memory_id) is not None:
        raise InvalidInput("malformed cursor", field="cursor")
    return position, memory_id


async def get_thread(conn: Conn, ns: str, request: GetThread) -> ThreadView:
    """A page of a thread's live memories in order, from ``from_position`` on, after the
    cursor's memory (equal positions are ordered by id, so a page never repeats one)."""
    params: dict[str, Any] = {"ns": validate_namespace(ns), "thread": request.thread,
                              "from": request.from_position, "limit": request.limit + 1,
                              "c_pos": None, "c_id": None}
    if request.cursor:
        params["c_pos"], params["c_id"] = _decode_cursor(request.cursor)
    cur = await conn.execute(
        f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {_LIVE} AND m.thread_id = %(thread)s"
        " AND (%(from)s::bigint IS NULL OR m.thread_position >= %(from)s::bigint)"
        " AND (%(c_id)s::text IS NULL"
        "      OR (m.thread_position, m.memory_id) > (%(c_pos)s::bigint, %(c_id)s::text))"
        " ORDER BY m.thread_position, m.memory_id LIMIT %(limit)s",
        params,
    )
    rows = await cur.fetchall()
    page, more = rows[: request.limit], len(rows) > request.limit
    links = await _links(conn, ns, [row["memory_id"] for row in page])
    items = [_memory_view(row, links.get(row["memory_id"], [])) for row in page]
    last = page[-1] if more and page else None
    next_cursor = (None if last is None
                   else _encode_cursor(int(last["thread_position"]), last["memory_id"]))
    return ThreadView(thread=request.thread, items=items, next_cursor=next_cursor)
