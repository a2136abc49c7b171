"""The compressor as a service (issue 13): figures only, no asserts.

Run: ``python -m tests.bench.bench_compressor [--rate 50] [--duration 20] [--memories 10000]``.

1. **Engines on the corpus** (``tests/fixtures/compressor``, >= 200 hand-written and sourced
   texts): compressions/s per engine and for the whole offline contest, median ratio, span
   recall, median quality components; and the pure assembly over 10k ranked memories
   (``tests.bench.bench_compressor_engines``, whose table this prints first).
2. **On-write lag** on a real system (nats-server, Postgres, ``mnemos serve`` processes for the
   gateway, the projector and the compressor): ``remember`` commands paced at ``--rate``/s for
   ``--duration`` s, every text a corpus text made unique; lag = from the command's answer to
   its receipt being projected (``memory_compressions``), p50/p95/p99 (the compressor's own
   share is the ``mnemos_compressor_on_write_lag_seconds`` histogram on its metrics port).
3. **Context assembly** through the gateway (HTTP ``POST /v1/{ns}/context``: gateway ->
   compressor over NATS -> hybrid search + stored receipts + assembly) at ``--memories``
   memories with a 2,000-token budget, p50/p95 over ``--queries`` tasks, and the largest
   ``used_tokens`` seen (never above the budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import psycopg

from libs.events import (
    Actor,
    MemoryCreated,
    MemoryCreatedData,
    content_hash,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
    new_memory_id,
    version_id,
)
from tests.bench import bench_compressor_engines
from tests.bench.cpu import cpu_window
from tests.bench.harness import BenchSystem, percentile, progress, report_line, running_system

NS = "bench"
BUDGET = 2_000


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def unique_texts(count: int, seed: int) -> list[str]:
    """Corpus texts long enough to be compressed (>= 400 characters), each made unique by a
    trailing reference line (distinct embeddings)."""
    base = [t for t in bench_compressor_engines.load_texts() if len(t) >= 400]
    rng = random.Random(seed)
    return [f"{rng.choice(base)}\n\nRef: BENCH-{seed}-{i:06d}." for i in range(count)]


def _receipt_times(system: BenchSystem, seen: dict[str, float], stop: threading.Event) -> None:
    """First time each memory's receipt is projected (polled, incremental by seq)."""
    last = 0
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT memory_id, seq FROM mnemos.memory_compressions WHERE seq > %s"
                " ORDER BY seq", (last,), prepare=False).fetchall()
            now = time.perf_counter()
            for memory_id, seq in rows:
                seen.setdefault(str(memory_id), now)
                last = max(last, int(str(seq)))
            time.sleep(0.02)  # 20 ms resolution; polling faster costs the system a tenth of a core


async def warm_up(system: BenchSystem) -> None:
    """Wait until the compressor answers and has compressed one memory (its tokenizer and
    consumer are up), so the lag figures measure steady work, not a start."""
    base = f"http://127.0.0.1:{system.config.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = (await http.post(f"/v1/{NS}/memories", json={
            "content": unique_texts(1, seed=10)[0]})).json()
        while True:
            response = await http.get(f"/v1/{NS}/memories/{created['memory_id']}/receipts")
            if response.status_code == 200 and response.json()["compressions"]:
                return
            await asyncio.sleep(0.2)


