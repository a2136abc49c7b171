"""Reading the read models for verification (the auditor compares them with the stream).

Two checks, both in bounded memory through server-side cursors:

- row by row, in stream order: every ``memory_events`` and ``memory_versions`` row against the
  stream event at its ``seq`` (:func:`event_rows`);
- memory by memory: the fold of a memory's events (:mod:`.expected`) against its ``memories``,
  ``memory_links``, ``memory_branches`` and ``command_results`` rows (:func:`check_folds`). The
  events folded are the ``memory_events`` rows, which the first check has tied to the stream.

Must run inside one (repeatable-read) transaction of the caller, so both see one snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec

from libs.events import Event, ReadModelIssue
from libs.readmodel.expected import ExpectedMemory, fold_memory
from libs.readmodel.registry_expected import fold_registry

__all__ = [
    "EVENT_ROW_QUERIES",
    "check_folds",
    "check_registry",
    "check_result_count",
    "dead_letter_seqs",
    "event_rows",
    "projection_checkpoint",
    "read_model_tables",
]

Conn = Any
Issue = Callable[[ReadModelIssue], None]

EVENT_ROW_QUERIES: Final = {
    "memory_events": "SELECT seq, event_id, ns, memory_id, type, schema, actor, command_id, "
                     "correlation_id, at, data FROM memory_events",
    "memory_versions": "SELECT seq, event_id, ns, memory_id, version_id, content, content_hash "
                       "FROM memory_versions",
}
"""The rows compared event by event, per table (``WHERE``/``ORDER BY seq`` are added)."""

_KEY: Final = 'ns COLLATE "C", memory_id COLLATE "C"'
_MEMORY_COLUMNS: Final = (
    "ns", "memory_id", "kind", "content", "content_hash", "head_version_id", "version_count",
    "tags", "metadata", "source", "agent_id", "created_by", "updated_by", "created_command_id",
    "created_at", "updated_at", "revision", "forgotten_at", "forgotten_by", "forgotten_reason",
    "occurred_at", "thread_id", "thread_position",
)
_RESULT_FIELDS: Final = ("event_id", "event_type", "memory_id", "version_id", "seq")
_PAGE: Final = 2000


async def read_model_tables(conn: Conn) -> list[str]:
    """Which event-row tables exist in this schema (none when only the auditor runs)."""
    found = []
    for table in EVENT_ROW_QUERIES:
        cur = await conn.execute("SELECT to_regclass(%s) AS t", (table,))
        row = await cur.fetchone()
        if row and row["t"] is not None:
            found.append(table)
    return found


async def event_rows(conn: Conn, table: str, first: int) -> AsyncIterator[dict[str, Any]]:
    """Rows of ``table`` with ``seq >= first`` in seq order."""
    async with conn.cursor(name=f"audit_rm_{table}") as cur:
        cur.itersize = _PAGE
        await cur.execute(f"{EVENT_ROW_QUERIES[table]} WHERE seq >= %s ORDER BY seq", (first,))
        async for row in cur:
            yield row


async def projection_checkpoint(conn: Conn) -> int:
    """The read models' checkpoint (0 when there are none)."""
    cur = await conn.execute("SELECT to_regclass('projection_checkpoints') AS t")
    row = await cur.fetchone()
    if not row or row["t"] is None:
        return 0
    cur = await conn.execute(
        "SELECT coalesce(max(last_seq), 0) AS s FROM projection_checkpoints"
        " WHERE name = 'read_models'")
    row = await cur.fetchone()
    return int(row["s"]) if row else 0


async def dead_letter_seqs(conn: Conn) -> set[int]:
    """Sequences the projector gave up on (their events are not in the read models)."""
    cur = await conn.execute("SELECT to_regclass('dead_letters') AS t")
    row = await cur.fetchone()
    if not row or row["t"] is None:
        return set()
    cur = await conn.execute("SELECT seq FROM dead_letters WHERE consumer = 'projector'")
    return {int(r["seq"]) for r in await cur.fetchall()}


def _scope(since_seq: int, alias: str = "") -> str:
    """Memories touched at or after ``since_seq`` (every memory when 0)."""
    if since_seq <= 0:
        return "TRUE"
    prefix = f"{alias}." if alias else ""
    return (f"({prefix}ns, {prefix}memory_id) IN (SELECT ns, memory_id FROM memory_events"
            " WHERE seq >= %(since)s)")


async def _grouped(conn: Conn, name: str, query: str, params: dict[str, Any]
                   ) -> AsyncIterator[tuple[tuple[str, str], list[dict[str, Any]]]]:
    """Rows of ``query`` (ordered by namespace and memory) grouped per memory."""
    async with conn.cursor(name=name) as cur:
        cur.itersize = _PAGE
        await cur.execute(query, params)
        key: tuple[str, str] | None = None
        group: list[dict[str, Any]] = []
        async for row in cur:
            here = (str(row["ns"]), str(row["memory_id"]))
            if here != key and key is not None:
                yield key, group
                group = []
            key = here
            group.append(dict(row))
        if key is not None:
            yield key, group


