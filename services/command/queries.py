"""The one namespace-scoped query layer over the read models.

Rules every statement here follows: it is parameterised by ``ns = %(ns)s`` on every table it
reads, and it never serves a forgotten memory (``forgotten_at IS NULL``; links to forgotten
targets are hidden too). Nothing else in the gateway issues SQL against the read models.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from libs.events import Actor, InvalidInput, NotFound, validate_id, validate_namespace
from services.command.fusion import or_tsquery, query_terms
from services.command.read_models import Conn
from services.command.views import (
    EventView,
    Filters,
    HistoryView,
    LinkView,
    ListMemories,
    MemoryPage,
    MemoryView,
    VersionView,
)

__all__ = [
    "BM25_B",
    "BM25_K1",
    "dense_ranking",
    "dense_sql",
    "fetch_memories",
    "filter_sql",
    "get_memory",
    "history",
    "lexical_ranking",
    "list_memories",
]

HNSW_EF_SEARCH: Final = 100
"""Candidate list size of the HNSW scan; 100 keeps recall high for k <= 100."""
BM25_K1: Final = 1.2
BM25_B: Final = 0.75

_MEMORY_COLUMNS: Final = (
    "m.ns, m.memory_id, m.kind, m.content, m.content_hash, m.head_version_id, m.version_count,"
    " m.revision, m.tags, m.metadata, m.source, m.agent_id, m.created_by, m.updated_by,"
    " m.created_command_id, m.created_at, m.updated_at"
)
_LIVE: Final = "m.ns = %(ns)s AND m.forgotten_at IS NULL"


def filter_sql(filters: Filters, params: dict[str, Any]) -> str:
    """The WHERE clause for ``filters`` (always namespace-scoped and live-only)."""
    clauses = [_LIVE]
    if filters.tags:
        clauses.append("m.tags @> %(tags)s::text[]")
        params["tags"] = list(filters.tags)
    if filters.kind is not None:
        clauses.append("m.kind = %(kind)s")
        params["kind"] = filters.kind
    if filters.agent_id is not None:
        clauses.append("m.agent_id = %(agent_id)s")
        params["agent_id"] = filters.agent_id
    if filters.since is not None:
        clauses.append("m.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.until is not None:
        clauses.append("m.created_at < %(until)s")
        params["until"] = filters.until
    return " AND ".join(clauses)


def _actor(value: object) -> Actor:
    return msgspec.convert(value, Actor)


def _memory_view(row: Mapping[str, Any], links: list[LinkView]) -> MemoryView:
    return MemoryView(
        ns=row["ns"], memory_id=row["memory_id"], kind=row["kind"], content=row["content"],
        content_hash=row["content_hash"], head_version_id=row["head_version_id"],
        version_count=row["version_count"], revision=row["revision"], tags=list(row["tags"]),
        metadata=dict(row["metadata"]), source=row["source"], agent_id=row["agent_id"],
        created_by=_actor(row["created_by"]), updated_by=_actor(row["updated_by"]),
        created_command_id=row["created_command_id"], created_at=row["created_at"],
        updated_at=row["updated_at"], links=links,
    )


async def _links(conn: Conn, ns: str, memory_ids: Sequence[str]) -> dict[str, list[LinkView]]:
    """Outgoing links of ``memory_ids`` whose targets are still served."""
    if not memory_ids:
        return {}
    cur = await conn.execute(
        "SELECT l.memory_id, l.target_memory_id, l.relation, l.seq, l.created_at"
        " FROM memory_links l JOIN memories m"
        "   ON m.ns = l.ns AND m.memory_id = l.target_memory_id"
        " WHERE l.ns = %(ns)s AND " + _LIVE + " AND l.memory_id = ANY(%(ids)s)"
        " ORDER BY l.memory_id, l.seq",
        {"ns": ns, "ids": list(memory_ids)},
    )
    found: dict[str, list[LinkView]] = {}
    for row in await cur.fetchall():
        found.setdefault(row["memory_id"], []).append(LinkView(
            target_memory_id=row["target_memory_id"], relation=row["relation"],
            seq=row["seq"], created_at=row["created_at"],
        ))
    return found


async def fetch_memories(conn: Conn, ns: str, memory_ids: Sequence[str]) -> dict[str, MemoryView]:
    """Live memories of ``ns`` among ``memory_ids``, with their links, by id."""
    if not memory_ids:
        return {}
    cur = await conn.execute(
        f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {_LIVE}"
        " AND m.memory_id = ANY(%(ids)s)",
        {"ns": ns, "ids": list(memory_ids)},
    )
    rows = await cur.fetchall()
    links = await _links(conn, ns, [row["memory_id"] for row in rows])
    return {row["memory_id"]: _memory_view(row, links.get(row["memory_id"], [])) for row in rows}


async def get_memory(conn: Conn, ns: str, memory_id: str) -> MemoryView:
    """One live memory with provenance and links; NotFound otherwise (also in another ns)."""
    ns, memory_id = validate_namespace(ns), validate_id(memory_id, "memory_id")
    found = await fetch_memories(conn, ns, [memory_id])
    if memory_id not in found:
        raise NotFound(f"memory {memory_id} not found", memory_id=memory_id)
    return found[memory_id]


def _encode_cursor(created_at: datetime, memory_id: str) -> str:
    raw = msgspec.json.encode([created_at, memory_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, memory_id = msgspec.json.decode(raw, type=tuple[datetime, str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("malformed cursor", field="cursor") from None
    return created_at, memory_id


async def list_memories(conn: Conn, ns: str, request: ListMemories) -> MemoryPage:
    """Live memories matching the filters, newest first, keyset-paginated."""
    params: dict[str, Any] = {"ns": validate_namespace(ns), "limit": request.limit + 1}
    where = filter_sql(request, params)
    if request.cursor:
        params["c_at"], params["c_id"] = _decode_cursor(request.cursor)
        where += " AND (m.created_at, m.memory_id) < (%(c_at)s, %(c_id)s)"
    cur = await conn.execute(
        f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE {where}"
        " ORDER BY m.created_at DESC, m.memory_id DESC LIMIT %(limit)s",
        params,
    )
    rows = await cur.fetchall()
    page, more = rows[: request.limit], len(rows) > request.limit
    links = await _links(conn, ns, [row["memory_id"] for row in page])
    items = [_memory_view(row, links.get(row["memory_id"], [])) for row in page]
    next_cursor = (
        _encode_cursor(page[-1]["created_at"], page[-1]["memory_id"]) if more and page else None
    )
    return MemoryPage(items=items, next_cursor=next_cursor)


async def history(conn: Conn, ns: str, memory_id: str) -> HistoryView:
    """Versions and events of a live memory, each ordered by stream sequence."""
    await get_memory(conn, ns, memory_id)  # NotFound for unknown, forgotten or other-ns ids
    params = {"ns": ns, "id": memory_id}
    cur = await conn.execute(
        "SELECT version_id, parent_ids, content, content_hash, metadata, reason, actor,"
        " command_id, event_id, seq, created_at FROM memory_versions"
        " WHERE ns = %(ns)s AND memory_id = %(id)s ORDER BY seq",
        params,
    )
    versions = [
        VersionView(
            version_id=r["version_id"], parent_ids=list(r["parent_ids"]), content=r["content"],
            content_hash=r["content_hash"], metadata=dict(r["metadata"]), reason=r["reason"],
            actor=_actor(r["actor"]), command_id=r["command_id"], event_id=r["event_id"],
            seq=r["seq"], created_at=r["created_at"],
        )
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT seq, event_id, type, schema, actor, command_id, correlation_id, at, data"
        " FROM memory_events WHERE ns = %(ns)s AND memory_id = %(id)s ORDER BY seq",
        params,
    )
    events = [
        EventView(
            seq=r["seq"], event_id=r["event_id"], type=r["type"], schema=r["schema"],
            actor=_actor(r["actor"]), command_id=r["command_id"],
            correlation_id=r["correlation_id"], at=r["at"], data=dict(r["data"]),
        )
        for r in await cur.fetchall()
    ]
    return HistoryView(memory_id=memory_id, versions=versions, events=events)


async def dense_ranking(
    conn: Conn, ns: str, filters: Filters, vector: npt.NDArray[np.float32], limit: int
) -> list[str]:
    """Memory ids nearest to ``vector`` (cosine), best first, via the HNSW index.

    Iterative scans keep walking the graph until ``limit`` rows pass the filters, so a selective
    filter does not starve the result; ``relaxed_order`` allows slight misordering, which the
    final sort by distance repairs.
    """
    params: dict[str, Any] = {"ns": validate_namespace(ns), "q": vector, "limit": limit}
    statement = dense_sql(filter_sql(filters, params))
    async with conn.transaction():
        await conn.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cur = await conn.execute(statement, params)
        rows = await cur.fetchall()
    return [row["memory_id"] for row in rows]


def dense_sql(where: str) -> str:
    """The nearest-neighbour statement: ``ORDER BY distance LIMIT`` so the HNSW index serves it
    (the outer query only re-sorts the few rows a relaxed-order scan returns)."""
    return (
        "SELECT memory_id, distance FROM ("
        "  SELECT m.memory_id, m.embedding <=> %(q)s::vector AS distance"
        f"  FROM memories m WHERE {where} AND m.embedding IS NOT NULL"
        "   ORDER BY m.embedding <=> %(q)s::vector LIMIT %(limit)s"
        ") AS nearest ORDER BY distance, memory_id"
    )


# BM25 over Postgres full text: the query's lexemes (stemmed like the documents), their document
# frequency among the namespace's live memories, term frequency from the tsvector's positions,
# and document length as its number of distinct lexemes (avgdl over the matching documents).
_BM25_SQL: Final = """
WITH terms AS MATERIALIZED (
    SELECT DISTINCT t.lexeme
    FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS t(lexeme)
),
df AS MATERIALIZED (
    SELECT terms.lexeme,
           (SELECT count(*) FROM memories d
             WHERE d.ns = %(ns)s AND d.forgotten_at IS NULL
               AND d.tsv @@ plainto_tsquery('simple', terms.lexeme))::float8 AS n
    FROM terms
),
total AS MATERIALIZED (
    SELECT count(*)::float8 AS n FROM memories t WHERE t.ns = %(ns)s AND t.forgotten_at IS NULL
),
hits AS MATERIALIZED (
    SELECT m.memory_id, m.tsv, greatest(length(m.tsv), 1)::float8 AS dl
    FROM memories m WHERE {where} AND m.tsv @@ to_tsquery('english', %(orq)s)
),
avgdl AS MATERIALIZED (SELECT coalesce(avg(dl), 1.0) AS v FROM hits),
tf AS (
    SELECT h.memory_id, h.dl, u.lexeme,
           coalesce(array_length(u.positions, 1), 1)::float8 AS f
    FROM hits h CROSS JOIN LATERAL unnest(h.tsv) AS u
    WHERE u.lexeme IN (SELECT lexeme FROM terms)
)
SELECT tf.memory_id,
       sum(ln(1.0 + (total.n - df.n + 0.5) / (df.n + 0.5))
           * tf.f * (%(k1)s + 1.0)
           / (tf.f + %(k1)s * (1.0 - %(b)s + %(b)s * tf.dl / avgdl.v))) AS score
FROM tf JOIN df ON df.lexeme = tf.lexeme CROSS JOIN total CROSS JOIN avgdl
GROUP BY tf.memory_id
ORDER BY score DESC, tf.memory_id
LIMIT %(limit)s
"""


async def lexical_ranking(conn: Conn, ns: str, filters: Filters, text: str, limit: int
                          ) -> list[str]:
    """Memory ids matching *any* term of ``text``, best first by BM25.

    Matching is an OR of the query's terms (agents ask in sentences; an AND would demand every
    word), ranking is BM25 so rarer terms and more of them count for more.
    """
    terms = query_terms(text)
    if not terms:
        return []
    params: dict[str, Any] = {
        "ns": validate_namespace(ns), "text": " ".join(terms), "orq": or_tsquery(terms),
        "k1": BM25_K1, "b": BM25_B, "limit": limit,
    }
    where = filter_sql(filters, params)
    cur = await conn.execute(_BM25_SQL.replace("{where}", where), params)
    return [row["memory_id"] for row in await cur.fetchall()]
