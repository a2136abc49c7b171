"""Verification: recompute the chain from the stream and compare it with what is stored.

Three ordered sequences are merged in one pass, in bounded memory: the stream (an ephemeral
pull consumer), the stored links (a server-side cursor) and the signed checkpoints (another
cursor); read-model rows join the same walk (see :mod:`.readmodel`). The first broken link
stops the walk and is named (:class:`~services.auditor.chain.BreakKind`).

*Incremental* starts after the last successful verification (whose link is trusted), *full*
from genesis. A checkpoint file given by an operator implies *full*: only a recomputation from
genesis proves that the chain still extends it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import msgspec
import psycopg
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.consumer.stream import StreamMessage, connect_tool, read_stream, stream_bounds
from libs.events import (
    EVENTS_STREAM,
    AuditCheckpointSigned,
    Break,
    BreakKind,
    CheckpointCheck,
    Progress,
    ReadModelIssue,
    VerifyReport,
)
from libs.readmodel.verification import (
    check_folds,
    check_registry,
    check_result_count,
    dead_letter_seqs,
    event_rows,
    projection_checkpoint,
    read_model_tables,
)
from libs.runtime.config import Config
from libs.runtime.nats_client import nats_credentials
from services.auditor.chain import GENESIS_LINK, StoredRow, diagnose
from services.auditor.checkpoint import Checkpoint, verify_checkpoint
from services.auditor.files import read_checkpoint_file, read_public_key
from services.auditor.metrics import record_verification_result
from services.auditor.readmodel import (
    compare_event_row,
    compare_version_row,
    decode_or_none,
)
from services.auditor.store import ChainStore, Conn, connect, iter_rows
from services.auditor.streamio import CHECKPOINT_SUBJECT
from services.auditor.writer import CONSUMER

__all__ = ["ProgressFn", "run_verification", "verify"]

_MAX_ISSUES: Final = 50
_MAX_KEYS: Final = 10
_PROGRESS_EVERY_S: Final = 1.0

T = TypeVar("T")


ProgressFn = Callable[[Progress], None]


class _Peek(Generic[T]):
    """An async iterator with one item of look-ahead."""

    def __init__(self, source: AsyncIterator[T]) -> None:
        self.source = source
        self.head: T | None = None

    async def advance(self) -> T | None:
        self.head = await anext(self.source, None)
        return self.head

    async def aclose(self) -> None:
        """Finish the source now (its cursor or consumer), not whenever it is collected."""
        close = getattr(self.source, "aclose", None)
        if close is not None:
            await close()


class _Evidence(msgspec.Struct):
    """Sequences the chain is known to have reached, read before the snapshot."""

    consumer_ack_floor: int = 0
    stream_checkpoint_seq: int = 0


async def _evidence(js: JetStreamContext) -> _Evidence:
    found = _Evidence()
    try:
        info = await js.consumer_info(EVENTS_STREAM, CONSUMER)
        found.consumer_ack_floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    except NotFoundError:
        pass
    try:
        raw = await js.get_last_msg(EVENTS_STREAM, CHECKPOINT_SUBJECT, direct=True)
        event = decode_or_none(bytes(raw.data or b""))
        if isinstance(event, AuditCheckpointSigned):
            found.stream_checkpoint_seq = event.data.seq
    except NotFoundError:
        pass
    return found


class _Walk:
    """One verification pass; fills ``report``."""

    def __init__(self, conn: Conn, nc: Client, report: VerifyReport,
                 trusted_key: str | None, progress: ProgressFn | None) -> None:
        self.conn = conn
        self.nc = nc
        self.js = nc.jetstream()
        self.report = report
        self.trusted_key = trusted_key
        self.progress = progress
        self.started = time.monotonic()
        self.last_progress = self.started
        self.projected = 0
        self.dead: set[int] = set()
        self.tables: list[str] = []
        self.untrusted: set[tuple[str, str]] = set()

    def fail(self, brk: Break) -> None:
        self.report.first_break = brk
        self.report.ok = False

    def key_trust(self, key_hex: str) -> bool | None:
        return None if self.trusted_key is None else key_hex == self.trusted_key

    async def walk(self, first: int, prev: bytes, file_cp: Checkpoint | None) -> bytes:
        """Merge stream, stored links, checkpoints and read models from ``first``; return the
        last recomputed link that matched."""
        stream = _Peek(read_stream(self.nc, self.js, first, self.report.stream_last_seq))
        rows = _Peek(iter_rows(self.conn, first, None))
        cps = _Peek(self._table_checkpoints(first))
        tables = await read_model_tables(self.conn)
        models = {t: _Peek(event_rows(self.conn, t, first)) for t in tables}
        self.tables = tables
        try:
            await rows.advance()
            await cps.advance()
            for model in models.values():
                await model.advance()
            return await self._merge(first, prev, file_cp, stream, rows, cps, models)
        finally:
            peeks: list[_Peek[Any]] = [stream, rows, cps, *models.values()]
            for peek in peeks:
                await peek.aclose()

    async def _merge(self, first: int, prev: bytes, file_cp: Checkpoint | None,
                     stream: _Peek[StreamMessage], rows: _Peek[StoredRow],
                     cps: _Peek[Checkpoint], models: dict[str, _Peek[dict[str, Any]]]
                     ) -> bytes:
        report = self.report
        expected_seq = first
        msg = await stream.advance()
        row: StoredRow | None = rows.head
        while msg is not None:
            if msg.seq != expected_seq:
                self.fail(_stream_missing(expected_seq, msg.seq, row))
                return prev
            if row is None or row.seq > msg.seq:
                if row is not None:
                    self.fail(Break(kind=BreakKind.CHAIN_ROW_MISSING, seq=msg.seq, detail=(
                        f"the chain has no row for seq {msg.seq} (rows resume at {row.seq})")))
                return prev
            prev, brk = diagnose(prev, msg.seq, msg.data, row)
            if brk is not None:
                self.fail(brk)
                return prev
            report.to_seq, report.verified = msg.seq, report.verified + 1
            if file_cp is not None and file_cp.seq == msg.seq:
                self._match_file(file_cp, prev)
            await self._checkpoints_at(cps, msg.seq, prev)
            if msg.subject == CHECKPOINT_SUBJECT:
                await self._stream_checkpoint(msg)
            if models:
                await self._read_models(models, msg)
            if report.first_break is not None:
                return prev
            self._tick(msg.seq)
            expected_seq += 1
            msg = await stream.advance()
            row = await rows.advance()
        if report.first_break is None and (row is not None
                                            or expected_seq <= report.stream_last_seq):
            self.fail(_stream_ended(expected_seq, report.stream_last_seq, row))
        return prev

    async def _table_checkpoints(self, first: int) -> AsyncIterator[Checkpoint]:
        async with self.conn.cursor(name="audit_cps") as cur:
            await cur.execute("SELECT seq, link, at, public_key, signature FROM "
                              "audit_checkpoints WHERE seq >= %s ORDER BY seq", (first,))
            async for r in cur:
                yield Checkpoint(seq=int(r["seq"]), link=bytes(r["link"]).hex(), at=str(r["at"]),
                                 public_key=str(r["public_key"]), signature=str(r["signature"]))

    async def _checkpoints_at(self, cps: _Peek[Checkpoint], seq: int, link: bytes) -> None:
        while cps.head is not None and cps.head.seq <= seq:
            cp = cps.head
            self._check_signed(cp, "table", link if cp.seq == seq else None)
            await cps.advance()

    def _check_signed(self, cp: Checkpoint, source: str, link: bytes | None) -> None:
        self.report.checkpoints_checked += 1
        keys = self.report.signing_keys
        if cp.public_key not in keys and len(keys) < _MAX_KEYS:
            keys.append(cp.public_key)
        if not verify_checkpoint(cp):
            self.fail(Break(kind=BreakKind.CHECKPOINT_SIGNATURE_INVALID, seq=cp.seq,
                            found=cp.signature, detail=f"{source} checkpoint at seq {cp.seq} "
                            "has a signature that does not verify"))
        elif link is not None and link.hex() != cp.link:
            self.fail(Break(kind=BreakKind.CHECKPOINT_MISMATCH, seq=cp.seq, expected=cp.link,
                            found=link.hex(), detail=f"{source} checkpoint signed link "
                            f"{cp.link[:16]}… at seq {cp.seq}, recomputed {link.hex()[:16]}…: "
                            "the chain was rewritten"))

    async def _stream_checkpoint(self, msg: StreamMessage) -> None:
        """A checkpoint announced in the stream names an earlier, already compared seq."""
        event = decode_or_none(msg.data)
        if not isinstance(event, AuditCheckpointSigned):
            return
        d = event.data
        cp = Checkpoint(seq=d.seq, link=d.link, at=d.at, public_key=d.public_key,
                        signature=d.signature)
        stored = await ChainStore(self.conn).row(cp.seq)
        self._check_signed(cp, "stream", stored.link if stored else None)

    def _match_file(self, cp: Checkpoint, link: bytes) -> None:
        check = self.report.checkpoint_file
        assert check is not None
        check.matches = link.hex() == cp.link
        if check.matches:
            check.detail = f"the chain recomputed from the stream extends seq {cp.seq}"
        else:
            check.detail = f"recomputed link at seq {cp.seq} differs from the signed link"
            self.fail(Break(kind=BreakKind.CHECKPOINT_MISMATCH, seq=cp.seq, expected=cp.link,
                            found=link.hex(), detail="the checkpoint file's signed link differs "
                            "from the link recomputed from the stream: the chain (and stream) "
                            "were rewritten since it was signed"))

    async def _read_models(self, models: dict[str, _Peek[dict[str, Any]]],
                           msg: StreamMessage) -> None:
        event = None
        events = models.get("memory_events")
        if (events is not None and msg.seq <= self.projected and msg.seq not in self.dead
                and (events.head is None or int(events.head["seq"]) > msg.seq)):
            event = decode_or_none(msg.data)
            if event is not None and event.aggregate == "memory":
                self._issue(ReadModelIssue(
                    table="memory_events", seq=msg.seq, event_id=event.id, field="seq",
                    detail=f"memory_events has no row for the event at seq {msg.seq} (memory "
                    f"{event.aggregate_id}), which was projected and not dead-lettered"))
        for table, peek in models.items():
            while peek.head is not None and int(peek.head["seq"]) <= msg.seq:
                row = peek.head
                if event is None:
                    event = decode_or_none(msg.data)
                if int(row["seq"]) < msg.seq or event is None:
                    self._issue(ReadModelIssue(
                        table=table, seq=int(row["seq"]), event_id=row.get("event_id"),
                        field="seq", detail=f"{table} row names seq {row['seq']}, which holds "
                        "no such event in the stream"))
                else:
                    compare = compare_event_row if table == "memory_events" else \
                        compare_version_row
                    self.report.read_model_checked += 1
                    issue = compare(row, event, msg.seq)
                    if issue is not None:
                        self._issue(issue)
                        if table == "memory_events":  # its fold would blame the wrong rows
                            self.untrusted.add((str(row["ns"]), str(row["memory_id"])))
                await peek.advance()

    def _issue(self, issue: ReadModelIssue) -> None:
        self.report.ok = False
        self.report.read_model_issue_count += 1
        if len(self.report.read_model_issues) < _MAX_ISSUES:
            self.report.read_model_issues.append(issue)

    def _tick(self, seq: int) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.last_progress < _PROGRESS_EVERY_S:
            return
        self.last_progress = now
        elapsed = now - self.started
        total = max(0, self.report.stream_last_seq - self.report.from_seq + 1)
        self.progress(Progress(seq=seq, done=self.report.verified, total=total,
                               elapsed_s=round(elapsed, 2),
                               events_per_s=round(self.report.verified / max(elapsed, 1e-9))))


def _stream_missing(expected: int, got: int, row: StoredRow | None) -> Break:
    chained = row is not None and row.seq == expected
    return Break(kind=BreakKind.STREAM_MESSAGE_MISSING, seq=expected,
                 event_id=row.event_id if chained and row else None,
                 expected=row.event_hash.hex() if chained and row else None,
                 detail=f"the stream cannot serve seq {expected} (next readable: {got})"
                 + ("; it was chained, so it was deleted or is corrupt on disk" if chained
                    else "; the stream's sequences must be contiguous"))


def _stream_ended(expected: int, stream_last: int, row: StoredRow | None) -> Break:
    if expected <= stream_last or row is None:
        return _stream_missing(expected, stream_last + 1, row)
    return Break(kind=BreakKind.STREAM_TRUNCATED, seq=row.seq, event_id=row.event_id,
                 detail=f"the stream ends at seq {stream_last} but the chain continues from "
                 f"seq {row.seq}: stream messages were lost")


async def _start_point(store: ChainStore, full: bool, report: VerifyReport
                       ) -> tuple[int, bytes] | None:
    """``(first seq, trusted previous link)``, or None after recording an anchor break."""
    if not full:
        last = await store.last_verified()
        if last is not None:
            seq, link = last
            stored = await store.row(seq)
            if stored is None or stored.link != link:
                report.ok = False
                report.first_break = Break(
                    kind=BreakKind.ANCHOR_CHANGED, seq=seq, expected=link.hex(),
                    found=stored.link.hex() if stored else None,
                    detail=f"the stored link at the last verified seq {seq} is no longer the "
                    "verified one; run a full verification")
                return None
            return seq + 1, link
    report.mode = "full"
    genesis = await store.row(0)
    if genesis is None or genesis.link != GENESIS_LINK:
        report.ok = False
        report.first_break = Break(
            kind=BreakKind.GENESIS_CHANGED, seq=0, expected=GENESIS_LINK.hex(),
            found=genesis.link.hex() if genesis else None,
            detail="the genesis row is missing or not the fixed genesis link")
        return None
    return 1, GENESIS_LINK


async def _chain_end(store: ChainStore, report: VerifyReport, evidence: _Evidence,
                     file_cp: Checkpoint | None) -> None:
    """After a clean walk: is the chain merely behind the stream, or was its tail cut?"""
    tail = report.chain_head_seq
    head = await store.recorded_head()
    last_cp = await store.last_checkpoint()
    reached = {
        "recorded head": head.seq if head else 0,
        "latest signed checkpoint": last_cp.checkpoint.seq if last_cp else 0,
        "auditor consumer ack floor": evidence.consumer_ack_floor,
        "latest checkpoint announced in the stream": evidence.stream_checkpoint_seq,
        "checkpoint file": file_cp.seq if file_cp else 0,
    }
    beyond = {name: seq for name, seq in reached.items() if seq > tail}
    if beyond:
        report.ok = False
        report.first_break = Break(
            kind=BreakKind.CHAIN_TRUNCATED, seq=tail + 1,
            detail=f"the chain ends at seq {tail} but had reached "
            + ", ".join(f"{seq} ({name})" for name, seq in beyond.items())
            + ": its newest rows were removed")
        if file_cp is not None and report.checkpoint_file is not None and file_cp.seq > tail:
            report.checkpoint_file.matches = False
            report.checkpoint_file.detail = f"the chain ends at {tail}, before the checkpoint"
    report.pending = max(0, report.stream_last_seq - tail)


async def run_verification(conn: Conn, nc: Client, *, full: bool = False,
                           checkpoint: Checkpoint | None = None, trusted_key: str | None = None,
                           progress: ProgressFn | None = None) -> VerifyReport:
    """Verify over open connections; the result is also recorded in ``audit_verifications``."""
    started_at = datetime.now(UTC)
    report = VerifyReport(mode="full" if full or checkpoint else "incremental",
                          from_seq=0, started_at=started_at.isoformat(), trusted_key=trusted_key)
    js = nc.jetstream()
    walk = _Walk(conn, nc, report, trusted_key, progress)
    if checkpoint is not None:
        report.checkpoint_file = CheckpointCheck(
            source="file", seq=checkpoint.seq, link=checkpoint.link,
            signature_valid=verify_checkpoint(checkpoint),
            trusted_key=walk.key_trust(checkpoint.public_key))
        if not report.checkpoint_file.signature_valid:
            walk.fail(Break(kind=BreakKind.CHECKPOINT_SIGNATURE_INVALID, seq=checkpoint.seq,
                            found=checkpoint.signature,
                            detail="the checkpoint file's signature does not verify"))
    evidence = await _evidence(js)
    store = ChainStore(conn)
    prev = b""
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    async with conn.transaction():
        report.chain_head_seq = (await store.tail()).seq
        report.stream_first_seq, report.stream_last_seq = await stream_bounds(js)
        start = await _start_point(store, report.mode == "full", report)
        if start is not None and report.ok:
            report.from_seq, prev = start
            report.to_seq = start[0] - 1
            walk.projected = await projection_checkpoint(conn)
            walk.dead = await dead_letter_seqs(conn)
            prev = await walk.walk(start[0], start[1], checkpoint)
            if report.first_break is None:
                await _chain_end(store, report, evidence, checkpoint)
            if "memory_events" in walk.tables:
                since = 0 if report.mode == "full" else report.from_seq
                report.memories_checked = await check_folds(conn, since, walk._issue,
                                                            skip=walk.untrusted)
                if since == 0:
                    await check_result_count(conn, walk._issue)
                    report.read_model_checked += await check_registry(conn, walk._issue)
    await conn.set_isolation_level(None)
    elapsed = time.monotonic() - walk.started
    report.duration_s = round(elapsed, 3)
    report.events_per_s = round(report.verified / elapsed) if elapsed > 0 else 0.0
    clean = report.ok and report.first_break is None
    await store.record_verification(
        report.mode, started_at, report.from_seq, report.to_seq,
        prev if clean else None, clean, msgspec.to_builtins(report))
    record_verification_result(report.mode, clean, time.time())
    return report


async def verify(config: Config, *, full: bool = False, checkpoint_file: Path | None = None,
                 progress: ProgressFn | None = None) -> VerifyReport:
    """Verify the chain of ``config``'s system (what ``mnemos audit verify`` and the HTTP
    endpoint run). Connects on its own; ``progress`` is called about once a second."""
    if config.database_url is None or config.nats_url is None:
        from libs.events import Unavailable

        raise Unavailable("verification needs MNEMOS_DATABASE_URL and MNEMOS_NATS_URL")
    checkpoint = read_checkpoint_file(checkpoint_file) if checkpoint_file else None
    trusted = read_public_key(config)
    nc = await connect_tool(config.nats_url, "audit-verify", nats_credentials(config))
    try:
        conn = await connect(config.database_url, config.db_schema)
        try:
            return await run_verification(conn, nc, full=full, checkpoint=checkpoint,
                                          trusted_key=trusted, progress=progress)
        finally:
            await conn.close()
    finally:
        await nc.close()
