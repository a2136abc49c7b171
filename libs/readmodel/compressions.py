"""Queries of ``memory_compressions`` (migration 0008): the receipts of a memory, the stored
compressed forms of ranked memory versions (context assembly), and which receipts exist already
(so the compressor never compresses a version twice, also past the duplicate window).

Like every read-model query, namespace-scoped, and never for a forgotten memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from libs.events import (
    CompressionView,
    NotFound,
    ReceiptsView,
    validate_id,
    validate_namespace,
)
from libs.events.compression import CompressionReceipt
from libs.readmodel.memories import raise_if_dead_lettered

__all__ = ["StoredForm", "forms_of", "known_receipts", "receipts_of"]

Conn = Any

StoredForm = tuple[str, CompressionReceipt]
"""A stored compression: its compressed text and its receipt."""


def _receipt(value: object) -> CompressionReceipt:
    return msgspec.convert(value, CompressionReceipt)


async def known_receipts(conn: Conn, keys: Iterable[tuple[str, str, str]]) -> set[str]:
    """Which of the ``(ns, memory_id, receipt_id)`` are already projected (one query, by the
    primary key)."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    cur = await conn.execute(
        "SELECT c.receipt_id FROM memory_compressions c"
        " JOIN unnest(%(ns)s::text[], %(memory)s::text[], %(receipt)s::text[])"
        " AS k(ns, memory_id, receipt_id) USING (ns, memory_id, receipt_id)",
        {"ns": [k[0] for k in wanted], "memory": [k[1] for k in wanted],
         "receipt": [k[2] for k in wanted]})
    return {str(row["receipt_id"]) for row in await cur.fetchall()}


async def receipts_of(conn: Conn, ns: str, memory_id: str,
                      version_id: str | None = None) -> ReceiptsView:
    """The compressions of a live memory (of one version if given), in stream order."""
    ns, memory_id = validate_namespace(ns), validate_id(memory_id, "memory_id")
    cur = await conn.execute(
        "SELECT head_version_id FROM memories WHERE ns = %(ns)s AND memory_id = %(memory_id)s"
        " AND forgotten_at IS NULL AND diverged_seq IS NULL",
        {"ns": ns, "memory_id": memory_id})
    head = await cur.fetchone()
    if head is None:
        await raise_if_dead_lettered(conn, ns, memory_id)
        raise NotFound(f"memory {memory_id} not found", memory_id=memory_id)
    cur = await conn.execute(
        "SELECT content, receipt, event_id, seq FROM memory_compressions"
        " WHERE ns = %(ns)s AND memory_id = %(memory_id)s"
        " AND (%(version)s::text IS NULL OR version_id = %(version)s) ORDER BY seq",
        {"ns": ns, "memory_id": memory_id, "version": version_id})
    rows = await cur.fetchall()
    return ReceiptsView(
        memory_id=memory_id, head_version_id=str(head["head_version_id"]),
        compressions=[CompressionView(content=row["content"], receipt=_receipt(row["receipt"]),
                                      event_id=row["event_id"], seq=int(row["seq"]))
                      for row in rows])


async def forms_of(conn: Conn, ns: str, versions: Sequence[tuple[str, str]],
                   purpose: str) -> dict[str, list[StoredForm]]:
    """Compressed forms of each ``(memory_id, version_id)`` whose receipt is safe for
    ``purpose``, cheapest first, by memory id."""
    if not versions:
        return {}
    cur = await conn.execute(
        "SELECT c.memory_id, c.content, c.receipt FROM memory_compressions c"
        " JOIN unnest(%(ids)s::text[], %(versions)s::text[]) AS v(memory_id, version_id)"
        " ON c.memory_id = v.memory_id AND c.version_id = v.version_id"
        " WHERE c.ns = %(ns)s AND %(purpose)s = ANY(c.safe_for)"
        " ORDER BY c.memory_id, c.compressed_tokens, c.seq",
        {"ns": ns, "ids": [m for m, _ in versions], "versions": [v for _, v in versions],
         "purpose": purpose})
    found: dict[str, list[StoredForm]] = {}
    for row in await cur.fetchall():
        found.setdefault(str(row["memory_id"]), []).append(
            (row["content"], _receipt(row["receipt"])))
    return found
