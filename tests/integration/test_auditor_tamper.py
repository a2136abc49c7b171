"""Real tampering, each detected and named: Postgres rows, read models, the stream's files.

Tampering with the chain table bypasses its append-only triggers the way a database superuser
could (``session_replication_role = replica``): the point is what verification sees afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec

from libs.events import EVENTS_STREAM, BreakKind, MemoryCreated
from libs.readmodel.projections import project
from libs.runtime.config import Config
from libs.runtime.migrations import apply_migrations
from libs.runtime.nats_server import NatsServer
from services.auditor.files import checkpoint_dir
from services.auditor.verify import verify
from tests.support.auditor import (
    audit_cli,
    db,
    publish_events,
    running_auditor,
    wait_for_head,
)

PROJECTOR_MIGRATIONS = Path(__file__).parents[2] / "libs" / "readmodel" / "migrations"


async def _chained(config: Config, js: Any, count: int) -> list[tuple[int, MemoryCreated]]:
    """Publish ``count`` events and let the auditor link everything, then stop it."""
    published = await publish_events(js, count)
    async with running_auditor(config):
        last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
        await wait_for_head(config, last)
    return published


def _tamper(config: Config, statement: str, params: tuple[Any, ...] = ()) -> None:
    with db(config) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement, params)


def _link(config: Config, seq: int) -> bytes:
    with db(config) as conn:
        row = conn.execute("SELECT link FROM audit_chain WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    return bytes(row[0])


async def test_an_edited_stored_link_is_named(config: Config, nats_js) -> None:
    await _chained(config, nats_js, 40)
    assert (await verify(config, full=True)).ok
    original = _link(config, 17)
    _tamper(config, "UPDATE audit_chain SET link = %s WHERE seq = 17", (bytes(32),))
    report = await verify(config, full=True)
    assert not report.ok and report.first_break is not None
    assert report.first_break.kind is BreakKind.STORED_LINK_EDITED
    assert report.first_break.seq == 17 and report.first_break.expected == original.hex()
    cli = audit_cli(config, "verify", "--full")
    assert cli.returncode == 1 and "BROKEN at seq 17: stored_link_edited" in cli.stderr


async def test_an_edit_at_the_last_verified_point_fails_incremental_runs(config: Config,
                                                                         nats_js) -> None:
    await _chained(config, nats_js, 20)
    first = await verify(config, full=True)
    assert first.ok
    _tamper(config, "UPDATE audit_chain SET link = %s WHERE seq = %s", (bytes(32), first.to_seq))
    report = await verify(config)
    assert report.first_break is not None
    assert report.first_break.kind is BreakKind.ANCHOR_CHANGED
    assert report.first_break.seq == first.to_seq


async def test_deleting_the_newest_rows_is_named_and_survives_a_cover_up(
        config: Config, nats_js, tmp_path: Path) -> None:
    config = config.model_copy(update={"audit_checkpoint_events": 30})
    for _ in range(3):  # separate batches, so there are several checkpoints
        await _chained(config, nats_js, 35)
    shipped = tmp_path / "shipped-checkpoint.json"
    shutil.copy(checkpoint_dir(config) / "latest.json", shipped)
    _tamper(config, "DELETE FROM audit_chain WHERE seq > 70")
    report = await verify(config, full=True)
    assert report.first_break is not None
    assert report.first_break.kind is BreakKind.CHAIN_TRUNCATED
    assert report.first_break.seq == 71
    assert "recorded head" in report.first_break.detail
    # Cover-up: also remove the newer checkpoints and rewind the recorded head.
    _tamper(config, "DELETE FROM audit_checkpoints WHERE seq > 70")
    _tamper(config, "UPDATE audit_head SET seq = 70, link = (SELECT link FROM audit_chain "
                    "WHERE seq = 70)")
    report = await verify(config, full=True)
    assert report.first_break is not None
    assert report.first_break.kind is BreakKind.CHAIN_TRUNCATED
    assert "announced in the stream" in report.first_break.detail
    cli = audit_cli(config, "verify", "--checkpoint", str(shipped))
    assert cli.returncode == 1 and "chain_truncated" in cli.stderr
    # The auditor notices at its next start, keeps an incident, and re-links from the stream.
    async with running_auditor(config):
        last = int((await nats_js.stream_info(EVENTS_STREAM)).state.last_seq)
        await wait_for_head(config, last)
    with db(config) as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM audit_incidents").fetchall()]
    assert "chain_rows_missing" in kinds
    assert (await verify(config, full=True)).ok


def _project(config: Config, published: list[tuple[int, MemoryCreated]]) -> None:
    """Write the read-model rows of ``published`` with the projector's own statements."""
    with db(config) as conn:
        apply_migrations(conn, "projector", PROJECTOR_MIGRATIONS, config.db_schema,
                         {"embedding_dim": 384})
        conn.execute(f"SET search_path = {config.db_schema}, public")
        for seq, event in published:
            for statement in project(event, seq, None):
                conn.execute(statement.query, dict(statement.params))


