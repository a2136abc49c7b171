"""Benchmark of ``mnemos replay`` beside the raw consume rate of the same stream, and recovery.

Run: ``python -m tests.bench.bench_replay [--events 100000] [--distinct 2000] [--backlog 20000]
[--baseline-checkout DIR]`` (DIR: another checkout, e.g. a git worktree of an older commit with
its own .venv, whose replay runs on the same stream first)

On a real system (nats-server, PostgreSQL, the projector as its own process), in one run:

1. append ``--events`` memory creations (their contents cycle over ``--distinct`` texts), then
   start the projector and let it project them once: that warms the embedding cache, so every
   later vector is a cache hit, and gives the live read models the replay is compared with;
2. the raw consume rate of the same stream: an ephemeral pull consumer reading every message
   with the shared batch puller (``libs.consumer.stream.read_stream``), doing nothing else;
3. ``services.projector.replay.replay`` (no swap) with the digest check against live: its rate,
   the replay/raw ratio and whether the rebuilt digest equals the live one;
4. the server floor (:func:`server_floor`): the same rows written by Postgres alone, then the
   bulk load's finish; with one digest, the fastest any replay could be on this machine;
5. recovery: append ``--backlog`` more events while the projector runs, SIGKILL it while it is
   behind, restart it and time from the restart to its checkpoint reaching the stream's end.

Figures are printed, nothing is asserted (issue 17 targets: replay >= 10k events/s and >= 0.3 of
the raw consume rate with a warm cache; the rebuilt digest equals the original).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import nats
import psycopg
from psycopg import sql

from libs.consumer.stream import read_stream, stream_bounds
from libs.embeddings import MiniLMOnnxEmbedder
from libs.readmodel.bulk_load import finish_bulk_load, start_bulk_load
from libs.readmodel.schema import drop_schema, prepare_schema
from libs.runtime.database import connect_async, search_path_options
from libs.runtime.logging import configure_logging
from libs.runtime.nats_client import ensure_streams
from services.projector.replay import FINISH_CONNECTIONS, ReplayReport, replay
from tests.bench.harness import BenchSystem, progress, report_line, running_system
from tests.support.auditor import bulk_publish

_TOPICS = ("dark mode", "short answers", "the Lisbon office", "vegetarian food", "Rust",
           "morning meetings", "the quarterly report", "cycling to work", "jazz", "tea")


def content_of(distinct: int) -> Callable[[int], str]:
    """Contents cycling over ``distinct`` texts (the embedding cache is keyed by content)."""
    def make(index: int) -> str:
        k = index % distinct
        return (f"Note {k}: the user mentioned {_TOPICS[k % len(_TOPICS)]} and "
                f"{_TOPICS[(k // len(_TOPICS)) % len(_TOPICS)]} in session {k // 100}.")
    return make


async def append(system: BenchSystem, count: int, distinct: int) -> int:
    """Append ``count`` memory creations; return the stream's last sequence."""
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    await ensure_streams(js, system.config)
    started = time.monotonic()
    await bulk_publish(nc, js, count, content_of=content_of(distinct),
                       progress=lambda n: progress(f"appended {n:,} events"))
    _, last = await stream_bounds(js)
    await nc.close()
    progress(f"appended {count:,} events in {time.monotonic() - started:.1f}s")
    return last


def wait_checkpoint(system: BenchSystem, seq: int, label: str, timeout_s: float = 1800.0
                    ) -> float:
    """Wait for the live checkpoint to reach ``seq`` (progress lines); return the seconds."""
    started = last_line = time.monotonic()
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        while True:
            try:
                at = system.checkpoint(conn)
            except psycopg.errors.UndefinedTable:
                at = 0
            now = time.monotonic()
            if at >= seq:
                return now - started
            if now - started > timeout_s:
                raise TimeoutError(f"{label}: checkpoint {at} < {seq} after {timeout_s}s")
            if now - last_line >= 5:
                last_line = now
                progress(f"{label}: checkpoint {at:,}/{seq:,}")
            time.sleep(0.05)


def checkpoint_now(system: BenchSystem) -> int:
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        return system.checkpoint(conn)


async def raw_consume(system: BenchSystem, last: int) -> float:
    """Events/s of reading the stream ``1..last`` and nothing else."""
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    started = time.monotonic()
    seen = 0
    async for message in read_stream(nc, js, 1, last):
        _ = message.data
        seen += 1
        if seen % 50_000 == 0:
            progress(f"raw read {seen:,}/{last:,}")
    elapsed = time.monotonic() - started
    await nc.close()
    if seen != last:
        progress(f"raw read saw {seen:,} of {last:,} messages")
    return seen / elapsed


