"""``mnemos replay``: rebuild the read models from the stream, verify them, swap them in.

1. Project the whole stream into a fresh sibling schema ``<schema>_rebuild`` with the same
   projection code, seeded with the live embedding cache so nothing is embedded twice.
2. Freeze the live projector between two batches (the exclusive side of its swap fence), catch
   the rebuild up to exactly the live checkpoint, and compare row counts and digests.
3. With ``swap``, rename in one transaction: live -> ``<schema>_old_<utc time>``, rebuild -> live
   (only when the digests match, unless ``force``: a replay after a projection fix is *meant* to
   differ). The live projector notices the swap at its next batch, reconnects and resumes from
   the rebuild's checkpoint. The old schema stays for inspection or rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from nats.js.errors import NotFoundError
from tqdm import tqdm

from libs.consumer import ConsumerRuntime
from libs.embeddings import Embedder, build_embedder
from libs.events import EVENTS_STREAM, Conflict, InvalidInput
from libs.readmodel.bookkeeping import live_checkpoint, table_exists
from libs.readmodel.bulk_load import DeferredStructures, finish_bulk_load, start_bulk_load
from libs.readmodel.digest import read_model_digest, row_counts
from libs.readmodel.schema import (
    AS_OF_INFIX,
    OLD_SCHEMA_INFIX,
    advisory_key,
    as_of_schemas,
    copy_embedding_cache,
    drop_schema,
    old_schemas,
    prepare_schema,
    rename_schema,
)
from libs.runtime.config import Config
from libs.runtime.database import connect_async
from libs.runtime.garbage import tune_for_throughput
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import connect_nats, ensure_streams, nats_credentials
from services.projector.as_of import AsOf, resolve_as_of
from services.projector.handler import ProjectorSettings, projector_runtime
from services.projector.main import database_url_of, nats_url_of

__all__ = ["ReplayReport", "drop_old_schemas", "replay"]

log = get_logger(__name__)

REPLAY_BATCH: Final = 2000
"""Events per rebuild transaction (the live projector's batches are smaller, for latency)."""
COPY_MIN_RUN: Final = 16
"""Runs of at least this many events insert their rows with ``COPY``."""
FINISH_CONNECTIONS: Final = min(4, max(2, os.cpu_count() or 2))
"""Connections building the deferred indexes at once: this machine's cores, from 2 to 4 (each
build is about one server core; an embedded server shares this machine)."""
EMBED_AHEAD: Final = 1
"""Batches decoded (and their cached vectors read) while the previous one is written."""


@dataclass
class ReplayReport:
    """What a replay did; ``verified`` is None when live and rebuild could not be compared."""

    live_schema: str
    rebuild_schema: str
    stream_last_seq: int
    rebuilt_to_seq: int = 0
    live_checkpoint: int | None = None
    seconds: float = 0.0
    rebuild_counts: dict[str, int] = field(default_factory=dict)
    live_counts: dict[str, int] | None = None
    rebuild_digest: str = ""
    live_digest: str | None = None
    verified: bool | None = None
    swapped: bool = False
    old_schema: str | None = None
    note: str = ""
    loaded_s: float = 0.0
    """Seconds from the start to the end of the load (rows in, search structures not yet)."""
    indexed_s: float = 0.0
    """Seconds of building the deferred indexes and lexical statistics after the load."""
    finish_steps: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines for the command line."""
        verdict = {True: "digests match", False: "DIGESTS DIFFER", None: "not compared"}
        lines = [
            f"rebuilt {self.rebuild_schema} to seq {self.rebuilt_to_seq} "
            f"(stream at {self.stream_last_seq}) in {self.seconds:.1f}s",
            f"live {self.live_schema} checkpoint {self.live_checkpoint}: "
            f"{verdict[self.verified]}",
        ]
        for table, count in self.rebuild_counts.items():
            live = self.live_counts.get(table) if self.live_counts else None
            lines.append(f"  {table:<24} rebuild {count:>9}   live {live}")
        if self.swapped:
            lines.append(f"swapped: {self.rebuild_schema} is now {self.live_schema}; "
                         f"previous read models kept as {self.old_schema}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


async def replay(config: Config, swap: bool, force: bool = False, *,
                 embedder: Embedder | None = None, progress: bool = True,
                 stall_timeout_s: float = 5.0, dry_run: bool = False,
                 as_of: AsOf | None = None) -> ReplayReport:
    """Rebuild the read models of ``config.db_schema`` from the stream; optionally swap them in.

    Only one replay per schema runs at a time (:class:`Conflict` otherwise). Before comparing,
    the live projector is waited for while its checkpoint moves (``stall_timeout_s``).
    ``dry_run``: compare, never swap, and drop the rebuild afterwards. ``as_of``: the state as
    of a stream sequence or time, kept in ``<schema>_asof_<seq>`` to inspect; it is neither
    compared (the live schema is at another point of history) nor swapped.
    """
    if (swap or force) and (dry_run or as_of is not None):
        raise InvalidInput("--swap/--force cannot be combined with --dry-run or an as-of "
                           "point", field="swap")
    embedder = embedder or build_embedder(config)
    url = database_url_of(config)
    live = config.db_schema
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as guard:
        cur = await guard.execute("SELECT pg_try_advisory_lock(%s)",
                                  (advisory_key("replay", live),))
        row = await cur.fetchone()
        if not row or not row[0]:
            raise Conflict(f"another replay of schema {live!r} is running")
        nc = await connect_nats(nats_url_of(config), "mnemos-replay",
                                  nats_credentials(config))
        try:
            js = nc.jetstream()
            await ensure_streams(js, config)
            info = await js.stream_info(EVENTS_STREAM)
            last_seq = int(info.state.last_seq)
            target = last_seq if as_of is None else await resolve_as_of(js, as_of, last_seq)
            rebuild = f"{live}_rebuild" if as_of is None else f"{live}{AS_OF_INFIX}{target}"
            await _fresh_schema(guard, live, rebuild, embedder.dim, url)
            report = ReplayReport(live, rebuild, stream_last_seq=last_seq)
            # A bounded run: nothing fenced or published, large batches into a schema whose
            # search structures are built after the load, the next batch decoded meanwhile.
            settings = ProjectorSettings(
                database_url=url, schema=rebuild, consumer=f"replay_{live}",
                publish_dead_letters=False, fenced=False, embed_ahead=EMBED_AHEAD,
                batch_size=REPLAY_BATCH, copy_min_run=COPY_MIN_RUN, synchronous_commit=False,
            )
            deferred = await start_bulk_load(guard, rebuild)
            tune_for_throughput()
            try:
                projector = await _load(settings, nc, embedder, deferred, report, target,
                                        started, progress)
                if as_of is not None:
                    await _keep_as_of(url, report)
                else:
                    await _compare_and_swap(url, report, projector, swap, force,
                                            stall_timeout_s)
                    if dry_run:
                        await drop_schema(guard, rebuild)
                        report.note = (report.note + "\n" if report.note else "") + (
                            f"dry run: {rebuild} dropped, nothing swapped")
            finally:
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(EVENTS_STREAM, settings.consumer)
        finally:
            await nc.close()
    report.seconds = time.monotonic() - started
    log.info("replay_finished", live=live, verified=report.verified, swapped=report.swapped,
             seq=report.rebuilt_to_seq)
    return report


async def _load(settings: ProjectorSettings, nc: Any, embedder: Embedder,
                deferred: DeferredStructures, report: ReplayReport, target: int, started: float,
                progress: bool) -> ConsumerRuntime[Any]:
    """Project the stream up to ``target`` into the rebuild (a progress bar with events/s and
    ETA), then build what the bulk load deferred; the projector, to catch up later."""
    with tqdm(total=target, unit="ev", desc=f"replay {report.live_schema}",
              disable=not progress, mininterval=0.5) as bar:
        def advance(seq: int) -> None:
            bar.update(seq - bar.n)

        projector = projector_runtime(settings, nc, embedder, on_checkpoint=advance)
        report.rebuilt_to_seq = await projector.run(asyncio.Event(), until_seq=target)
        report.loaded_s = time.monotonic() - started
        log.info("replay_loaded", schema=report.rebuild_schema, seq=report.rebuilt_to_seq,
                 seconds=round(report.loaded_s, 2))
        if progress:
            bar.write(f"loaded {report.rebuilt_to_seq:,} events in {report.loaded_s:.1f}s; "
                      "building the search indexes")
    await _finish_load(settings.database_url, deferred, report)
    return projector


async def _fresh_schema(conn: psycopg.AsyncConnection[Any], live: str, rebuild: str, dim: int,
                        url: str) -> None:
    """An empty ``rebuild`` schema, migrated, holding a copy of the live embedding cache."""
    await drop_schema(conn, rebuild)
    await asyncio.to_thread(prepare_schema, url, rebuild, dim)
    if await table_exists(conn, live, "embedding_cache"):
        await copy_embedding_cache(conn, live, rebuild)


async def _finish_load(url: str, deferred: DeferredStructures, report: ReplayReport) -> None:
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(
            await connect_async(url, deferred.schema, autocommit=True))
            for _ in range(FINISH_CONNECTIONS)]
        report.finish_steps = await finish_bulk_load(connections, deferred)
    report.indexed_s = time.monotonic() - started
    log.info("replay_indexed", schema=deferred.schema, seconds=round(report.indexed_s, 2))


async def _keep_as_of(url: str, report: ReplayReport) -> None:
    report.rebuild_digest, report.rebuild_counts = await _digest(url, report.rebuild_schema)
    report.note = (f"state as of seq {report.rebuilt_to_seq} kept in schema "
                   f"{report.rebuild_schema} (not compared, not swapped); serve it read-only "
                   f"with MNEMOS_DB_SCHEMA={report.rebuild_schema}, drop it with "
                   "`mnemos replay --cleanup`")


async def _wait_live(conn: psycopg.AsyncConnection[Any], live: str, seq: int,
                     stall_s: float) -> None:
    """Let a running projector reach the stream end seen by the rebuild, as long as it moves
    (a stopped projector is given up on after ``stall_s`` without progress)."""
    previous, deadline = None, time.monotonic() + stall_s
    while time.monotonic() < deadline:
        current = await live_checkpoint(conn, live)
        if current is None or current >= seq:
            return
        if current != previous:
            previous, deadline = current, time.monotonic() + stall_s
        await asyncio.sleep(0.1)


async def _digest(url: str, schema: str) -> tuple[str, dict[str, int]]:
    conn = await connect_async(url, schema, autocommit=True)
    try:
        return await read_model_digest(conn), await row_counts(conn)
    finally:
        await conn.close()


async def _compare_and_swap(url: str, report: ReplayReport, projector: ConsumerRuntime[Any],
                            swap: bool,
                            force: bool, stall_timeout_s: float) -> None:
    live, rebuild = report.live_schema, report.rebuild_schema
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await _wait_live(conn, live, report.rebuilt_to_seq, stall_timeout_s)
        await conn.commit()
        # Exclusive side of the swap fence: waits for the live batch in flight, blocks the next.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("swap", live),))
        report.live_checkpoint = await live_checkpoint(conn, live)
        if report.live_checkpoint is not None and report.live_checkpoint > report.rebuilt_to_seq:
            report.rebuilt_to_seq = await projector.run(asyncio.Event(),
                                                        until_seq=report.live_checkpoint)
        comparable = (report.live_checkpoint is not None
                      and report.live_checkpoint >= report.rebuilt_to_seq)
        # Both digests at once, on two connections: each is mostly the server's scan.
        digesting = time.monotonic()
        digests = await asyncio.gather(_digest(url, rebuild),
                                       *([_digest(url, live)] if comparable else []))
        report.rebuild_digest, report.rebuild_counts = digests[0]
        log.info("replay_digested", schema=rebuild, compared=comparable,
                 seconds=round(time.monotonic() - digesting, 2))
        if report.live_checkpoint is None:
            report.note = f"schema {live!r} did not exist: nothing to compare"
        elif not comparable:
            report.note = (f"live projection is behind (checkpoint {report.live_checkpoint} < "
                           f"{report.rebuilt_to_seq}): not compared; is the projector running?")
        else:
            report.live_digest, report.live_counts = digests[1]
            report.verified = report.live_digest == report.rebuild_digest
        if swap and (report.verified is not False or force):
            await _rename(conn, report)
            await conn.commit()
            report.swapped = True
        else:
            if swap:
                report.note = "digests differ: not swapped (use --force to swap anyway)"
            await conn.rollback()


async def _rename(conn: psycopg.AsyncConnection[Any], report: ReplayReport) -> None:
    live, rebuild = report.live_schema, report.rebuild_schema
    if report.live_checkpoint is not None:
        report.old_schema = (f"{live}{OLD_SCHEMA_INFIX}"
                             f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}")
        await rename_schema(conn, live, report.old_schema)
    await rename_schema(conn, rebuild, live)


async def drop_old_schemas(config: Config, keep: int = 0) -> list[str]:
    """Drop the schemas earlier swaps left behind (``<schema>_old_<time>``), all but the newest
    ``keep``, and every as-of rebuild (``<schema>_asof_<seq>``); the schemas dropped. Holds
    the replay lock, so it never races a replay that is about to rename one."""
    if keep < 0:
        raise InvalidInput("keep must be 0 or more", field="keep")
    live = config.db_schema
    async with await psycopg.AsyncConnection.connect(database_url_of(config),
                                                     autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)",
                                 (advisory_key("replay", live),))
        row = await cur.fetchone()
        if not row or not row[0]:
            raise Conflict(f"a replay of schema {live!r} is running; clean up after it")
        old = await old_schemas(conn, live)
        doomed = [*await as_of_schemas(conn, live), *old[: max(0, len(old) - keep)]]
        for schema in doomed:
            await drop_schema(conn, schema)
            log.info("old_schema_dropped", schema=schema)
        return doomed
