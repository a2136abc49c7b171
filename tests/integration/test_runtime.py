"""The runtime plumbing against real servers: streams, migrations."""

from __future__ import annotations

from pathlib import Path

import psycopg

from libs.events import EVENTS_STREAM
from libs.runtime.migrations import apply_migrations

MIGRATIONS = Path(__file__).parents[2] / "libs" / "readmodel" / "migrations"


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


def _axis(i: int) -> str:
    """The unit vector along dimension ``i``, as pgvector text."""
    return "[" + ",".join("1" if d == i else "0" for d in range(384)) + "]"


def test_the_hnsw_graph_is_rebuilt_in_place_for_existing_memories(
        database_url: str, tmp_path: Path) -> None:
    """Migration 0005 upgrades a schema that already holds memories: same rows, new graph."""
    before = tmp_path / "before_0005"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("000[1-4]_*.sql")):
        (before / path.name).write_text(path.read_text())
    schema = "upgrade_hnsw"
    with psycopg.connect(database_url) as conn:
        apply_migrations(conn, "projector", before, schema, {"embedding_dim": 384})
        with conn.transaction():
            conn.execute(f"SET LOCAL search_path = {schema}, public")
            for i in range(3):
                conn.execute(
                    "INSERT INTO memories (ns, memory_id, kind, content, content_hash,"
                    " head_version_id, version_count, created_by, updated_by,"
                    " created_command_id, created_at, updated_at, revision, embedding,"
                    " embedding_model) VALUES ('ns', %s, 'note', %s, %s, %s, 1, '{}', '{}', %s,"
                    " now(), now(), 1, %s::vector, 'test')",
                    (f"m{i}", f"memory {i}", f"h{i}", f"v{i}", f"c{i}", _axis(i)))
        upgrade = tmp_path / "upgrade"  # the migrations up to 0005 (later ones are not its topic)
        upgrade.mkdir()
        for path in sorted(MIGRATIONS.glob("000[1-5]_*.sql")):
            (upgrade / path.name).write_text(path.read_text())
        assert apply_migrations(conn, "projector", upgrade, schema,
                                {"embedding_dim": 384}) == [5]
        options = conn.execute(
            f"SELECT reloptions FROM pg_class WHERE oid = '{schema}.memories_embedding'::regclass"
        ).fetchone()
        assert options is not None and sorted(options[0]) == ["ef_construction=96", "m=8"]
        with conn.transaction():
            conn.execute(f"SET LOCAL search_path = {schema}, public")
            conn.execute("SET LOCAL enable_seqscan = off")
            nearest = conn.execute(
                "SELECT memory_id FROM memories ORDER BY embedding <=> %s::vector LIMIT 1",
                (_axis(2),)).fetchone()
        assert nearest == ("m2",)
