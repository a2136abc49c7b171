"""One SQL statement of a projection (shared by the memory and the registry projections)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, LiteralString

__all__ = ["Casts", "Row", "Statement", "insert_row"]


@dataclass(frozen=True, slots=True)
class Row:
    """The one row an ``INSERT`` statement adds, so that many of them can be loaded with
    ``COPY`` (a bulk rebuild) instead of one statement each, with the same outcome.

    ``conflict`` is the statement's ``ON CONFLICT`` clause ("" for none): rows with one are
    staged and inserted by one ``INSERT ... SELECT`` with that clause, in stream order.
    """

    table: LiteralString
    columns: tuple[LiteralString, ...]
    conflict: LiteralString


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a projection.

    When ``expect_rows`` is set, a different row count means the event contradicts the read
    model and ``error`` (formatted with the parameters) is raised as
    :class:`~libs.readmodel.projections.InvariantViolation`. ``row`` is set on statements made
    by :func:`insert_row` (their parameters are the row's columns).
    """

    query: LiteralString
    params: Mapping[str, Any] = field(default_factory=dict)
    expect_rows: int | None = None
    error: str = ""
    row: Row | None = None


Casts = frozenset[tuple[str, LiteralString]]
"""(column, type) pairs: the type a column's text parameter is cast to (JSON text)."""


def insert_row(table: LiteralString, values: Mapping[LiteralString, Any], *,
               casts: Casts = frozenset(), conflict: LiteralString = "",
               expect_rows: int | None = None, error: str = "") -> Statement:
    """``INSERT INTO table (columns) VALUES (...)`` of one row given column by column.

    ``casts`` names a type for a column whose parameter is text of another type (JSON);
    ``conflict`` is an ``ON CONFLICT ...`` clause. Parameters are named after their columns.
    """
    shape = _shape(table, tuple(values), casts, conflict)
    return Statement(shape[0], values, expect_rows=expect_rows, error=error, row=shape[1])


@functools.lru_cache(maxsize=256)
def _shape(table: LiteralString, columns: tuple[LiteralString, ...], casts: Casts,
           conflict: LiteralString) -> tuple[LiteralString, Row]:
    cast_of = dict(casts)
    placeholders = ", ".join(f"%({c})s{'::' + cast_of[c] if c in cast_of else ''}"
                             for c in columns)
    query = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    if conflict:
        query += " " + conflict
    return query, Row(table, columns, conflict)
