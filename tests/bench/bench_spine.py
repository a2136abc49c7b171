"""Benchmark of the spine: commands, projection, ingest with embeddings, search.

Run: ``python -m tests.bench.bench_spine [--search-sizes 10000,100000] [--sync always|2m]``

Every figure that has a natural baseline is printed beside it, measured in the same run on the
same servers: gateway command throughput vs raw ``js.publish`` with the same number in flight,
end-to-end ingest vs the embedder's own batched throughput. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Sequence

import nats
import psycopg
from nats.js.api import StorageType, StreamConfig

from libs.embeddings import MiniLMOnnxEmbedder
from tests.bench.auth_cost import measure_auth_cost
from tests.bench.corpus import memory_texts
from tests.bench.harness import (
    BenchSystem,
    percentile,
    progress,
    report_line,
    running_system,
)
from tests.bench.search_bench import run_search_bench

NS = "bench"


async def raw_publish(system: BenchSystem, count: int, inflight: int) -> tuple[float, list[float]]:
    """Raw ``js.publish`` to a same-settings stream: the baseline of the gateway figure."""
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"],
                                     storage=StorageType.FILE, duplicate_window=600))
    payload = b'{"content":"' + b"x" * 500 + b'"}'
    latencies: list[float] = []
    gate = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            await js.publish(f"bench.raw.m{i}", payload, headers={"Nats-Msg-Id": f"raw-{i}"})
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - began
    await nc.close()
    return count / elapsed, latencies


async def send_commands(system: BenchSystem, texts: Sequence[str], inflight: int
                        ) -> tuple[float, list[float], list[tuple[int, float]]]:
    """``remember`` over NATS request-reply; returns rate, latencies, (seq, ack time) pairs."""
    nc = await nats.connect(system.nats.url)
    latencies: list[float] = []
    acks: list[tuple[int, float]] = []
    gate = asyncio.Semaphore(inflight)

    async def one(text: str) -> None:
        async with gate:
            start = time.perf_counter()
            reply = await nc.request(f"mnemos.cmd.{NS}.remember",
                                     json.dumps({"content": text}).encode(), timeout=60)
            done = time.perf_counter()
            body = json.loads(reply.data)
            if not body.get("ok"):
                raise RuntimeError(f"command failed: {body}")
            latencies.append(done - start)
            acks.append((int(body["result"]["seq"]), done))

    began = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    elapsed = time.perf_counter() - began
    await nc.close()
    return len(texts) / elapsed, latencies, acks


def wait_projected(system: BenchSystem, seq: int, timeout_s: float = 3600.0) -> float:
    """Block until the read-model checkpoint reaches ``seq``; returns the time it did."""
    deadline = time.perf_counter() + timeout_s
    last_report = 0.0
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        while time.perf_counter() < deadline:
            at = system.checkpoint(conn)
            now = time.perf_counter()
            if at >= seq:
                return now
            if now - last_report > 10:
                progress(f"projection at seq {at}/{seq}")
                last_report = now
            time.sleep(0.02)  # coarse enough to cost the system nothing, < 0.1% of a phase
    raise TimeoutError(f"projection did not reach {seq}")


async def projection_lag(system: BenchSystem, rate: float, duration_s: float) -> list[float]:
    """Paced commands; lag = time the checkpoint covers an event's seq - time it was acked."""
    texts = memory_texts(int(rate * duration_s), seed=99)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(system.postgres.url, autocommit=True) as conn:
            while not stop.is_set():
                seen.setdefault(system.checkpoint(conn), time.perf_counter())
                time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    nc = await nats.connect(system.nats.url)
    acks: list[tuple[int, float]] = []
    began = time.perf_counter()

    async def one(i: int, text: str) -> None:
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        reply = await nc.request(f"mnemos.cmd.{NS}.remember",
                                 json.dumps({"content": f"lag {text}"}).encode(), timeout=60)
        acks.append((int(json.loads(reply.data)["result"]["seq"]), time.perf_counter()))

    await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
    await nc.close()
    wait_projected(system, max(seq for seq, _ in acks))
    await asyncio.sleep(0.05)
    stop.set()
    poller.join()
    checkpoints = sorted(seen.items())
    lags = []
    for seq, acked in acks:
        covered = next(t for cp, t in checkpoints if cp >= seq)
        lags.append(max(0.0, covered - acked))
    return lags


def catch_up_rate(system: BenchSystem, start_seq: int, end_seq: int) -> tuple[float, int]:
    """Projection rate of a backlog ``start_seq < seq <= end_seq`` once the projector resumes.

    Timed from the first committed batch to the last, so the first batch's embedding (the
    pipeline filling) is outside the window; returns (events/s, events in the window).
    """
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        while (first := system.checkpoint(conn)) <= start_seq:
            time.sleep(0.02)
        began = time.perf_counter()
    done = wait_projected(system, end_seq)
    return (end_seq - first) / (done - began), end_seq - first


