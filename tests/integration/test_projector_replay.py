"""``mnemos replay``: rebuild from the stream, verify against live, swap while live runs."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

import msgspec
import pytest

from libs.consumer.metrics import TRANSIENT_ERRORS
from libs.events import EventBase, InvalidInput, version_id
from libs.readmodel.bulk_load import LEXICAL_TRIGGER
from libs.readmodel.copy_rows import copy_inserts
from libs.readmodel.digest import read_model_digest, row_counts
from libs.runtime.config import Config
from services.projector import batch
from services.projector.as_of import AsOf, parse_as_of
from services.projector.replay import COPY_MIN_RUN, drop_old_schemas, replay
from tests.support.events import (
    CountingEmbedder,
    History,
    checkpoint,
    publish,
    publish_all,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration


def _events(h: History, n: int) -> list[EventBase]:
    created = [h.created(f"replayed fact {i}", tags=("a",)) for i in range(n)]
    more = [h.revised(e.aggregate_id, f"replayed fact {i}, revised")
            for i, e in enumerate(created)]
    return [*created, *more, h.linked(created[0].aggregate_id, created[1].aggregate_id),
            h.tagged(created[1].aggregate_id, added=("b",))]


async def test_replay_verifies_and_swaps_while_the_projector_runs(config: Config, nats_js) -> None:
    url = config.database_url or ""
    h = History()
    async with running_projector(config):
        last = await publish_all(nats_js, _events(h, 20))
        await nats_js.publish("mnemos.evt.team-a.memory.bad", b"not an event")  # a dead letter
        last += 1
        await wait_checkpoint(url, last)
        async with read_models(url) as conn:
            live_before = await read_model_digest(conn)

        embedder = CountingEmbedder()
        report = await replay(config, swap=True, embedder=embedder, progress=False)
        assert embedder.texts == []  # every vector came from the copied cache
        assert report.verified is True and report.swapped, report.summary()
        assert report.rebuilt_to_seq == report.live_checkpoint == last
        assert report.rebuild_digest == report.live_digest == live_before
        assert report.rebuild_counts["dead_letters"] == 1
        assert report.old_schema and report.old_schema.startswith("mnemos_old_")

        # The running projector notices the swap and carries on in the new live schema.
        never_published = h.created("never published")
        after = await publish_all(nats_js, [h.created("after the swap"),
                                            h.tagged(never_published.aggregate_id, ("x",))])
        await wait_checkpoint(url, after, timeout_s=20)
    async with read_models(url) as conn:
        counts = await row_counts(conn)
        assert counts["memory_events"] == 43  # 42 before the swap, 1 after
        assert counts["dead_letters"] == 2  # the bad bytes, the tag of a missing memory
    assert await checkpoint(url, report.old_schema) == last  # the old schema stopped moving
    async with read_models(url, report.old_schema) as conn:
        assert (await row_counts(conn))["memories"] == 20


class SlowEmbedder(CountingEmbedder):
    """Keeps the live projector busy (embedding) long enough for a replay to overtake it."""

    def embed(self, texts):
        time.sleep(3.0)
        return super().embed(texts)


async def test_a_swap_overtaking_a_lagging_projector_resumes_from_the_rebuild(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    reconnects = TRANSIENT_ERRORS.labels("projector", "mnemos")._value.get()
    async with running_projector(config, embedder=SlowEmbedder()):
        await wait_checkpoint(url, await publish(nats_js, h.created("warm-up")), timeout_s=10)
        last = await publish_all(nats_js, _events(h, 5))
        await asyncio.sleep(0.3)  # the live projector is now embedding that batch
        report = await replay(config, swap=True, progress=False, stall_timeout_s=0.3)
        assert report.swapped and report.verified is None, report.summary()
        assert report.rebuilt_to_seq == last
        assert report.live_checkpoint is not None and report.live_checkpoint < last
        # Its batch in flight must not be applied on top of the rebuild (it would collide):
        # the fence sends it back to re-read the checkpoint of the swapped-in schema.
        after = await publish(nats_js, h.created("after the swap"))
        await wait_checkpoint(url, after, timeout_s=20)
    # SchemaSwapped is one reconnect
    assert TRANSIENT_ERRORS.labels("projector", "mnemos")._value.get() == reconnects + 1
    async with read_models(url) as conn:
        counts = await row_counts(conn)
        assert counts["dead_letters"] == 0
        assert counts["memory_events"] == after


async def test_a_replay_that_differs_is_not_swapped_unless_forced(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    async with running_projector(config):
        await wait_checkpoint(url, await publish_all(nats_js, _events(h, 3)))
    async with read_models(url) as conn:
        await conn.execute("UPDATE memories SET tags = '{tampered}'")  # a broken read model

    report = await replay(config, swap=True, progress=False, stall_timeout_s=0.5)
    assert report.verified is False and not report.swapped
    assert "not swapped" in report.note
    async with read_models(url) as conn:
        assert {r["tags"][0] for r in await rows(conn, "SELECT tags FROM memories")} == {
            "tampered"}

    forced = await replay(config, swap=True, force=True, progress=False, stall_timeout_s=0.5)
    assert forced.swapped and forced.verified is False
    async with read_models(url) as conn:
        tags = {r["tags"][0] for r in await rows(conn, "SELECT tags FROM memories")}
        assert "tampered" not in tags


async def test_replay_into_an_empty_database_builds_the_live_schema(
    config: Config, nats_js
) -> None:
    h = History()
    await publish_all(nats_js, _events(h, 2))
    last = await publish(nats_js, h.created("last"))
    report = await replay(config, swap=True, progress=False, stall_timeout_s=0.5)
    assert report.swapped and report.verified is None and report.old_schema is None
    assert await checkpoint(config.database_url or "") == last


def test_the_replay_command_reports(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from libs.runtime.logging import configure_logging
    from services.projector.cli import replay_command

    for name in ("nats_url", "database_url", "home"):
        monkeypatch.setenv(f"MNEMOS_{name.upper()}", str(getattr(config, name)))
    app = typer.Typer()
    app.command("replay")(replay_command)
    app.command("noop")(lambda: None)  # two commands, so "replay" is addressed by name
    try:
        result = CliRunner().invoke(app, ["replay", "--swap", "--no-progress"])
    finally:
        # The command configures logging onto the runner's captured stderr, closed after it.
        configure_logging("console", os.environ.get("MNEMOS_TEST_LOG_LEVEL", "warning"))
    assert result.exit_code == 0, result.output
    assert "rebuilt mnemos_rebuild to seq 0" in result.output
    assert "swapped: mnemos_rebuild is now mnemos" in result.output


async def test_cleanup_drops_only_the_schemas_swaps_left_behind(config: Config, nats_js) -> None:
    """Issue 17: ``mnemos replay --cleanup [--keep N]`` removes ``<schema>_old_<time>`` schemas,
    oldest first, and nothing else (the live schema, look-alikes, other deployments' schemas)."""
    import psycopg

    from services.projector.replay import drop_old_schemas

    url, live = config.database_url or "", config.db_schema
    names = [f"{live}_old_20260101000000", f"{live}_old_20260102000000",
             f"{live}_old_20260103000000", f"{live}_old_notatime", f"{live}_older_20260101000000",
             f"x{live}_old_20260101000000"]
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        assert await drop_old_schemas(config, keep=1) == names[:2]
        assert await drop_old_schemas(config, keep=1) == []
        assert await drop_old_schemas(config) == names[2:3]
        with psycopg.connect(url) as conn:
            left = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}
        assert set(names[3:]) <= left and not set(names[:3]) & left
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}"')


