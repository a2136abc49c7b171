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

from libs.events import (
    AGGREGATE_MEMORY,
    Actor,
    CountMemories,
    DeadLettered,
    EventView,
    Filters,
    HistoryView,
    InvalidInput,
    LinkView,
    ListMemories,
    MemoryCount,
    MemoryPage,
    MemoryView,
    NotFound,
    VersionView,
    event_subject,
    validate_id,
    validate_namespace,
)
from libs.readmodel.fusion import query_terms
from libs.readmodel.lexical_plan import (
    CANDIDATE_BUDGET,
    COMMON_CAP,
    bm25_idf,
    plan_candidates,
    tsquery_all,
    tsquery_any,
)
from libs.readmodel.pool import Conn
from libs.runtime.config import Config

__all__ = [
    "BM25_B",
    "BM25_K1",
    "count_memories",
    "dense_ranking",
    "dense_sql",
    "fetch_memories",
    "filter_sql",
    "get_memory",
    "history",
    "lexical_ranking",
    "list_memories",
]

HNSW_EF_SEARCH: Final[int] = Config.model_fields["hnsw_ef_search"].default
"""Default candidate list size of the HNSW scan (``MNEMOS_HNSW_EF_SEARCH``): the smallest value
meeting the 0.95 recall target on the benchmark's synthetic corpus, whose template sentences
crowd together. Measured at 100k memories (recall@10 against exact search; p95 of the bare
nearest-neighbour statement on the 2-core reference machine; m = 8, ef_construction = 96):
ef_search 100 gives 0.83 (4.5 ms), 200 gives 0.92 (6.2 ms), 400 gives 0.97 (9.6 ms). Real
sentences are far easier: on 43k docstring sentences, 100 gives 0.987 (4.3 ms) and 200 gives
0.997 (7.0 ms). Source: ``python -m tests.bench.bench_hnsw_params``."""
BM25_K1: Final = 1.2
BM25_B: Final = 0.75

_MEMORY_COLUMNS: Final = (
    "m.ns, m.memory_id, m.kind, m.content, m.content_hash, m.head_version_id, m.version_count,"
    " m.revision, m.tags, m.metadata, m.source, m.agent_id, m.created_by, m.updated_by,"
    " m.created_command_id, m.created_at, m.updated_at"
)
_LIVE: Final = "m.ns = %(ns)s AND m.forgotten_at IS NULL AND m.diverged_seq IS NULL"


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
        await raise_if_dead_lettered(conn, ns, memory_id)
        raise NotFound(f"memory {memory_id} not found", memory_id=memory_id)
    return found[memory_id]


async def raise_if_dead_lettered(conn: Conn, ns: str, memory_id: str) -> None:
    """Raise :class:`DeadLettered` if an event of this memory was dead-lettered: the read model
    then differs from the fold of its events (e.g. it misses a forget), and serving it, or a
    plain "not found", would hide that."""
    cur = await conn.execute(
        "SELECT seq, error FROM dead_letters WHERE subject = %(subject)s ORDER BY seq LIMIT 1",
        {"subject": event_subject(ns, AGGREGATE_MEMORY, memory_id)},
    )
    row = await cur.fetchone()
    if row is not None:
        raise DeadLettered(
            f"memory {memory_id} is not served: its event at seq {row['seq']} could not be "
            f"projected ({row['error'][:200]}); an operator must fix the cause and replay",
            memory_id=memory_id, seq=row["seq"],
        )


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


async def count_memories(conn: Conn, ns: str, request: CountMemories) -> MemoryCount:
    """How many live memories match the filters."""
    params: dict[str, Any] = {"ns": validate_namespace(ns)}
    cur = await conn.execute(
        f"SELECT count(*) AS n FROM memories m WHERE {filter_sql(request, params)}", params)
    row = await cur.fetchone()
    return MemoryCount(count=int(row["n"]) if row else 0)


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
    conn: Conn, ns: str, filters: Filters, vector: npt.NDArray[np.float32], limit: int,
    *, ef_search: int = HNSW_EF_SEARCH,
) -> list[str]:
    """Memory ids nearest to ``vector`` (cosine), best first, via the HNSW index.

    Iterative scans keep walking the graph until ``limit`` rows pass the filters, so a selective
    filter does not starve the result; ``relaxed_order`` allows slight misordering, which the
    final sort by distance repairs.
    """
    params: dict[str, Any] = {"ns": validate_namespace(ns), "q": vector, "limit": limit}
    statement = dense_sql(filter_sql(filters, params))
    async with conn.transaction():
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), limit)}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # pgvector's cost estimate makes an exact scan + sort of every row look cheaper than the
        # HNSW index below a few ten thousand rows or at a large ef_search; it is not (measured
        # 21 ms vs 1-3 ms at 10k: every row's 384-dim distance is computed). Disabling the full
        # sort leaves the index order as the only plan; plan per query (no generic plan).
        await conn.execute("SET LOCAL enable_sort = off")
        cur = await conn.execute(statement, params, prepare=False)
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