class _Merge:
    """One ordered stream of memory groups, advanced in step with the others."""

    def __init__(self, source: AsyncIterator[tuple[tuple[str, str], list[dict[str, Any]]]]
                 ) -> None:
        self.source = source
        self.head: tuple[tuple[str, str], list[dict[str, Any]]] | None = None

    async def advance(self) -> None:
        self.head = await anext(self.source, None)

    def take(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        if self.head is not None and self.head[0] == key:
            rows = self.head[1]
            self.head = None
            return rows
        return []


def _event(row: dict[str, Any]) -> Event:
    raw = {"id": row["event_id"], "type": row["type"], "schema": row["schema"],
           "ns": row["ns"], "aggregate": "memory", "aggregate_id": row["memory_id"],
           "actor": row["actor"], "command_id": row["command_id"],
           "correlation_id": row["correlation_id"], "at": row["at"], "data": row["data"]}
    event: Event = msgspec.convert(raw, Event)
    return event


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _differ(table: str, key: tuple[str, str], seq: int, field: str, have: object,
            want: object) -> ReadModelIssue:
    ns, memory_id = key
    return ReadModelIssue(
        table=table, seq=seq, event_id=None, field=field,
        detail=f"memory {memory_id} in {ns}: {table}.{field} is {_short(have)}, the fold of its "
        f"events says {_short(want)}")


def _compare(key: tuple[str, str], expected: ExpectedMemory, rows: dict[str, list[dict[str, Any]]],
             issue: Issue) -> None:
    seq = int(expected.row.get("revision", 0))
    memory = rows["memories"]
    if not memory:
        issue(_differ("memories", key, seq, "memory_id", None, key[1]))
        return
    for column in _MEMORY_COLUMNS:
        if memory[0].get(column) != expected.row.get(column):
            issue(_differ("memories", key, seq, column, memory[0].get(column),
                          expected.row.get(column)))
    links = {(r["target_memory_id"], r["relation"]): {k: r[k] for k in ("actor", "seq",
                                                                          "created_at")}
             for r in rows["memory_links"]}
    if links != expected.links:
        issue(_differ("memory_links", key, seq, "links", sorted(links), sorted(expected.links)))
    branches = {r["branch"]: {k: v for k, v in r.items() if k not in ("ns", "memory_id",
                                                                     "branch")}
                for r in rows["memory_branches"]}
    for name in sorted(set(branches) | set(expected.branches)):
        if branches.get(name) != expected.branches.get(name):
            issue(_differ("memory_branches", key, seq, name, branches.get(name),
                          expected.branches.get(name)))
    compressions = {r["receipt_id"]: {k: v for k, v in r.items()
                                      if k not in ("ns", "memory_id", "receipt_id")}
                    for r in rows.get("memory_compressions", [])}
    for receipt_id in sorted(set(compressions) | set(expected.compressions)):
        if compressions.get(receipt_id) != expected.compressions.get(receipt_id):
            issue(_differ("memory_compressions", key, seq, receipt_id,
                          compressions.get(receipt_id), expected.compressions.get(receipt_id)))
    # A command's result is its first event in the namespace: the rows naming this memory
    # must be the first event of their command here (that no row is missing is counted once,
    # for the whole table, by check_result_count).
    for row in rows["results"]:
        have = {k: row[k] for k in _RESULT_FIELDS}
        first = expected.results.get(row["command_id"])
        want = None if first is None else {k: first[k] for k in _RESULT_FIELDS}
        if have != want:
            issue(_differ("command_results", key, seq, row["command_id"], have, want))


async def check_result_count(conn: Conn, issue: Issue) -> None:
    """Every command with a projected event has exactly one result row."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM command_results) AS rows,"
        " (SELECT count(*) FROM (SELECT DISTINCT ns, command_id FROM memory_events) c)"
        " AS commands")
    row = await cur.fetchone()
    if row is not None and row["rows"] != row["commands"]:
        issue(ReadModelIssue(table="command_results", seq=0, event_id=None, field="count",
                             detail=f"command_results holds {row['rows']} rows but the "
                             f"projected events come from {row['commands']} commands"))


async def check_folds(conn: Conn, since_seq: int, issue: Issue,
                      skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()
                      ) -> int:
    """Compare the memories touched since ``since_seq`` (all when 0) with the fold of their
    projected events; return how many were checked. Rows and events are read in the caller's
    snapshot, in which the projector committed both together. Memories in ``skip`` (whose event
    rows already differ from the stream) are passed over."""
    params = {"since": since_seq}
    sources = {
        "events": f"SELECT * FROM memory_events WHERE {_scope(since_seq)} ORDER BY {_KEY}, seq",
        "memories": f"SELECT * FROM memories WHERE {_scope(since_seq)} ORDER BY {_KEY}",
        "memory_links": f"SELECT * FROM memory_links WHERE {_scope(since_seq)} ORDER BY {_KEY}",
        "memory_branches": (f"SELECT * FROM memory_branches WHERE {_scope(since_seq)} "
                            f"ORDER BY {_KEY}"),
        "results": f"SELECT * FROM command_results WHERE {_scope(since_seq)} ORDER BY {_KEY}",
        "memory_compressions": (f"SELECT * FROM memory_compressions WHERE {_scope(since_seq)} "
                                f"ORDER BY {_KEY}"),
    }
    merges = {name: _Merge(_grouped(conn, f"audit_fold_{name}", query, params))
              for name, query in sources.items()}
    for merge in merges.values():
        await merge.advance()
    checked = 0
    while True:
        keys = [m.head[0] for m in merges.values() if m.head is not None]
        if not keys:
            return checked
        key = min(keys)
        rows = {name: merge.take(key) for name, merge in merges.items()}
        for merge in merges.values():
            if merge.head is None:
                await merge.advance()
        if key in skip:
            continue
        events = [(_event(r), int(r["seq"])) for r in rows.pop("events")]
        if not events:
            issue(ReadModelIssue(table="memories", seq=0, event_id=None, field="memory_id",
                                 detail=f"memory {key[1]} in {key[0]} has rows but no events"))
            continue
        _compare(key, fold_memory(events), rows, issue)
        checked += 1


# --- the reasoning layer's tables (migration 0009) ------------------------------------------

_REGISTRY_TABLES: Final = {
    "registry_models": ("models", ("key",)),
    "registry_providers": ("providers", ("provider",)),
    "registry_rankings": ("rankings", ("source", "category")),
    "registry_consultations": ("consultations", ("ns", "consultation_id")),
}


def _registry_event(row: dict[str, Any]) -> Event:
    raw = {"id": row["event_id"], "type": row["type"], "schema": row["schema"],
           "ns": row["ns"], "aggregate": row["aggregate"], "aggregate_id": row["aggregate_id"],
           "actor": row["actor"], "command_id": row["command_id"],
           "correlation_id": row["command_id"], "at": row["at"], "data": row["data"]}
    event: Event = msgspec.convert(raw, Event)
    return event


async def check_registry(conn: Conn, issue: Issue) -> int:
    """Compare the registry tables with the fold of the ``registry_events`` rows (see
    :mod:`.registry_expected`); return how many rows were checked (0 without the tables)."""
    cur = await conn.execute("SELECT to_regclass('registry_events') AS t")
    found = await cur.fetchone()
    if not found or found["t"] is None:
        return 0
    events: list[tuple[Event, int]] = []
    async with conn.cursor(name="audit_registry_events") as cursor:
        cursor.itersize = _PAGE
        await cursor.execute("SELECT * FROM registry_events ORDER BY seq")
        async for row in cursor:
            events.append((_registry_event(dict(row)), int(row["seq"])))
    expected, problems = fold_registry(events)
    for problem in problems:
        issue(ReadModelIssue(table="registry_events", seq=0, event_id=None, field="seq",
                             detail=problem))
    checked = 0
    for table, (attr, key_columns) in _REGISTRY_TABLES.items():
        want: dict[Any, dict[str, Any]] = getattr(expected, attr)
        cur = await conn.execute(f"SELECT * FROM {table}")
        have = {}
        for row in await cur.fetchall():
            key = row[key_columns[0]] if len(key_columns) == 1 else tuple(
                row[c] for c in key_columns)
            have[key] = dict(row)
        for key in sorted(set(have) | set(want), key=str):
            checked += 1
            got, wanted = have.get(key), want.get(key)
            if got is None or wanted is None:
                issue(ReadModelIssue(
                    table=table, seq=0, event_id=None, field="row",
                    detail=f"{table} row {key!r} is {'missing' if got is None else 'extra'}: "
                    "the fold of registry_events says "
                    f"{'it exists' if got is None else 'it does not'}"))
                continue
            for column in sorted(set(got) | set(wanted)):
                if got.get(column) != wanted.get(column):
                    seq = int(wanted.get("updated_seq") or wanted.get("seq")
                              or wanted.get("last_seq") or 0)
                    issue(ReadModelIssue(
                        table=table, seq=seq, event_id=None, field=column,
                        detail=f"{table} row {key!r}: {column} is {_short(got.get(column))}, "
                        f"the fold of its events says {_short(wanted.get(column))}"))
    return checked
