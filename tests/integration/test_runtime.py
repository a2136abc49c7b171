"""The runtime plumbing against real servers: streams, migrations."""

from __future__ import annotations

from pathlib import Path

import psycopg

from libs.events import EVENTS_STREAM
from libs.runtime.migrations import apply_migrations

MIGRATIONS = Path(__file__).parents[2] / "services" / "projector" / "migrations"


async def test_streams_are_declared_with_the_contract_settings(nats_js) -> None:
    info = await nats_js.stream_info(EVENTS_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    assert info.config.duplicate_window >= 120
    assert info.config.max_age in (0, None)


def test_migrations_apply_once(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        first = apply_migrations(conn, "projector", MIGRATIONS, "mnemos", {"embedding_dim": 384})
        second = apply_migrations(conn, "projector", MIGRATIONS, "mnemos", {"embedding_dim": 384})
        assert first and not second
        count = conn.execute("SELECT count(*) FROM mnemos.memories").fetchone()
        assert count == (0,)