# Lexical search: BM25 over Postgres full text with precomputed corpus statistics (migration
# 0002: per-namespace live document count and total length, per-lexeme document frequency, each
# live memory's tsvector and length in lexical_docs); candidates are read from the GIN index in
# tiers planned by libs.readmodel.lexical_plan, and only the candidates are scored.
_LEXICAL_STATS_SQL: Final = """
SELECT q.lexeme, coalesce(d.df, 0) AS df, s.doc_count, s.total_len
FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS q(lexeme)
CROSS JOIN lexical_ns_stats s
LEFT JOIN lexical_df d ON d.ns = s.ns AND d.lexeme = q.lexeme
WHERE s.ns = %(ns)s
"""

# One candidate tier, read from the narrow lexical_docs (live memories only); `memories` is joined
# only when a filter needs its columns. The candidates' tsvectors are cut down to the query's
# lexemes (setweight marks them, ts_filter keeps the marked) before they leave the scan.
_TIER_SQL: Final = (
    "(SELECT d.memory_id, d.doc_len,"
    " ts_filter(setweight(d.tsv, 'A', %(lexemes)s::text[]), '{{a}}') AS qtsv"
    " FROM lexical_docs d{join} WHERE d.ns = %(ns)s AND d.tsv @@ %({tier})s::tsquery{limit})"
)
_FILTER_JOIN: Final = " JOIN memories m ON m.ns = d.ns AND m.memory_id = d.memory_id AND "

_SCORE_SQL: Final = """
WITH candidates AS MATERIALIZED ({tiers}),
terms AS (SELECT * FROM unnest(%(lexemes)s::text[], %(idf)s::float8[]) AS t(lexeme, idf)),
scored AS (
    SELECT c.memory_id,
           (SELECT sum(terms.idf * tf.f * (%(k1)s + 1.0)
                       / (tf.f + %(k1)s * (1.0 - %(b)s + %(b)s * c.doc_len / %(avgdl)s)))
              FROM (SELECT u.lexeme, coalesce(array_length(u.positions, 1), 1)::float8 AS f
                      FROM unnest(c.qtsv) AS u) AS tf
              JOIN terms ON terms.lexeme = tf.lexeme) AS score
    FROM candidates c
)
SELECT memory_id, max(score) AS score FROM scored
GROUP BY memory_id
ORDER BY score DESC, memory_id
LIMIT %(limit)s
"""


async def lexical_ranking(conn: Conn, ns: str, filters: Filters, text: str, limit: int, *,
                          budget: int = CANDIDATE_BUDGET, cap: int = COMMON_CAP) -> list[str]:
    """Memory ids matching *any* term of ``text``, best first by BM25.

    Matching is an OR of the query's terms (agents ask in sentences; an AND would demand every
    word), ranking is BM25 (k1 = 1.2, b = 0.75, document length = distinct lexemes) so rarer
    terms and more of them count for more. N, avgdl and document frequencies come from the
    projected statistics, so nothing is counted per query.

    Approximation (see :mod:`libs.readmodel.lexical_plan`): candidates are every document with one
    of the rarest terms (postings summing to at most ``CANDIDATE_BUDGET``), plus a capped set of
    documents with all the common terms, plus a capped set with any of them; every candidate
    gets its exact BM25 score. A document matching only some common terms may therefore be
    missed when a term is too common to read in full. ``budget`` and ``cap`` tune the tiers
    (tests shrink them to exercise every tier on a small corpus).
    """
    terms = query_terms(text)
    if not terms:
        return []
    params: dict[str, Any] = {"ns": validate_namespace(ns), "text": " ".join(terms)}
    cur = await conn.execute(_LEXICAL_STATS_SQL, params)
    rows = await cur.fetchall()
    df = {str(row["lexeme"]): int(row["df"]) for row in rows}
    plan = plan_candidates(df, limit, budget, cap)
    if not rows or plan.empty:
        return []  # an empty namespace, or no query lexeme occurs in it
    doc_count, total_len = int(rows[0]["doc_count"]), int(rows[0]["total_len"])
    lexemes = [lexeme for lexeme, n in df.items() if n > 0]
    params.update({
        "lexemes": lexemes, "idf": [bm25_idf(doc_count, df[lexeme]) for lexeme in lexemes],
        "avgdl": max(total_len / doc_count, 1.0), "k1": BM25_K1, "b": BM25_B, "limit": limit,
    })
    where = filter_sql(filters, params)
    join = "" if where == _LIVE else _FILTER_JOIN + where  # lexical_docs holds only live rows
    tiers: list[str] = []
    if plan.rare:
        params["rare"] = tsquery_any(plan.rare)
        tiers.append(_TIER_SQL.format(join=join, tier="rare", limit=""))
    if plan.common:
        params["all_common"], params["any_common"] = (
            tsquery_all(plan.common), tsquery_any(plan.common))
        params["cap"], params["fill"] = plan.cap, plan.fill
        tiers.append(_TIER_SQL.format(join=join, tier="all_common", limit=" LIMIT %(cap)s"))
        if len(plan.common) > 1:  # with one common term, "all" already is "any"
            tiers.append(_TIER_SQL.format(join=join, tier="any_common",
                                          limit=" LIMIT %(fill)s"))
    statement = _SCORE_SQL.replace("{tiers}", " UNION ALL ".join(tiers))
    cur = await conn.execute(statement, params, prepare=False)  # plan per query: see dense
    return [row["memory_id"] for row in await cur.fetchall()]