async def digest_seconds(system: BenchSystem) -> float:
    """Seconds of one digest + row counts of the live read models (the replay does two)."""
    from libs.readmodel.digest import read_model_digest, row_counts

    conn = await connect_async(system.postgres.url, system.config.db_schema, autocommit=True)
    try:
        started = time.monotonic()
        await read_model_digest(conn)
        await row_counts(conn)
        return time.monotonic() - started
    finally:
        await conn.close()


_FLOOR_TABLES: Final = ("memories", "memory_versions", "memory_branches", "memory_events",
                        "memory_links", "memory_compressions", "command_results")
"""The tables a replay writes row by row, parents first (the lexical ones are recounted)."""


@dataclass(frozen=True)
class ServerFloor:
    """Seconds Postgres alone took to write the rows and finish a bulk load."""

    rows_s: float
    finish_s: float
    tables: dict[str, float]
    """Seconds of each table's ``INSERT ... SELECT``."""

    @property
    def seconds(self) -> float:
        """Rows plus what the bulk load does after them."""
        return self.rows_s + self.finish_s


async def server_floor(system: BenchSystem) -> ServerFloor:
    """What Postgres alone needs to rebuild these read models on this machine, a lower bound
    of any replay with this schema: every live row copied into a fresh migrated schema by one
    ``INSERT ... SELECT`` per table (no client, no stream, no decoding; generated columns,
    unique indexes and foreign keys checked as in a replay), then the bulk load's finish
    (lexical recount, deferred indexes, ANALYZE)."""
    url, live = system.postgres.url, system.config.db_schema
    floor = f"{live}_floor"
    # The floor schema first on the search path: its generated tsvector names its own text
    # search configuration unqualified, as every Mnemos connection resolves it.
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                 options=search_path_options(floor))
    try:
        await drop_schema(conn, floor)
        await asyncio.to_thread(prepare_schema, url, floor, MiniLMOnnxEmbedder.shared().dim)
        deferred = await start_bulk_load(conn, floor)
        started = time.monotonic()
        tables: dict[str, float] = {}
        async with conn.transaction():
            for table in _FLOOR_TABLES:
                table_started = time.monotonic()
                cur = await conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                    " AND attnum > 0 AND NOT attisdropped AND attgenerated = ''"
                    " ORDER BY attnum", (f"{floor}.{table}",), prepare=False)
                columns = sql.SQL(", ").join(sql.Identifier(str(r[0]))
                                            for r in await cur.fetchall())
                await conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                    sql.Identifier(floor, table), columns, columns, sql.Identifier(live, table)),
                    prepare=False)
                tables[table] = time.monotonic() - table_started
        rows_s = time.monotonic() - started
        finishing = [await connect_async(url, floor, autocommit=True)
                     for _ in range(FINISH_CONNECTIONS)]
        try:
            started = time.monotonic()
            await finish_bulk_load(finishing, deferred)
            finish_s = time.monotonic() - started
        finally:
            for each in finishing:
                await each.close()
        await drop_schema(conn, floor)
        return ServerFloor(rows_s, finish_s, tables)
    finally:
        await conn.close()


def baseline_replay(system: BenchSystem, checkout: str) -> tuple[float, bool]:
    """Seconds of ``mnemos replay`` (no swap) run by another checkout's own interpreter, and
    whether it reported matching digests."""
    progress(f"replay by {checkout}")
    started = time.monotonic()
    done = subprocess.run([f"{checkout}/.venv/bin/python", "-m", "mnemos", "replay",
                           "--no-progress"], env={**system.env, "PYTHONPATH": checkout},
                          cwd=checkout, capture_output=True, text=True, timeout=3600, check=False)
    return time.monotonic() - started, "digests match" in done.stdout


