"""The cost of authentication + authorization at the gateway (issue 14), for ``bench_spine``.

The same gateway process is started unsecured and secured in turn (``MNEMOS_AUTH=off``/``on``,
alternating, so drift on a noisy machine falls on both sides), against the same servers. Each
turn sends ``remember`` over NATS request-reply: one at a time (the per-command latency, whose
median difference is the cost of the checks) and with ``inflight`` in flight (throughput, as a
ratio to raw ``js.publish`` measured in the same run). The secured commands carry an API key
with a write grant in the header; the key is issued once, as an event, like ``mnemos keys``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence

import nats

from libs.auth.key_store import API_KEY_FOLD, issue_key
from libs.events import CREDENTIAL_HEADER
from libs.events.security import Grant
from libs.eventstore import JetStreamEventStore
from libs.runtime.nats_client import ensure_streams
from tests.bench.corpus import memory_texts
from tests.bench.harness import BenchSystem, percentile, progress, report_line

__all__ = ["measure_auth_cost"]


async def _issue_writer_key(system: BenchSystem, ns: str) -> str:
    nc = await nats.connect(system.nats.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, system.config)
        issued, _ = await issue_key(JetStreamEventStore(js, API_KEY_FOLD), principal="bench",
                                    kind="agent", grants=(Grant.parse(f"write:{ns}"),),
                                    by="bench")
        return issued.key
    finally:
        await nc.close()


async def _commands(system: BenchSystem, ns: str, texts: Sequence[str], inflight: int,
                    key: str | None) -> tuple[float, list[float]]:
    nc = await nats.connect(system.nats.url)
    headers = {CREDENTIAL_HEADER: f"Bearer {key}"} if key else None
    latencies: list[float] = []
    gate = asyncio.Semaphore(inflight)

    async def one(text: str) -> None:
        async with gate:
            start = time.perf_counter()
            reply = await nc.request(f"mnemos.cmd.{ns}.remember",
                                     json.dumps({"content": text}).encode(), timeout=60,
                                     headers=headers)
            latencies.append(time.perf_counter() - start)
            if not json.loads(reply.data).get("ok"):
                raise RuntimeError(f"command failed: {reply.data[:300]!r}")

    began = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    rate = len(texts) / (time.perf_counter() - began)
    await nc.close()
    return rate, latencies


async def measure_auth_cost(system: BenchSystem, ns: str, raw_rate: float, *, serial: int,
                            concurrent: int, inflight: int, turns: int = 2) -> None:
    """Print the secured-vs-unsecured figures; the gateway is left stopped."""
    key = await _issue_writer_key(system, ns)
    p50: dict[str, list[float]] = {"off": [], "on": []}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    seed = 100
    for turn in range(turns):
        for mode in ("off", "on"):
            progress(f"auth cost: turn {turn + 1}/{turns}, gateway with MNEMOS_AUTH={mode}")
            system.start_service("command", MNEMOS_AUTH=mode)
            system.wait_gateway()
            credential = key if mode == "on" else None
            await _commands(system, ns, memory_texts(50, seed=seed), 1, credential)  # warm-up
            _, lat = await _commands(system, ns, memory_texts(serial, seed=seed + 1), 1,
                                     credential)
            rate, _ = await _commands(system, ns, memory_texts(concurrent, seed=seed + 2),
                                      inflight, credential)
            system.stop_service("command")
            p50[mode].append(percentile(lat, 50))
            rates[mode].append(rate)
            seed += 3
    off, on = statistics.median(p50["off"]), statistics.median(p50["on"])
    report_line("remember via NATS, one at a time: unsecured p50",
                f"{off * 1000:.3f} ms  (turns: {', '.join(f'{v * 1000:.3f}' for v in p50['off'])})")
    report_line("remember via NATS, one at a time: secured p50",
                f"{on * 1000:.3f} ms  (turns: {', '.join(f'{v * 1000:.3f}' for v in p50['on'])})")
    report_line("authentication + authorization per command (p50 diff)",
                f"{(on - off) * 1000:+.3f} ms")
    secured_rate = statistics.median(rates["on"])
    report_line(f"secured gateway ({inflight} in flight)", f"{secured_rate:,.0f} cmd/s  "
                f"(unsecured {statistics.median(rates['off']):,.0f} cmd/s)")
    report_line("secured gateway / raw js.publish throughput", f"{secured_rate / raw_rate:.2f}")
