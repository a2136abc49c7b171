"""``mnemos status``: what is running, how far each consumer is, where the data is."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from libs.consumer.stream_consumers import stream_consumers
from libs.events.stream import DEADLETTER_STREAM, EVENTS_STREAM
from libs.runtime.config import Config
from libs.runtime.instance import read_runtime
from libs.runtime.nats_client import connect_nats, nats_credentials

__all__ = ["Status", "collect_status"]

@dataclass
class Status:
    """A snapshot of the system, as printed by ``mnemos status``."""

    runtime: dict[str, Any] | None
    stream: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    """Events each projection checkpoint is behind the stream's last sequence."""
    dead_letters: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    """Chain head, its lag behind the stream, the last verification's result."""
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Indented JSON for people and scripts."""
        return json.dumps(asdict(self), indent=2, default=str)


async def collect_status(config: Config) -> Status:
    """Ask NATS and Postgres (those configured, or those a running ``mnemos up`` recorded)."""
    running = read_runtime(config.home)
    status = Status(runtime=None if running is None else msgspec.to_builtins(running))
    nats_url = config.nats_url or (running.nats_url if running else None)
    database_url = config.database_url or (running.database_url if running else None)
    if nats_url:
        await _nats_status(nats_url, status, config)
    else:
        status.errors.append("no NATS URL: start `mnemos up` or set MNEMOS_NATS_URL")
    if database_url:
        _database_status(database_url, config.db_schema, status)
        last = int(status.stream.get("last_seq") or 0)
        status.lag = {name: max(0, last - seq) for name, seq in status.checkpoints.items()}
    if nats_url and database_url:
        await _audit_status(config.model_copy(update={"nats_url": nats_url,
                                                      "database_url": database_url}), status)
    return status


async def _audit_status(config: Config, status: Status) -> None:
    import psycopg

    from services.auditor.status import audit_status

    try:
        audit = await audit_status(config)
    except psycopg.errors.UndefinedTable:
        status.audit = {"head_seq": None, "note": "no audit chain yet: has the auditor run?"}
        return
    except Exception as exc:  # the rest of the status is still worth printing
        status.errors.append(f"audit chain: {type(exc).__name__}: {exc}".strip())
        return
    verification = audit.get("last_verification") or {}
    status.audit = {"head_seq": audit["chain"]["head_seq"], "pending": audit["pending"],
                    "writer_active": audit["writer_active"],
                    "last_verification_ok": verification.get("ok"),
                    "last_verification_at": verification.get("finished_at"),
                    "incidents": len(audit.get("incidents") or [])}


async def _nats_status(url: str, status: Status, config: Config) -> None:
    try:
        nc = await connect_nats(url, "mnemos-status", nats_credentials(config))
    except Exception as exc:
        status.errors.append(f"NATS unreachable at {url}: {exc}")
        return
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        last_seq = int(info.state.last_seq or 0)
        status.stream = {"name": EVENTS_STREAM, "messages": info.state.messages,
                         "first_seq": info.state.first_seq, "last_seq": last_seq,
                         "bytes": info.state.bytes}
        # Every durable consumer on the stream, Mnemos's own and third-party subscribers alike.
        for consumer in await stream_consumers(js):
            status.consumers[consumer.name] = {
                "owner": consumer.owner, "pending": consumer.pending,
                "ack_pending": consumer.ack_pending, "redelivered": consumer.redelivered,
                "delivered_seq": consumer.delivered_seq, "ack_floor_seq": consumer.ack_floor_seq,
                "filter": consumer.filter,
            }
        with contextlib.suppress(NotFoundError):
            dlq = await js.stream_info(DEADLETTER_STREAM)
            status.dead_letters = {"stream": DEADLETTER_STREAM, "messages": dlq.state.messages}
    except NotFoundError:
        status.errors.append(f"stream {EVENTS_STREAM} does not exist yet")
    finally:
        await nc.close()


def _database_status(url: str, schema: str, status: Status) -> None:
    import psycopg

    from libs.readmodel.bookkeeping import checkpoints_now
    from libs.runtime.database import search_path_options

    try:
        with psycopg.connect(url, options=search_path_options(schema), connect_timeout=5) as conn:
            status.checkpoints = checkpoints_now(conn)
    except psycopg.Error as exc:
        status.errors.append(f"Postgres: {exc}".strip())