async def test_a_rewritten_payload_in_the_read_model_is_named(config: Config, nats_js) -> None:
    published = await _chained(config, nats_js, 12)
    _project(config, published)
    clean = await verify(config, full=True)
    assert clean.ok and clean.read_model_checked == 24
    seq, event = published[4]
    with db(config) as conn:
        # data is json (exact text): edit it through jsonb, as a tamperer with SQL access would.
        conn.execute("UPDATE memory_events SET data = jsonb_set(data::jsonb, '{content}', "
                     "'\"the user prefers light mode\"')::json WHERE seq = %s", (seq,))
    report = await verify(config, full=True)
    assert not report.ok and report.first_break is None
    issue = report.read_model_issues[0]
    assert (issue.table, issue.seq, issue.event_id, issue.field) == (
        "memory_events", seq, event.id, "data")
    assert "light mode" in issue.detail
    with db(config) as conn:
        conn.execute("UPDATE memory_versions SET content = 'forged' WHERE seq = %s",
                     (published[7][0],))
    report = await verify(config, full=True)
    assert [(i.table, i.seq, i.field) for i in report.read_model_issues] == [
        ("memory_events", seq, "data"), ("memory_versions", published[7][0], "content")]


async def test_altered_stream_files_are_named(config: Config, nats_js,
                                              nats_server: NatsServer) -> None:
    published = await _chained(config, nats_js, 30)
    assert (await verify(config, full=True)).ok
    target_seq, target = published[11]
    nats_server.stop()
    blocks = [p for p in (nats_server.store_dir / "jetstream").rglob("*.blk")
              if EVENTS_STREAM in str(p)]
    needle = msgspec.json.encode(target.data.content)[1:-1]
    flipped = 0
    for block in blocks:
        data = bytearray(block.read_bytes())
        at = data.find(needle)
        if at >= 0:
            data[at + 7] ^= 0x20  # one bit of the event's content, on disk
            block.write_bytes(bytes(data))
            flipped += 1
    assert flipped == 1
    nats_server.start()
    report = await verify(config, full=True)
    assert report.first_break is not None and report.first_break.seq == target_seq
    assert report.first_break.kind in (BreakKind.STREAM_MESSAGE_MISSING,
                                       BreakKind.EVENT_BYTES_CHANGED)
    assert report.first_break.event_id == target.id


async def test_every_served_table_is_compared_with_the_fold_of_the_events(
        config: Config, nats_js) -> None:
    """Issue 10, defect 9: rewriting what the gateway serves is named, memory and field."""
    published = await _chained(config, nats_js, 6)
    _project(config, published)
    assert (await verify(config, full=True)).ok
    (_, first), (_, second), (_, third) = published[0], published[1], published[2]
    with db(config) as conn:
        conn.execute("UPDATE memories SET content = 'TAMPERED' WHERE memory_id = %s",
                     (first.aggregate_id,))
        conn.execute("UPDATE memories SET tags = '{forged}' WHERE memory_id = %s",
                     (second.aggregate_id,))
        conn.execute("UPDATE memory_branches SET updated_seq = 999 WHERE memory_id = %s",
                     (third.aggregate_id,))
        conn.execute("DELETE FROM command_results WHERE ctid IN"
                     " (SELECT ctid FROM command_results LIMIT 1)")
    report = await verify(config, full=True)
    assert not report.ok and report.first_break is None and report.memories_checked == 6
    named = {(i.table, i.field) for i in report.read_model_issues}
    assert {("memories", "content"), ("memories", "tags"), ("memory_branches", "main"),
            ("command_results", "count")} <= named
    details = " ".join(i.detail for i in report.read_model_issues)
    assert first.aggregate_id in details and "TAMPERED" in details
