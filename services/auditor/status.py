"""``mnemos audit status``: chain head, lag behind the stream, checkpoints, verifications."""

from __future__ import annotations

from typing import Any

from libs.consumer import advisory_key
from libs.consumer.stream import connect_tool, stream_bounds
from libs.events import Unavailable
from libs.runtime.config import Config
from libs.runtime.nats_client import nats_credentials
from services.auditor.files import checkpoint_dir, read_public_key
from services.auditor.store import ChainStore, Conn, connect

__all__ = ["audit_status", "collect"]


async def collect(conn: Conn, stream_last: int, schema: str) -> dict[str, Any]:
    """The status document from an open connection and the stream's last sequence."""
    store = ChainStore(conn)
    tail = await store.tail()
    recorded = await store.recorded_head()
    last_cp = await store.last_checkpoint()
    key = advisory_key("auditor", schema)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s AND objsubid = 1",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
        lock = await cur.fetchone()
        cur = await conn.execute(
            "SELECT finished_at, mode, ok, from_seq, to_seq FROM audit_verifications "
            "ORDER BY id DESC LIMIT 1")
        verification = await cur.fetchone()
    return {
        "chain": {"head_seq": tail.seq, "head_link": tail.link.hex(),
                  "recorded_head_seq": recorded.seq if recorded else None},
        "stream_last_seq": stream_last,
        "pending": max(0, stream_last - tail.seq),
        "writer_active": bool(lock and lock["n"]),
        "latest_checkpoint": None if last_cp is None else {
            "seq": last_cp.checkpoint.seq, "at": last_cp.checkpoint.at,
            "link": last_cp.checkpoint.link, "event_seq": last_cp.published_seq},
        "last_verification": verification,
        "incidents": await store.incidents(10),
    }


async def audit_status(config: Config) -> dict[str, Any]:
    """Connect to ``config``'s system and describe the audit chain."""
    if config.database_url is None or config.nats_url is None:
        raise Unavailable("status needs MNEMOS_DATABASE_URL and MNEMOS_NATS_URL")
    nc = await connect_tool(config.nats_url, "audit-status", nats_credentials(config))
    try:
        _, stream_last = await stream_bounds(nc.jetstream())
    finally:
        await nc.close()
    conn = await connect(config.database_url, config.db_schema)
    try:
        status = await collect(conn, stream_last, config.db_schema)
    finally:
        await conn.close()
    status["public_key"] = read_public_key(config)
    status["checkpoint_dir"] = str(checkpoint_dir(config))
    return status