async def test_the_bulk_rebuild_equals_event_by_event_projection_at_its_edges(
    config: Config, nats_js, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs long enough for ``COPY`` (services.projector.replay.COPY_MIN_RUN) meet what the
    statements decide one by one: a command id shared by many events (its first result is
    kept: staged insert), a creation of a memory that already exists in the middle of a run
    (the COPY fails, the careful path dead-letters that one event), then a run of updates."""
    url = config.database_url or ""
    h = History()
    first = [h.created(f"bulk fact {i}", tags=("t", f"n{i}")) for i in range(30)]
    shared = first[10].command_id
    first[10:] = [msgspec.structs.replace(e, command_id=shared) for e in first[10:]]
    second = [h.created(f"second run {i}") for i in range(20)]
    clash = msgspec.structs.replace(
        h.created("bulk fact 3, again"), aggregate_id=first[3].aggregate_id)
    clash = msgspec.structs.replace(clash, data=msgspec.structs.replace(
        clash.data, memory_id=first[3].aggregate_id,
        version_id=version_id(first[3].aggregate_id, clash.data.content_hash, {}, [])))
    second.insert(9, clash)
    tags = [h.tagged(e.aggregate_id, added=("later",)) for e in first]
    async with running_projector(config):
        last = await publish_all(nats_js, [*first, *second, *tags])
        await wait_checkpoint(url, last)
    assert COPY_MIN_RUN <= 20
    copied: list[str] = []

    async def counting(conn, statements):
        copied.extend(s.row.table for s in statements)
        return await copy_inserts(conn, statements)

    monkeypatch.setattr(batch, "copy_inserts", counting)
    report = await replay(config, swap=False, embedder=CountingEmbedder(), progress=False,
                          stall_timeout_s=0.5)
    assert report.verified is True, report.summary()
    assert report.rebuild_counts["dead_letters"] == 1  # the clash
    assert report.rebuild_counts["memories"] == 50
    assert copied.count("memories") >= 30 and copied.count("command_results") >= 30
    async with read_models(url, report.rebuild_schema) as conn:
        result = await rows(conn, "SELECT event_id FROM command_results WHERE command_id = %s",
                            (shared,))
        assert [r["event_id"] for r in result] == [first[10].id]  # the first event's
        assert (await row_counts(conn))["lexical_docs"] == 50
        built = {}
        for schema in (config.db_schema, report.rebuild_schema):
            found = await rows(conn, "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                               (schema,))
            built[schema] = {r["indexname"] for r in found}
        assert "memories_embedding" in built[report.rebuild_schema]
        assert built[report.rebuild_schema] == built[config.db_schema], (
            "every deferred index is built again, on parallel connections")
        trigger = await rows(conn, "SELECT t.tgenabled FROM pg_trigger t JOIN pg_class c"
                             " ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                             " WHERE n.nspname = %s AND t.tgname = %s",
                             (report.rebuild_schema, LEXICAL_TRIGGER))
        assert [r["tgenabled"] for r in trigger] == ["O"], "the lexical trigger is on again"
        options = await rows(conn, "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                             " ON n.oid = c.relnamespace WHERE n.nspname = %s"
                             " AND c.reloptions::text LIKE '%%autovacuum%%'",
                             (report.rebuild_schema,))
        assert options == [], "autovacuum is on again for every table"
        left = await rows(conn, "SELECT to_regclass(%s) AS t",
                          (f"{report.rebuild_schema}.bulk_load_deferred",))
        assert left == [{"t": None}], "the record of what was deferred is gone"


async def test_state_as_of_a_sequence_or_time_and_a_dry_run(config: Config, nats_js) -> None:
    url = config.database_url or ""
    h = History()
    async with running_projector(config):
        early = await publish_all(nats_js, [h.created(f"early {i}") for i in range(3)])
        await asyncio.sleep(1.1)  # stored times one second apart at least
        between = datetime.now(UTC)
        await asyncio.sleep(1.1)
        last = await publish_all(nats_js, [h.created(f"late {i}") for i in range(4)])
        await wait_checkpoint(url, last)
    async with read_models(url) as conn:
        live_before = await read_model_digest(conn)

    by_seq = await replay(config, swap=False, progress=False, as_of=AsOf(seq=2))
    assert by_seq.rebuild_schema == "mnemos_asof_2" and by_seq.rebuilt_to_seq == 2
    assert by_seq.rebuild_counts["memories"] == 2 and by_seq.verified is None
    by_time = await replay(config, swap=False, progress=False, as_of=AsOf(at=between))
    assert by_time.rebuilt_to_seq == early and by_time.rebuild_counts["memories"] == 3

    dry = await replay(config, swap=False, dry_run=True, progress=False, stall_timeout_s=0.5)
    assert dry.verified is True and not dry.swapped and "dry run" in dry.note
    async with read_models(url) as conn:
        assert await read_model_digest(conn) == live_before  # live untouched
        schemas = {r["nspname"] for r in await rows(
            conn, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mnemos%%'")}
    assert "mnemos_rebuild" not in schemas and {"mnemos_asof_2", f"mnemos_asof_{early}"} <= schemas
    assert set(await drop_old_schemas(config)) == {"mnemos_asof_2", f"mnemos_asof_{early}"}

    with pytest.raises(InvalidInput):
        await replay(config, swap=True, progress=False, as_of=AsOf(seq=1))
    with pytest.raises(InvalidInput, match="beyond"):
        await replay(config, swap=False, progress=False, as_of=AsOf(seq=last + 1))
    with pytest.raises(InvalidInput, match="no event"):
        await replay(config, swap=False, progress=False,
                     as_of=AsOf(at=datetime(2000, 1, 1, tzinfo=UTC)))


@pytest.mark.parametrize(("until_seq", "as_of", "message"), [
    (0, None, "1 or more"), (3, "2026-01-01T00:00:00Z", "not both"),
    (None, "yesterday", "ISO 8601"), (None, "2026-01-01T00:00:00", "UTC offset"),
    (None, "2026-01-01T00:00:00\x00Z", "ISO 8601"),
])
def test_as_of_arguments_are_checked(until_seq: int | None, as_of: str | None,
                                     message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_as_of(until_seq, as_of)