async def on_write_lag(system: BenchSystem, rate: float, duration_s: float
                       ) -> tuple[list[float], list[float]]:
    """Paced ``remember`` commands; lags from the command's answer to its receipt stored in
    the stream (seen by a plain subscriber) and to its receipt projected. Prints the CPU time
    of each part of the system from the first command until the last receipt is projected."""
    texts = unique_texts(int(rate * duration_s), seed=11)
    seen: dict[str, float] = {}
    stored: dict[str, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=_receipt_times, args=(system, seen, stop), daemon=True)
    poller.start()
    nc = await nats.connect(system.nats.url)

    async def on_event(msg: Any) -> None:
        if b'"type":"MemoryCompressed"' in msg.data:
            stored.setdefault(msg.subject.rsplit(".", 1)[-1], time.perf_counter())

    await nc.subscribe(f"mnemos.evt.{NS}.memory.*", cb=on_event)
    acks: dict[str, float] = {}
    cpu = cpu_window(system)
    cpu.start()
    began = time.perf_counter()

    async def one(i: int, text: str) -> None:
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        reply = await nc.request(f"mnemos.cmd.{NS}.remember",
                                 json.dumps({"content": text}).encode(), timeout=60)
        acks[json.loads(reply.data)["result"]["memory_id"]] = time.perf_counter()

    await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
    deadline = time.monotonic() + 600
    while not set(acks) <= set(seen) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - began
    spent = cpu.stop()
    report_line(f"cpu from first command to last receipt projected ({wall:.1f} s)",
                f"{len(texts)} memories")
    for name, value in cpu.lines(wall, len(texts)):
        report_line(name, value)
    system_ms = sum(v for k, v in spent.items() if "bench" not in k) * 1000 / len(texts)
    report_line("  ceiling: cores / system cpu per memory (bench excluded)",
                f"{(os.cpu_count() or 1) * 1000 / system_ms:.0f} memories/s "
                f"({system_ms:.0f} ms/memory)")
    await nc.close()
    stop.set()
    poller.join()
    return ([max(0.0, stored[m] - t) for m, t in acks.items() if m in stored],
            [max(0.0, seen[m] - t) for m, t in acks.items() if m in seen])


async def populate(system: BenchSystem, count: int) -> None:
    """``count`` memories appended straight to the stream (the gateway's work is not what is
    measured here), then waited for until each has its receipt projected."""
    nc = await nats.connect(system.nats.url)
    js = nc.jetstream()
    gate = asyncio.Semaphore(256)

    async def one(text: str) -> None:
        command_id, memory_id = new_command_id(), new_memory_id()
        digest = content_hash(text)
        event = MemoryCreated(
            id=derive_event_id(NS, command_id), schema=MemoryCreated.SCHEMA, ns=NS,
            aggregate="memory", aggregate_id=memory_id, actor=Actor(principal="bench"),
            command_id=command_id, correlation_id=command_id, at=(now := datetime.now(UTC)),
            data=MemoryCreatedData(memory_id=memory_id, kind="note", content=text,
                                   content_hash=digest, occurred_at=now,
                                   version_id=version_id(memory_id, digest, {}, [])))
        async with gate:
            await js.publish(event_subject(NS, "memory", memory_id), encode_event(event),
                             headers={"Nats-Msg-Id": event.id}, timeout=30)

    await asyncio.gather(*(one(t) for t in unique_texts(count, seed=12)))
    await nc.close()
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        last_report = 0.0
        while True:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM mnemos.memories WHERE ns = %s),"
                " (SELECT count(DISTINCT memory_id) FROM mnemos.memory_compressions"
                " WHERE ns = %s)", (NS, NS), prepare=False).fetchone()
            memories, compressed = (int(str(v)) for v in row) if row else (0, 0)
            if compressed >= count:
                return
            if time.monotonic() - last_report > 15:
                progress(f"populated {memories}, compressed {compressed} of {count}")
                last_report = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251 - the bench has nothing else to do meanwhile


async def context_latency(system: BenchSystem, queries: int
                          ) -> tuple[list[float], list[float], int, list[int], list[int]]:
    """Sequential context requests through the gateway, each after a plain ``search`` of the
    same task (k = 20, the baseline: the context's own search); latencies of both, max used
    tokens, pieces and left-out counts."""
    words = [re.findall(r"[A-Za-z]{4,}", t) for t in bench_compressor_engines.load_texts()]
    rng = random.Random(5)
    base = f"http://127.0.0.1:{system.config.http_port}"
    samples: list[float] = []
    searches: list[float] = []
    used, pieces, left = 0, [], []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for i in range(queries + 5):
            pool = rng.choice([w for w in words if len(w) >= 6])
            task = " ".join(rng.sample(pool, 6))
            started = time.perf_counter()
            found = await http.get(f"/v1/{NS}/search", params={"q": task, "k": 20})
            searched = time.perf_counter() - started
            found.raise_for_status()
            if i >= 5:
                searches.append(searched)
            started = time.perf_counter()
            response = await http.post(f"/v1/{NS}/context", json={
                "task": task, "purpose": "summary", "budget": BUDGET})
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            view = response.json()
            if i >= 5:  # the first ones warm the embedder and the pools up
                samples.append(elapsed)
                used = max(used, int(view["used_tokens"]))
                pieces.append(len(view["pieces"]))
                left.append(len(view["left_out"]))
    return samples, searches, used, pieces, left


