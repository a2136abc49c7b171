"""``mnemos dlq list|show|retry``: the dead letters every consumer parked, and their repair.

Each consumer (projector, compressor, and any later one) publishes what it gives up on to
``mnemos.dlq.<consumer>.<ns>`` on the ``MNEMOS_DEADLETTER`` stream, with headers naming the
original sequence and subject, the error and the attempts (:mod:`libs.consumer.dead_letters`).
``list`` and ``show`` read them back for operators, newest first.

``retry`` never appends to the event stream (events are history): it re-applies the projector's
stored event through the projector's own code, or refuses when that would not equal applying
it in stream order (:mod:`services.projector.retry`); an applied retry clears the dead letter
and is recorded on the dead-letter stream. ``mnemos replay --swap --force`` remains the repair
for what a retry refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import typer
from nats.js.errors import NotFoundError

from libs.consumer.dead_letters import (
    HDR_ATTEMPTS,
    HDR_ERROR,
    HDR_ORIGINAL_SEQ,
    HDR_ORIGINAL_SUBJECT,
    HDR_RETRY_OUTCOME,
    publish_retry_record,
)
from libs.consumer.stream import connect_tool
from libs.embeddings import build_embedder
from libs.events import (
    DEADLETTER_STREAM,
    HDR_MSG_ID,
    InvalidInput,
    MnemosError,
    NotFound,
    Unavailable,
)
from libs.readmodel.dead_letter_retry import PROJECTOR, open_dead_letter_seqs
from libs.runtime.config import Config, client_config
from libs.runtime.database import connect_async
from libs.runtime.nats_client import nats_credentials
from mnemos.console import emit, fail
from services.projector.main import database_url_of
from services.projector.retry import REPLAY_HINT, RetryResult, retry_dead_letter

__all__ = [
    "DeadLetterEntry",
    "dlq_app",
    "read_dead_letters",
    "retry_dead_letters",
    "show_dead_letter",
]

dlq_app = typer.Typer(no_args_is_help=True,
                      help="List, show and retry the dead letters of every consumer.")

MAX_LIST: int = 10_000

NOT_RETRIED: dict[str, str] = {
    "compressor": "a version the compressor could not compress stays uncompressed and is "
                  "served in full; there is no state to re-apply it to",
}
"""Why a retry refuses the dead letters of consumers other than the projector."""


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
    kind: str = "dead_letter"
    """``dead_letter``, or ``retry``: the record that a retry re-applied an earlier one."""
    status: str = "open"
    """Of a dead letter: ``open``, or ``retried`` once a retry record follows it."""


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
        msg_id=h.get(HDR_MSG_ID),
        kind="retry" if HDR_RETRY_OUTCOME in h else "dead_letter",
        status=h.get(HDR_RETRY_OUTCOME, "open"))


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
        retried: set[tuple[str, int | None]] = set()  # records come after their letters
        seq, first = int(info.state.last_seq or 0), int(info.state.first_seq or 0)
        while seq >= max(first, 1) and len(found) < limit:
            try:
                msg = await js.get_msg(DEADLETTER_STREAM, seq)
            except NotFoundError:  # a deleted message leaves a hole
                seq -= 1
                continue
            entry = _entry(seq, str(msg.subject), msg.headers, getattr(msg, "time", None))
            if entry.kind == "retry":
                retried.add((entry.consumer, entry.original_seq))
            elif (entry.consumer, entry.original_seq) in retried:
                entry = replace(entry, status="retried")
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
    lines = [f"{'dlq seq':>8}  {'consumer':<12} {'ns':<16} {'orig seq':>9}  {'status':<8} error"]
    lines += [f"{e.dlq_seq:>8}  {e.consumer:<12} {e.ns:<16} {e.original_seq or '-':>9}  "
              f"{e.status if e.kind == 'dead_letter' else 'record':<8} "
              f"{e.error[:100] if e.kind == 'dead_letter' else 'retry ' + e.status}"
              for e in entries]
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


async def _target_of(js: Any, dlq_seq: int) -> tuple[DeadLetterEntry, RetryResult | None]:
    """The dead letter at ``dlq_seq``, and the refusal if it is not the projector's."""
    try:
        msg = await js.get_msg(DEADLETTER_STREAM, dlq_seq)
    except NotFoundError:
        raise NotFound(f"no dead letter at sequence {dlq_seq}", seq=dlq_seq) from None
    entry = _entry(dlq_seq, str(msg.subject), msg.headers, getattr(msg, "time", None))
    if entry.kind == "retry":
        raise InvalidInput(f"{dlq_seq} is a retry record, not a dead letter", field="seq")
    if entry.original_seq is None:
        raise InvalidInput(f"dead letter {dlq_seq} names no original sequence", field="seq")
    if entry.consumer != PROJECTOR:
        reason = NOT_RETRIED.get(entry.consumer, f"{entry.consumer} keeps no dead-letter state "
                                 "that a retry could repair")
        return entry, RetryResult(entry.original_seq, "refused",
                                  f"only the projector's dead letters are retried: {reason}")
    return entry, None


