"""Versioned SQL migrations, applied by a service at start.

A component (``projector``, ``auditor`` …) keeps its migrations as ``NNNN_name.sql`` files.
Each file runs once, in its own transaction, recorded in ``schema_migrations`` of the target
schema. A transaction-level advisory lock serialises concurrent starters. ``{{name}}``
placeholders are filled from integer ``params`` (e.g. the embedding dimension).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql

from libs.runtime.logging import get_logger

__all__ = ["apply_migrations"]

log = get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D6E656D6F73  # "mnemos"


def _migration_files(directory: Path) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(directory.iterdir()):
        match = _FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), match.group(2), path))
    return found


def _render(text: str, params: Mapping[str, int]) -> str:
    def fill(match: re.Match[str]) -> str:
        return str(int(params[match.group(1)]))

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def apply_migrations(
    conn: psycopg.Connection[object], component: str, directory: Path, schema: str,
    params: Mapping[str, int] | None = None,
) -> list[int]:
    """Apply pending migrations of ``component`` into ``schema``; return the versions applied."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component text NOT NULL, version int NOT NULL, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        done = {
            int(row[0]) for row in conn.execute(  # type: ignore[index]
                "SELECT version FROM schema_migrations WHERE component = %s", (component,)
            )
        }
        for version, name, path in _migration_files(directory):
            if version in done:
                continue
            conn.execute(_render(path.read_text(), params or {}).encode())
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES (%s, %s, %s)",
                (component, version, name),
            )
            applied_now.append(version)
            log.info("migration_applied", component=component, version=version, name=name,
                     schema=schema)
    return applied_now