def raw_embedder_rate(texts: Sequence[str], repeats: int = 3, sample: int = 1000) -> float:
    """The embedder's own batched throughput (texts/s) in this process: the best of
    ``repeats`` runs over ``sample`` texts, so a stray background task (autovacuum, a page
    flush) never lowers the baseline the ingest figure is divided by."""
    embedder = MiniLMOnnxEmbedder.shared()
    embedder.embed(list(texts[:64]))  # warm up
    batch = list(texts[:sample])
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        embedder.embed(batch)
        best = max(best, len(batch) / (time.perf_counter() - began))
    return best


def ms(value: float) -> str:
    """Seconds as milliseconds."""
    return f"{value * 1000:.1f} ms"


async def main_async(args: argparse.Namespace) -> None:
    with running_system(args.sync) as system:
        progress(f"servers up in {system.workdir} (sync_interval={args.sync})")
        system.start_service("projector")
        system.start_service("command")
        system.wait_gateway()
        report_line("machine", f"{os.cpu_count()} cores; nats sync_interval={args.sync}")

        progress("raw js.publish baseline")
        raw_rate, raw_lat = await raw_publish(system, args.commands, args.inflight)
        progress("gateway commands (projector paused with SIGSTOP to isolate the gateway)")
        system.services["projector"].send_signal(signal.SIGSTOP)
        texts = memory_texts(args.commands, seed=1)
        cmd_rate, cmd_lat, acks = await send_commands(system, texts, args.inflight)
        system.services["projector"].send_signal(signal.SIGCONT)
        report_line(f"raw js.publish ({args.inflight} in flight)",
                    f"{raw_rate:,.0f} msg/s  p50 {ms(percentile(raw_lat, 50))}"
                    f"  p99 {ms(percentile(raw_lat, 99))}")
        report_line(f"gateway remember via NATS ({args.inflight} in flight)",
                    f"{cmd_rate:,.0f} cmd/s  p50 {ms(percentile(cmd_lat, 50))}"
                    f"  p99 {ms(percentile(cmd_lat, 99))}")
        report_line("gateway / raw js.publish throughput", f"{cmd_rate / raw_rate:.2f}")
        wait_projected(system, max(seq for seq, _ in acks))

        progress("raw embedder baseline (system idle)")
        embed_texts = memory_texts(args.ingest, seed=2)
        embed_rate = raw_embedder_rate([f"baseline {t}" for t in embed_texts])
        progress("end-to-end ingest: command -> projected with embedding -> searchable")
        began = time.perf_counter()
        _, _, ingest_acks = await send_commands(system, embed_texts, args.inflight)
        done = wait_projected(system, max(seq for seq, _ in ingest_acks))
        ingest_rate = len(embed_texts) / (done - began)
        embedder = MiniLMOnnxEmbedder.shared()
        report_line(f"raw embedder, batched (MiniLM int8 ONNX, {embedder.workers} workers"
                    f" x chunks of {embedder.chunk})", f"{embed_rate:,.0f} texts/s")
        report_line("end-to-end ingest with embeddings", f"{ingest_rate:,.0f} memories/s")
        report_line("ingest / raw embedder throughput", f"{ingest_rate / embed_rate:.2f}")

        # The projector alone: the backlog is appended while it is stopped, so the gateway,
        # nats-server and this client are idle while it projects (what an operator sees when a
        # projector catches up after an outage). It bounds what end-to-end ingest can reach.
        progress("projector catch-up: backlog appended while the projector is stopped")
        start_seq = max(seq for seq, _ in ingest_acks)
        system.services["projector"].send_signal(signal.SIGSTOP)
        _, _, backlog_acks = await send_commands(
            system, memory_texts(args.ingest, seed=3), args.inflight)
        system.services["projector"].send_signal(signal.SIGCONT)
        catch_up, counted = catch_up_rate(system, start_seq, max(s for s, _ in backlog_acks))
        report_line(f"projector catch-up with embeddings ({counted} events)",
                    f"{catch_up:,.0f} memories/s")
        report_line("catch-up / raw embedder throughput", f"{catch_up / embed_rate:.2f}")

        progress(f"projection lag at {args.lag_rate:.0f} cmd/s for {args.lag_seconds:.0f}s")
        lags = await projection_lag(system, args.lag_rate, args.lag_seconds)
        report_line(f"projection lag at {args.lag_rate:.0f} cmd/s",
                    f"p50 {ms(percentile(lags, 50))}  p99 {ms(percentile(lags, 99))}")

        for size in args.search_sizes:
            await run_search_bench(system, NS, size, send_commands, wait_projected, args.inflight)

        if args.auth_turns:
            system.stop_service("command")
            system.services["projector"].send_signal(signal.SIGSTOP)
            await measure_auth_cost(system, "bench-auth", raw_rate, serial=args.auth_serial,
                                    concurrent=args.commands, inflight=args.inflight,
                                    turns=args.auth_turns)
            system.services["projector"].send_signal(signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--ingest", type=int, default=3000)
    parser.add_argument("--lag-rate", type=float, default=50.0)
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--search-sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[10_000, 100_000])
    parser.add_argument("--sync", default="always")
    parser.add_argument("--auth-turns", type=int, default=2,
                        help="Unsecured/secured gateway pairs for the auth cost (0 = skip).")
    parser.add_argument("--auth-serial", type=int, default=1000,
                        help="Commands sent one at a time per turn for the auth cost.")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
