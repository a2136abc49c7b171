"""Benchmark of the audit chain: extension rate and full verification rate, with RSS.

Run: ``python -m tests.bench.bench_auditor [--events 100000] [--sync always|2m]``

Every figure is printed beside its baseline, measured in the same run on the same servers:

- raw consumer throughput: a durable pull consumer fetching the same stream with the same
  batch size and cumulative acks, doing nothing with the messages;
- chain extension: the auditor service (its own process, ``mnemos serve auditor``) linking
  the whole stream into Postgres, timed from its first stored link to the last;
- full verification: ``verify --full`` in a child process (so its peak RSS is its own),
  recomputing every link from the stream and comparing with the stored chain.

Nothing is asserted; the targets (DESIGN.md section 5, issue text) are >= 20k events/s for
extension and < 200 MB RSS for verifying 1M events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import msgspec
import nats
import psycopg
from nats.js.api import AckPolicy

from libs.consumer.deliveries import stream_seq_of
from libs.consumer.stream import BatchPuller
from libs.events import EVENTS_STREAM, durable_consumer_config
from libs.runtime.config import load_config
from libs.runtime.nats_client import ensure_streams
from services.auditor.store import audit_schema
from services.auditor.writer import BATCH
from tests.bench.harness import BenchSystem, progress, report_line, running_system
from tests.support.auditor import bulk_publish


async def load(system: BenchSystem, count: int) -> None:
    """Append ``count`` realistic events."""
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    await ensure_streams(js, system.config)
    started = time.monotonic()
    await bulk_publish(nc, js, count, progress=lambda n: progress(f"loaded {n:,} events"))
    progress(f"loaded {count:,} events in {time.monotonic() - started:.1f}s")
    await nc.close()


async def raw_consumer(system: BenchSystem, count: int, batch_puller: bool) -> float:
    """Events/s of a do-nothing durable pull consumer over the same stream.

    ``batch_puller``: pull with the auditor's :class:`BatchPuller` (one request per batch, a
    callback subscription) instead of nats-py's ``fetch``; both are printed.
    """
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    name = "bench_raw_puller" if batch_puller else "bench_raw_fetch"
    config = durable_consumer_config(name, max_ack_pending=2 * BATCH)
    config.ack_policy = AckPolicy.ALL
    await js.add_consumer(EVENTS_STREAM, config)
    puller = BatchPuller(nc, EVENTS_STREAM, name)
    sub = await js.pull_subscribe_bind(name, stream=EVENTS_STREAM)
    started = time.monotonic()
    seen = 0
    while seen < count:
        if batch_puller:
            msgs = await puller.pull(BATCH, 5.0)
            for msg in msgs:
                _ = stream_seq_of(msg.reply), msg.data
        else:
            msgs = await sub.fetch(BATCH, timeout=5)
            for msg in msgs:
                _ = msg.metadata.sequence.stream, msg.data
        seen += len(msgs)
        await msgs[-1].ack()
    elapsed = time.monotonic() - started
    await puller.close()
    await js.delete_consumer(EVENTS_STREAM, name)
    await nc.close()
    return count / elapsed


def chain_extension(system: BenchSystem, count: int) -> float:
    """Start the auditor process; events/s from its first stored link to link ``count``."""
    system.start_service("auditor")
    query = f"SELECT seq FROM {audit_schema(system.config.db_schema)}.audit_head"
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        def head() -> int:
            try:
                row = conn.execute(query, prepare=False).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
            return int(str(row[0])) if row else 0

        while head() == 0:
            time.sleep(0.01)
        first, started = head(), time.monotonic()
        last_report = started
        while (now_head := head()) < count:
            if time.monotonic() - last_report >= 2:
                last_report = time.monotonic()
                rate = (now_head - first) / (last_report - started)
                progress(f"chain at {now_head:,}/{count:,} ({rate:,.0f} events/s)")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    system.stop_services()
    return (count - first) / elapsed


def verify_in_child(system: BenchSystem, full: bool) -> dict[str, Any]:
    """Run verification in a child process; return its report plus its peak RSS."""
    args = [sys.executable, "-m", "tests.bench.bench_auditor", "--verify-child"]
    if full:
        args.append("--full")
    child = subprocess.run(args, env=system.env, stdout=subprocess.PIPE, check=True)
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def verify_child(full: bool) -> None:
    """Child side: verify, print the report and ``ru_maxrss`` as JSON on stdout."""
    from libs.events import Progress
    from libs.runtime.logging import configure_logging
    from services.auditor.verify import verify

    configure_logging("console", "warning")
    def on_progress(p: Progress) -> None:
        progress(f"verify at seq {p.seq:,}/{p.total:,} ({p.events_per_s:,.0f} events/s)")

    report = asyncio.run(verify(load_config(), full=full, progress=on_progress))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"report": msgspec.to_builtins(report), "max_rss_mb": round(rss_mb, 1)}
    sys.stdout.write(json.dumps(out) + "\n")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sync", default="always", help="nats-server sync_interval")
    parser.add_argument("--verify-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.full)
        return
    with running_system(args.sync) as system:
        asyncio.run(load(system, args.events))
        progress("measuring raw consumer throughput")
        raw_fetch = asyncio.run(raw_consumer(system, args.events, batch_puller=False))
        raw = asyncio.run(raw_consumer(system, args.events, batch_puller=True))
        progress(f"raw consumer: {raw:,.0f} events/s (nats-py fetch: {raw_fetch:,.0f}); "
                 "starting the auditor")
        extension = chain_extension(system, args.events)
        progress(f"chain extension: {extension:,.0f} events/s; verifying in full")
        full = verify_in_child(system, full=True)
        incremental = verify_in_child(system, full=False)
    report = full["report"]
    report_line("machine", f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    report_line("events in the stream", f"{args.events:,} (nats sync_interval {args.sync})")
    report_line("raw consumer, auditor's BatchPuller (baseline)", f"{raw:,.0f} events/s")
    report_line("raw consumer, nats-py fetch (reference)", f"{raw_fetch:,.0f} events/s")
    report_line("chain extension (auditor process)",
                f"{extension:,.0f} events/s  ({extension / raw:.2f}x raw consumer)")
    report_line("full verification", f"{report['events_per_s']:,.0f} events/s  "
                f"({report['events_per_s'] / raw:.2f}x raw consumer), "
                f"{report['verified']:,} links, ok={report['ok']}")
    report_line("full verification peak RSS (child process)", f"{full['max_rss_mb']:.1f} MB")
    inc = incremental["report"]
    report_line("incremental verification right after",
                f"{inc['verified']:,} links in {inc['duration_s']:.2f}s, ok={inc['ok']}")


if __name__ == "__main__":
    main()