def embedding_cost(count: int = 48) -> tuple[float, int]:
    """CPU ms per text of the projector's embedder (MiniLM ONNX, here on one thread) on the
    lag texts, and their median token count: the floor of a memory's projection cost."""
    from tokenizers import Tokenizer

    from libs.embeddings.minilm import MAX_TOKENS, TOKENIZER_PATH, MiniLMOnnxEmbedder

    embedder = MiniLMOnnxEmbedder(workers=1)
    texts = unique_texts(count, seed=13)
    embedder.embed(texts[:16])
    started = time.process_time()
    embedder.embed(texts)
    per_text = (time.process_time() - started) * 1000 / count
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokens = sorted(len(e.ids) for e in tokenizer.encode_batch(texts))
    return per_text, tokens[len(tokens) // 2]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False
                              ).stdout.strip()
    except OSError:
        return "?"


async def main_async(args: argparse.Namespace) -> None:
    with running_system() as system:
        progress(f"servers up in {system.workdir}")
        system.start_service("projector", PGAPPNAME="mnemos-projector")
        system.start_service("command", PGAPPNAME="mnemos-gateway")
        system.start_service("compressor", PGAPPNAME="mnemos-compressor",
                             MNEMOS_COMPRESS_MIN_TOKENS="40",
                             MNEMOS_LOG_LEVEL=os.environ.get("BENCH_COMPRESSOR_LOG", "warning"))
        system.wait_gateway()
        report_line("machine", f"{os.cpu_count()} cores; {uptime()}")
        per_text, tokens = embedding_cost()
        report_line(f"embedding, lag texts (median {tokens} tokens), 1 thread",
                    f"{per_text:.0f} ms cpu/text: {args.rate:g}/s needs "
                    f"{per_text * args.rate / 1000:.1f} cores for embedding alone")
        await warm_up(system)
        progress(f"on-write lag: {args.rate}/s for {args.duration} s")
        stored, lags = await on_write_lag(system, args.rate, args.duration)
        for label, values in (("receipt stored in the stream", stored),
                              ("receipt projected", lags)):
            report_line(f"on-write lag, command answered -> {label} ({len(values)} at "
                        f"{args.rate:g}/s)", f"p50 {ms(percentile(values, 50))}  p95 "
                        f"{ms(percentile(values, 95))}  p99 {ms(percentile(values, 99))}  max "
                        f"{ms(max(values) if values else float('nan'))}")
        if args.lag_only:
            return
        progress(f"populating {args.memories} memories (embedded and compressed)")
        started = time.perf_counter()
        await populate(system, max(0, args.memories - len(lags)))
        report_line("populate: projected with embeddings and compressed",
                    f"{args.memories - len(lags)} in {time.perf_counter() - started:.0f} s")
        samples, searches, used, pieces, left = await context_latency(system, args.queries)
        report_line("search via gateway, same tasks, k 20 (baseline)",
                    f"p50 {ms(percentile(searches, 50))}  p95 {ms(percentile(searches, 95))}")
        report_line(f"context via gateway at {args.memories} memories, budget {BUDGET} "
                    f"({len(samples)} tasks)",
                    f"p50 {ms(percentile(samples, 50))}  p95 {ms(percentile(samples, 95))}  "
                    f"max used_tokens {used}")
        report_line("context pieces / left out per task (median)",
                    f"{sorted(pieces)[len(pieces) // 2]} / {sorted(left)[len(left) // 2]}")
        report_line("machine after", uptime())
        if os.environ.get("BENCH_COMPRESSOR_LOG"):
            sys.stderr.write((system.workdir / "compressor.log").read_text()[-20000:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="remember commands per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of paced ingest")
    parser.add_argument("--memories", type=int, default=10_000,
                        help="memories in the namespace for the context figures")
    parser.add_argument("--queries", type=int, default=100, help="context requests timed")
    parser.add_argument("--skip-engines", action="store_true", help="only the service figures")
    parser.add_argument("--lag-only", action="store_true",
                        help="only the on-write lag (no population, no context figures)")
    args = parser.parse_args(argv)
    if not args.skip_engines:
        bench_compressor_engines.main(["--repeat", "2"])
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
