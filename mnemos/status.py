"""``mnemos status``: what is running, how far each consumer is, where the data is."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from libs.events.stream import EVENTS_STREAM
from libs.runtime.config import Config
from libs.runtime.instance import read_runtime
from libs.runtime.nats_client import connect_nats, nats_credentials

__all__ = ["Status", "collect_status"]

CONSUMERS = ("projector", "auditor")


@dataclass
class Status:
    """A snapshot of the system, as printed by ``mnemos status``."""

    runtime: dict[str, Any] | None
    stream: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
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
    return status


async def _nats_status(url: str, status: Status, config: Config) -> None:
    try:
        nc = await connect_nats(url, "mnemos-status", nats_credentials(config))
    except Exception as exc:
        status.errors.append(f"NATS unreachable at {url}: {exc}")
        return
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        status.stream = {"name": EVENTS_STREAM, "messages": info.state.messages,
                         "first_seq": info.state.first_seq, "last_seq": info.state.last_seq,
                         "bytes": info.state.bytes}
        for name in CONSUMERS:
            try:
                consumer = await js.consumer_info(EVENTS_STREAM, name)
            except NotFoundError:
                continue
            status.consumers[name] = {"pending": consumer.num_pending,
                                      "ack_pending": consumer.num_ack_pending,
                                      "delivered_seq": consumer.delivered.stream_seq}
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
