"""Applying many inserts of one shape at once with ``COPY`` (bulk rebuilds).

A run of events of one type on distinct memories inserts one row per event into each of a few
tables (:mod:`services.projector.runs`). Sent as binary ``COPY``, the rows cost the server one
command and a binary row each (a vector is read as its 4-byte floats; as text, parsing its 384
decimals cost 86 µs a row, more than everything else about it), instead of a parsed, bound and
executed statement each.

The outcome is the statements' own:

- an insert without an ``ON CONFLICT`` clause, or one that must add its row (``expect_rows``):
  ``COPY`` into the table; a row that would conflict fails the whole ``COPY`` with an integrity
  error, which sends the batch to the careful, statement-by-statement path that finds the event;
- an insert whose conflicts are expected and ignored (``ON CONFLICT ... DO NOTHING``, e.g. a
  command's later events keep its first result): ``COPY`` into a temporary staging table, then
  one ``INSERT ... SELECT`` with the same clause, in stream order, so the first row wins as it
  would one statement at a time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Json, Jsonb

from libs.readmodel.statement import Row, Statement

__all__ = ["copy_inserts"]


async def copy_inserts(conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement]
                       ) -> int:
    """Insert the rows of ``statements`` (made by ``insert_row``, all of one :class:`Row`
    shape) inside the caller's transaction; the number of rows inserted."""
    row = statements[0].row
    assert row is not None and all(s.row == row for s in statements)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in row.columns)
    staged = bool(row.conflict) and statements[0].expect_rows is None
    target = sql.Identifier(_stage_name(row) if staged else row.table)
    if staged:
        await conn.execute(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
        ).format(target, sql.Identifier(row.table)))
    async with conn.cursor(row_factory=tuple_row) as cur:
        types = await _column_types(cur, row)
        wrap = [_JSON_WRAPPERS.get(oid) for oid in types]
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, columns)
        async with cur.copy(copy_sql) as copy:
            copy.set_types(types)
            values = _values_of(row.columns)
            wrapped = [(i, w) for i, w in enumerate(wrap) if w is not None]
            for statement in statements:
                fields = values(statement.params)
                if wrapped:
                    fields = list(fields)
                    for i, w in wrapped:
                        if fields[i] is not None:
                            fields[i] = w(fields[i])
                await copy.write_row(fields)
        if not staged:
            return len(statements)
        order = sql.SQL(" ORDER BY seq") if "seq" in row.columns else sql.SQL("")
        await cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{} {}").format(
            sql.Identifier(row.table), columns, columns, target, order, sql.SQL(row.conflict)))
        inserted = cur.rowcount
        await cur.execute(sql.SQL("TRUNCATE {}").format(target))
    return inserted


def _values_of(columns: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """The row's values from a statement's parameters, in column order (one C call)."""
    if len(columns) == 1:
        return lambda params: (params[columns[0]],)
    return operator.itemgetter(*columns)


def _as_is(text: Any) -> str:
    return str(text)


# JSON parameters are already canonical JSON text (storable_json): sent as they are.
_JSON_WRAPPERS: Final[dict[int, Callable[[Any], Any]]] = {
    114: lambda text: Json(text, dumps=_as_is),
    3802: lambda text: Jsonb(text, dumps=_as_is),
}


async def _column_types(cur: psycopg.AsyncCursor[Any], row: Row) -> list[int]:
    """The type oid of each of ``row``'s columns (its table found through the search path)."""
    await cur.execute(
        "SELECT a.attname, a.atttypid FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (row.table,), prepare=False)
    oids = {str(name): int(oid) for name, oid in await cur.fetchall()}
    return [oids[c] for c in row.columns]


def _stage_name(row: Row) -> str:
    return f"mnemos_stage_{row.table}"