def recovery(system: BenchSystem, backlog: int, distinct: int) -> tuple[int, int, float]:
    """Append a backlog while the projector runs, SIGKILL it while behind, restart it.

    Returns ``(checkpoint at the kill, stream end, seconds from restart to checkpoint == end)``.
    """
    end = asyncio.run(append(system, backlog, distinct))
    at_kill = checkpoint_now(system)
    process = system.services.pop("projector")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    at_kill = max(at_kill, checkpoint_now(system))  # a batch may have committed meanwhile
    progress(f"projector SIGKILLed at checkpoint {at_kill:,} (stream end {end:,}); restarting")
    started = time.monotonic()
    system.start_service("projector")
    wait_checkpoint(system, end, "recovery")
    return at_kill, end, time.monotonic() - started


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2_000,
                        help="distinct contents (each is embedded once, when first projected)")
    parser.add_argument("--backlog", type=int, default=None,
                        help="events appended before the SIGKILL (default events / 5)")
    parser.add_argument("--sync", default="always", help="nats-server sync_interval")
    parser.add_argument("--baseline-checkout", default=None,
                        help="another checkout (with its own .venv) whose `mnemos replay` runs "
                        "on the same stream first: the before/after ratio of two versions")
    args = parser.parse_args()
    backlog = args.backlog if args.backlog is not None else max(1, args.events // 5)
    configure_logging("console", "warning")
    with running_system(args.sync) as system:
        last = asyncio.run(append(system, args.events, args.distinct))
        progress("first projection (warms the embedding cache)")
        system.start_service("projector")
        first_s = wait_checkpoint(system, last, "first projection")
        progress(f"projected {last:,} events in {first_s:.1f}s; raw read of the stream")
        raw = asyncio.run(raw_consume(system, last))
        baseline = (baseline_replay(system, args.baseline_checkout)
                    if args.baseline_checkout else None)
        progress(f"raw consume {raw:,.0f} events/s; replay with the digest check")
        report: ReplayReport = asyncio.run(replay(system.config, swap=False, progress=False))
        rate = report.rebuilt_to_seq / report.seconds if report.seconds else float("nan")
        digest_s = asyncio.run(digest_seconds(system))
        progress("the server floor: the same rows written by Postgres alone")
        floor = asyncio.run(server_floor(system))
        progress(f"replay {rate:,.0f} events/s; recovery after SIGKILL under a backlog")
        at_kill, end, recovery_s = recovery(system, backlog, args.distinct)
    load = os.getloadavg()
    report_line("machine", f"{os.cpu_count()} cores, python {sys.version.split()[0]}, "
                f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    report_line("events in the stream (memory creations)",
                f"{last:,} ({args.distinct:,} distinct contents, sync_interval {args.sync})")
    report_line("first projection (projector process start -> end, embeds)",
                f"{last / first_s:,.0f} events/s ({first_s:.1f}s)")
    report_line("raw consume of the same stream (baseline)", f"{raw:,.0f} events/s")
    report_line("replay (warm cache, incl. digest check)",
                f"{rate:,.0f} events/s ({report.seconds:.1f}s), {rate / raw:.2f}x raw")
    if baseline is not None:
        report_line(f"replay of {args.baseline_checkout} on the same stream (CLI)",
                    f"{last / baseline[0]:,.0f} events/s ({baseline[0]:.1f}s, digests match: "
                    f"{baseline[1]}); this tree is {baseline[0] / report.seconds:.2f}x as fast")
    report_line("of which: load (schema, stream -> rows)", f"{report.loaded_s:.1f}s "
                f"({report.rebuilt_to_seq / report.loaded_s:,.0f} events/s)"
                if report.loaded_s else "n/a")
    report_line("          search indexes + lexical statistics after the load",
                f"{report.indexed_s:.1f}s (" + ", ".join(
                    f"{k} {v:.1f}s" for k, v in sorted(report.finish_steps.items(),
                                                        key=lambda kv: -kv[1])[:3]) + ")")
    report_line("          compare (two digests at once) and the rest",
                f"{report.seconds - report.loaded_s - report.indexed_s:.1f}s")
    report_line("one digest + row counts (live, measured after)", f"{digest_s:.1f}s")
    report_line("server floor: rows copied table to table in SQL",
                f"{floor.rows_s:.1f}s (" + ", ".join(
                    f"{k} {v:.1f}s" for k, v in floor.tables.items() if v >= 0.05)
                + f"), then the bulk load's finish {floor.finish_s:.1f}s")
    report_line("          fastest replay possible (floor + one digest)",
                f"{last / (floor.seconds + digest_s):,.0f} events/s; this replay took "
                f"{report.seconds / (floor.seconds + digest_s):.1f}x the floor")
    report_line("rebuilt digest equals the original",
                f"{report.verified} (rebuilt to {report.rebuilt_to_seq:,}, "
                f"live {report.live_checkpoint})")
    report_line("recovery after projector SIGKILL (restart -> end)",
                f"{recovery_s:.1f}s for a backlog of {end - at_kill:,} events "
                f"({(end - at_kill) / recovery_s:,.0f} events/s incl. process start)")


if __name__ == "__main__":
    main()
