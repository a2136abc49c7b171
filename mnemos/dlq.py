"""``mnemos dlq list|show``: the dead letters every consumer parked, read from their stream.

Each consumer (projector, auditor, and any later one) publishes what it gives up on to
``mnemos.dlq.<consumer>.<ns>`` on the ``MNEMOS_DEADLETTER`` stream, with headers naming the
original sequence and subject, the error and the attempts (:mod:`libs.consumer.dead_letters`).
This reads them back for operators, newest first. Re-projecting after a fix is a rebuild:
``mnemos replay --swap --force`` projects every event again, dead-lettered ones included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import typer
from nats.js.errors import NotFoundError

from libs.consumer.dead_letters import (
    HDR_ATTEMPTS,
    HDR_ERROR,
    HDR_ORIGINAL_SEQ,
    HDR_ORIGINAL_SUBJECT,
)
from libs.consumer.stream import connect_tool
from libs.events import (
    DEADLETTER_STREAM,
    HDR_MSG_ID,
    InvalidInput,
    MnemosError,
    NotFound,
    Unavailable,
)
from libs.runtime.config import Config, client_config
from libs.runtime.nats_client import nats_credentials
from mnemos.console import emit, fail

__all__ = ["DeadLetterEntry", "dlq_app", "read_dead_letters", "show_dead_letter"]

dlq_app = typer.Typer(no_args_is_help=True, help="List and show dead letters of every consumer.")

MAX_LIST: int = 10_000


@dataclass(frozen=True)
class DeadLetterEntry:
    """One parked message, as stored on the dead-letter stream."""

    dlq_seq: int
    consumer: str
    ns: str
    original_seq: int | None
    original_subject: str | None
    error: str
    attempts: int | None
    parked_at: str | None
    msg_id: str | None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _entry(seq: int, subject: str, headers: Mapping[str, str] | None, time: Any
           ) -> DeadLetterEntry:
    parts = subject.split(".", 3)  # mnemos.dlq.<consumer>.<ns>
    h = dict(headers or {})
    return DeadLetterEntry(
        dlq_seq=seq, consumer=parts[2] if len(parts) > 2 else "?",
        ns=parts[3] if len(parts) > 3 else "?",
        original_seq=_int(h.get(HDR_ORIGINAL_SEQ)),
        original_subject=h.get(HDR_ORIGINAL_SUBJECT), error=h.get(HDR_ERROR, ""),
        attempts=_int(h.get(HDR_ATTEMPTS)), parked_at=str(time) if time else None,
        msg_id=h.get(HDR_MSG_ID))


async def _connect(config: Config) -> Any:
    if not config.nats_url:
        raise Unavailable("no NATS URL: start `mnemos up` or set MNEMOS_NATS_URL")
    return await connect_tool(config.nats_url, "mnemos-dlq", nats_credentials(config))


async def read_dead_letters(config: Config, consumer: str | None = None, limit: int = 50
                            ) -> list[DeadLetterEntry]:
    """The newest ``limit`` dead letters (of ``consumer`` if given), newest first."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be 1-{MAX_LIST}", field="limit")
    nc = await _connect(config)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(DEADLETTER_STREAM)
        except NotFoundError:
            return []
        found: list[DeadLetterEntry] = []
        seq, first = int(info.state.last_seq or 0), int(info.state.first_seq or 0)
        while seq >= max(first, 1) and len(found) < limit:
            try:
                msg = await js.get_msg(DEADLETTER_STREAM, seq)
            except NotFoundError:  # a deleted message leaves a hole
                seq -= 1
                continue
            entry = _entry(seq, str(msg.subject), msg.headers, getattr(msg, "time", None))
            if consumer is None or entry.consumer == consumer:
                found.append(entry)
            seq -= 1
        return found
    finally:
        await nc.close()


def _payload(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return {"undecodable_bytes": data[:4096].hex(), "length": len(data)}


async def show_dead_letter(config: Config, dlq_seq: int) -> dict[str, Any]:
    """One dead letter with the payload it parked (decoded as JSON where it is JSON)."""
    if dlq_seq < 1:
        raise InvalidInput("a dead-letter sequence is a positive integer", field="seq")
    nc = await _connect(config)
    try:
        try:
            msg = await nc.jetstream().get_msg(DEADLETTER_STREAM, dlq_seq)
        except NotFoundError:
            raise NotFound(f"no dead letter at sequence {dlq_seq}", seq=dlq_seq) from None
        entry = _entry(dlq_seq, str(msg.subject), msg.headers, getattr(msg, "time", None))
        return {**asdict(entry), "payload": _payload(msg.data)}
    finally:
        await nc.close()


def _table(entries: list[DeadLetterEntry]) -> str:
    if not entries:
        return "no dead letters"
    lines = [f"{'dlq seq':>8}  {'consumer':<12} {'ns':<16} {'orig seq':>9}  error"]
    lines += [f"{e.dlq_seq:>8}  {e.consumer:<12} {e.ns:<16} {e.original_seq or '-':>9}  "
              f"{e.error[:100]}" for e in entries]
    return "\n".join(lines)


@dlq_app.command("list")
def list_command(
    consumer: str | None = typer.Option(None, help="Only this consumer's (projector, auditor…)."),
    limit: int = typer.Option(50, help=f"How many, newest first (1-{MAX_LIST})."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """The newest dead letters: consumer, namespace, original sequence, error."""
    try:
        entries = asyncio.run(read_dead_letters(client_config(), consumer, limit))
    except MnemosError as exc:
        fail(exc)
    if as_json:
        emit([asdict(e) for e in entries])
    else:
        typer.echo(_table(entries))


@dlq_app.command("show")
def show_command(seq: int = typer.Argument(..., help="The dead letter's sequence (from list).")
                 ) -> None:
    """One dead letter with its headers and the payload it parked, as JSON."""
    try:
        emit(asyncio.run(show_dead_letter(client_config(), seq)))
    except MnemosError as exc:
        fail(exc)