async def retry_dead_letters(config: Config, dlq_seq: int | None = None) -> list[RetryResult]:
    """Retry the projector's dead letter at dead-letter sequence ``dlq_seq``, or (None) every
    open one, oldest first; each applied retry is recorded on the dead-letter stream."""
    if dlq_seq is not None and dlq_seq < 1:
        raise InvalidInput("a dead-letter sequence is a positive integer", field="seq")
    nc = await _connect(config)
    try:
        js = nc.jetstream()
        wanted: list[int] = []
        if dlq_seq is not None:
            entry, refused = await _target_of(js, dlq_seq)
            if refused is not None:
                return [refused]
            wanted = [entry.original_seq or 0]
        conn = await connect_async(database_url_of(config), config.db_schema, autocommit=True)
        try:
            if dlq_seq is None:
                wanted = await open_dead_letter_seqs(conn)
            embedder = build_embedder(config) if wanted else None
            results = []
            for seq in wanted:
                result = await retry_dead_letter(conn, embedder, config.db_schema, seq)
                if result.outcome == "applied" and result.ns is not None:
                    await publish_retry_record(js, PROJECTOR, result.ns, seq, "applied")
                results.append(result)
            return results
        finally:
            await conn.close()
    finally:
        await nc.close()


def _line(result: RetryResult) -> str:
    what = ", ".join(x for x in (result.event_type, result.memory_id and
                                 f"memory {result.memory_id}") if x)
    return f"seq {result.seq}{f' ({what})' if what else ''}: {result.outcome}: {result.reason}"


RETRY_HELP: str = "\n\n".join((
    "Re-apply a projector dead letter after its cause was fixed, or refuse and say why.",
    "Nothing is appended to the event stream. The stored event runs through the projector's "
    "own code in one transaction (the live projector pauses between batches): if it applies, "
    "its dead letter is cleared, the memory is served again once none is left on it, and the "
    "retry is recorded on MNEMOS_DEADLETTER; if it still fails, nothing changes and the error "
    "is shown.",
    "It is refused, changing nothing, when applying it now would not equal stream order: an "
    "older dead letter on the same memory is open, a later event on the memory was applied "
    "after it was skipped, or it links to a memory created after it. Then fix the cause and "
    "run `mnemos replay --swap --force`. Dead letters of other consumers (the compressor's) "
    "are refused: they leave no state to repair.",
    "Exit code 1 if any retry failed or was refused.",
))


@dlq_app.command("retry", help=RETRY_HELP)
def retry_command(
    seq: int | None = typer.Argument(None, help="The dead letter's sequence (from list)."),
    retry_all: bool = typer.Option(False, "--all",
                                   help="Every open dead letter of the projector, oldest first."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of lines."),
) -> None:
    """Retry one dead letter, or every open one of the projector (see ``RETRY_HELP``)."""
    if (seq is None) == (not retry_all):
        fail(InvalidInput("name one dead letter (SEQ) or pass --all", field="seq"))
    try:
        results = asyncio.run(retry_dead_letters(client_config(), seq))
    except MnemosError as exc:
        fail(exc)
    if as_json:
        emit([asdict(r) for r in results])
    else:
        typer.echo("\n".join(_line(r) for r in results) or "no open dead letters")
    if not all(r.ok for r in results):
        if not as_json and any(r.outcome == "refused" for r in results):
            typer.echo(REPLAY_HINT, err=True)
        raise typer.Exit(1)
