"""The auditor against real NATS and Postgres: extension, single writer, checkpoints, verify."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import stat
from pathlib import Path

import psycopg
import pytest

from libs.events import EVENTS_STREAM, AuditCheckpointSigned, decode_event
from libs.runtime.config import Config
from libs.runtime.nats_server import NatsServer
from services.auditor.chain import GENESIS_LINK, next_link
from services.auditor.checkpoint import Checkpoint, verify_checkpoint
from services.auditor.files import checkpoint_dir, read_public_key, signing_key_path
from services.auditor.main import run
from services.auditor.streamio import CHECKPOINT_SUBJECT
from services.auditor.verify import verify
from tests.support.auditor import (
    chain_head,
    db,
    publish_events,
    running_auditor,
    wait_for_head,
)
from tests.support.services import running_gateway


async def _stream_last(js) -> int:
    return int((await js.stream_info(EVENTS_STREAM)).state.last_seq)


async def test_chain_covers_every_message_including_undecodable_ones(config: Config,
                                                                     nats_js) -> None:
    published = await publish_events(nats_js, 120)
    garbage = await nats_js.publish("mnemos.evt.tests.memory.broken", b"\xff not an event")
    await publish_events(nats_js, 30)
    async with running_auditor(config):
        await wait_for_head(config, await _stream_last(nats_js))
    with db(config) as conn:
        rows = conn.execute("SELECT seq, event_id, event_hash, prev_link, link FROM audit_chain "
                            "ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(len(rows)))  # genesis + contiguous
    assert rows[0][4] == GENESIS_LINK
    for before, row in itertools.pairwise(rows):
        assert row[3] == before[4] and row[4] == next_link(before[4], row[0], row[2])
    assert rows[garbage.seq][1] is None
    assert rows[published[0][0]][1] == published[0][1].id
    report = await verify(config, full=True)
    assert report.ok, report
    assert report.verified == len(rows) - 1 and report.pending == 0


async def test_one_writer_extends_the_others_stand_by_and_take_over(config: Config,
                                                                    nats_js) -> None:
    await publish_events(nats_js, 50)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(run(config, stop_a))
    await wait_for_head(config, 50)
    b = asyncio.create_task(run(config, stop_b))
    await publish_events(nats_js, 50)
    await wait_for_head(config, await _stream_last(nats_js))
    with db(config) as conn:
        holders = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "objsubid = 1 AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())").fetchone()
    assert holders == (1,)
    assert not b.done()
    stop_a.set()
    await asyncio.wait_for(a, 30)
    await publish_events(nats_js, 50)
    await wait_for_head(config, await _stream_last(nats_js))  # b took over
    stop_b.set()
    await asyncio.wait_for(b, 30)
    report = await verify(config, full=True)
    assert report.ok and report.verified == await _stream_last(nats_js)


async def test_the_table_refuses_forks_and_rewrites(config: Config, nats_js) -> None:
    await publish_events(nats_js, 10)
    async with running_auditor(config):
        await wait_for_head(config, 10)
    with db(config) as conn:
        head = conn.execute("SELECT seq, link FROM audit_chain ORDER BY seq DESC LIMIT 1"
                            ).fetchone()
        assert head is not None
        insert = ("INSERT INTO audit_chain (seq, event_id, event_hash, prev_link, link) "
                  "VALUES (%s, NULL, %s, %s, %s)")
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            conn.execute(insert, (head[0] + 1, bytes(32), bytes(32), bytes(32)))  # wrong prev
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (head[0], bytes(32), bytes(32), bytes(32)))  # same seq
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            conn.execute(insert, (head[0] + 2, bytes(32), head[1], bytes(32)))  # gap
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_chain SET link = %s WHERE seq = 3", (bytes(32),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_chain WHERE seq = %s", (head[0],))
        conn.execute(insert, (head[0] + 1, bytes(32), head[1], bytes(32)))  # continues: allowed


async def test_checkpoints_every_n_events_are_signed_filed_and_announced(
        config: Config, nats_js) -> None:
    config = config.model_copy(update={"audit_checkpoint_events": 40})
    async with running_auditor(config):
        for _ in range(3):
            await publish_events(nats_js, 45)
            await wait_for_head(config, await _stream_last(nats_js))
        await asyncio.sleep(0.5)
    with db(config) as conn:
        rows = conn.execute("SELECT seq, link, published_seq FROM audit_checkpoints ORDER BY seq"
                            ).fetchall()
    assert len(rows) >= 3
    assert all(b[0] - a[0] >= 40 for a, b in itertools.pairwise(rows))
    assert all(r[2] is not None for r in rows)
    key_path = signing_key_path(config)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    public = read_public_key(config)
    latest = Checkpoint(**json.loads((checkpoint_dir(config) / "latest.json").read_text()))
    assert latest.seq == rows[-1][0] and latest.link == bytes(rows[-1][1]).hex()
    assert verify_checkpoint(latest, trusted_key_hex=public)
    for seq in (r[0] for r in rows):
        assert (checkpoint_dir(config) / f"checkpoint-{seq:012d}.json").exists()
    announced = await nats_js.get_last_msg(EVENTS_STREAM, CHECKPOINT_SUBJECT)
    event = decode_event(announced.data)
    assert isinstance(event, AuditCheckpointSigned)
    assert (event.data.seq, event.data.link) == (latest.seq, latest.link)
    assert announced.seq == rows[-1][2]
    report = await verify(config, full=True)
    assert report.ok and report.checkpoints_checked >= 2 * len(rows) - 1


async def test_checkpoints_by_time_do_not_feed_themselves(config: Config, nats_js) -> None:
    config = config.model_copy(update={"audit_checkpoint_interval_s": 0.3})
    await publish_events(nats_js, 5)
    async with running_auditor(config):
        await wait_for_head(config, 6)  # 5 events + the checkpoint's own announcement
        await asyncio.sleep(1.5)  # five intervals, idle
        with db(config) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM audit_checkpoints").fetchall()]
    assert seqs == [5]
    assert chain_head(config) == 6


async def test_incremental_verification_starts_where_the_last_one_ended(
        config: Config, nats_js, tmp_path: Path) -> None:
    await publish_events(nats_js, 60)
    async with running_auditor(config):
        await wait_for_head(config, 60)
        first = await verify(config)  # no previous run: full
        assert first.ok and first.mode == "full" and first.from_seq == 1
        await publish_events(nats_js, 25)
        await wait_for_head(config, await _stream_last(nats_js))
        second = await verify(config)
    assert second.ok and second.mode == "incremental"
    assert second.from_seq == first.to_seq + 1
    assert second.verified == second.to_seq - first.to_seq


async def test_http_endpoint_reports_and_streams_progress(config: Config, nats_js) -> None:
    # Served by the gateway over HTTP, answered by the auditor over the bus.
    await publish_events(nats_js, 20)
    async with running_auditor(config), running_gateway(config) as (client, _nc):
        await wait_for_head(config, 20)
        answer = await client.get("/v1/audit/verify", params={"full": "true"})
        assert answer.status_code == 200 and answer.json()["ok"] is True
        streamed = await client.get("/v1/audit/verify", params={"full": "true", "progress": 1})
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        assert "report" in lines[-1] and lines[-1]["report"]["verified"] == 20
        status = (await client.get("/v1/audit/status")).json()
        assert status["chain"]["head_seq"] == 20 and status["pending"] == 0


async def test_a_killed_auditor_resumes_and_survives_a_broker_restart(
        config: Config, nats_js, nats_server: NatsServer) -> None:
    await publish_events(nats_js, 3000)
    stop = asyncio.Event()
    killed = asyncio.create_task(run(config, stop))
    await wait_for_head(config, 1)
    killed.cancel()  # no clean shutdown: whatever was fetched or committed stays as it is
    with contextlib.suppress(asyncio.CancelledError):
        await killed
    async with running_auditor(config):
        await wait_for_head(config, 3000)
        nats_server.stop()
        nats_server.start()
        for _ in range(50):  # the fixture's connection reconnects on its own
            with contextlib.suppress(Exception):
                await publish_events(nats_js, 20)
                break
            await asyncio.sleep(0.2)
        await wait_for_head(config, await _stream_last(nats_js))
    report = await verify(config, full=True)
    assert report.ok and report.verified == await _stream_last(nats_js)


async def test_the_chain_is_untouched_by_a_read_model_schema_swap(config: Config,
                                                                  nats_js) -> None:
    """``mnemos replay`` renames the read-model schema away; the audit schema stays put."""
    await publish_events(nats_js, 20)
    async with running_auditor(config):
        await wait_for_head(config, 20)
        with db(config) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {config.db_schema}")
            conn.execute(f"ALTER SCHEMA {config.db_schema} RENAME TO {config.db_schema}_old_1")
            conn.execute(f"CREATE SCHEMA {config.db_schema}")
        await publish_events(nats_js, 20)
        await wait_for_head(config, await _stream_last(nats_js))
    report = await verify(config, full=True)
    assert report.ok and report.verified == await _stream_last(nats_js)
    with db(config) as conn:
        assert conn.execute("SELECT count(*) FROM audit_incidents").fetchone() == (0,)
