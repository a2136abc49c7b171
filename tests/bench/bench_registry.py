"""Benchmark of the reasoning layer (prints figures, asserts nothing).

- **through the real service** (``--service``, the default): nats-server, PostgreSQL, the
  projector, the gateway and ``mnemos serve registry_sync`` as processes; 3 providers x 500
  models (OpenAI-compatible in one page, Anthropic and Gemini in pages of 100) plus a
  1,000-row leaderboard over a paged rows API, from local replay servers: wall time from the
  service's start until every event is folded by it and projected, events published; then an
  on-demand ``registry_sync`` with nothing changed and one with 100 models withdrawn; the
  ``route`` operation's latency over HTTP (gateway -> NATS -> registry_sync);
- the core alone: the same sync without bus and database; routing decision p50/p99 over the
  synced registry (~1,500 models); consensus for 5 answers with the offline MiniLM embedder.

Run: ``.venv/bin/python -m tests.bench.bench_registry`` (``--core`` skips the service part).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import psycopg

from libs.embeddings import MiniLMOnnxEmbedder
from libs.llm import ProviderConfig, build_http, build_lister
from services.registry_sync.consensus import Answer, consensus
from services.registry_sync.leaderboard import load_board
from services.registry_sync.routing import RouteRequest, RoutingIndex
from services.registry_sync.state import EMPTY
from services.registry_sync.sync import rank_tick, sync_tick
from tests.bench.harness import percentile, report_line, running_system
from tests.support_http import Recorded, ReplayServer

MODELS = 500
PAGE = 100
ROWS = 1000


def serve(openai: ReplayServer, anthropic: ReplayServer, gemini: ReplayServer,
          board: ReplayServer) -> None:
    openai.add("GET", "/v1/models", Recorded.json({"object": "list", "data": [
        {"id": f"gpt-bench-{i}", "object": "model", "created": 1700000000 + i,
         "owned_by": "system", "context_window": 8192 * (1 + i % 16)} for i in range(MODELS)]}))
    for page in range(MODELS // PAGE):
        data = [{"type": "model", "id": f"claude-bench-{page * PAGE + j}",
                 "display_name": f"Claude Bench {page * PAGE + j}",
                 "created_at": "2025-05-22T00:00:00Z"} for j in range(PAGE)]
        body = {"data": data, "has_more": page < MODELS // PAGE - 1,
                "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        query = {"after_id": f"claude-bench-{page * PAGE - 1}"} if page else None
        anthropic.add("GET", "/v1/models", Recorded.json(body), query=query)
        models = [{"name": f"models/gemini-bench-{page * PAGE + j}",
                   "displayName": f"Gemini Bench {page * PAGE + j}",
                   "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                   "supportedGenerationMethods": ["generateContent", "countTokens"]}
                  for j in range(PAGE)]
        token = f"t{page + 1}" if page < MODELS // PAGE - 1 else None
        gemini.add("GET", "/v1beta/models", Recorded.json(
            {"models": models} | ({"nextPageToken": token} if token else {})),
            query={"pageToken": f"t{page}"} if page else None)
    names = [f"gpt-bench-{i}" for i in range(400)] + [f"claude-bench-{i}" for i in range(300)]
    names += [f"unknown-{i}" for i in range(ROWS - len(names))]
    for offset in range(0, ROWS, PAGE):
        rows = [{"row_idx": offset + j, "row": {
            "model_name": names[offset + j], "rating": 1500 - (offset + j) * 0.3,
            "rating_lower": 1495 - (offset + j) * 0.3, "rating_upper": 1505 - (offset + j) * 0.3,
            "vote_count": 20000 - (offset + j) * 15, "rank": offset + j + 1,
            "category": "overall", "leaderboard_publish_date": "2025-06-10"}}
            for j in range(PAGE)]
        board.add("GET", "/rows", Recorded.json({"rows": rows, "num_rows_total": ROWS}),
                  query={"offset": str(offset)})


async def bench_sync() -> RoutingIndex:
    with ReplayServer() as o, ReplayServer() as a, ReplayServer() as g, ReplayServer() as b:
        serve(o, a, g, b)
        async with httpx.AsyncClient() as client:
            configs = [ProviderConfig(name="openai", kind="openai", base_url=o.url),
                       ProviderConfig(name="anthropic", kind="anthropic", base_url=a.url),
                       ProviderConfig(name="gemini", kind="gemini", base_url=g.url)]
            listers = [build_lister(c, build_http(c, client=client)) for c in configs]
            started = time.perf_counter()
            synced = await sync_tick(EMPTY, listers, date(2025, 6, 11))
            fetched = time.perf_counter()
            board = await load_board(b.url + "/rows", client, rows_api_params={})
            ranked = rank_tick(synced.state, board, source="arena", category="overall",
                               aliases={})
            done = time.perf_counter()
    payload = ranked.payloads[0]
    print(f"sync: 3 providers x {MODELS} models: {(fetched - started) * 1000:.0f} ms, "
          f"{len(synced.payloads)} payloads; leaderboard {ROWS} rows in {board.pages} pages: "
          f"{(done - fetched) * 1000:.0f} ms, {len(payload.entries)} matched, "  # type: ignore[union-attr]
          f"{payload.unmatched} unmatched; total {(done - started) * 1000:.0f} ms")  # type: ignore[union-attr]
    return RoutingIndex(ranked.state)


def bench_routing(index: RoutingIndex) -> None:
    requests = [RouteRequest(profile=p, context_tokens=c)
                for p in ("cheap", "balanced", "best") for c in (0, 50_000, 200_000)]
    for request in requests:
        index.route(request)
    timings, cpu = [], []
    for i in range(3000):
        started, started_cpu = time.perf_counter(), time.process_time()
        index.route(requests[i % len(requests)])
        timings.append((time.perf_counter() - started) * 1e6)
        cpu.append((time.process_time() - started_cpu) * 1e6)
    timings.sort()
    cpu.sort()
    # Wall time includes preemption by other processes on a shared machine; CPU time does not.
    print(f"routing over {len(index.keys)} models: wall p50 {statistics.median(timings):.0f} us,"
          f" p99 {timings[int(len(timings) * 0.99)]:.0f} us; cpu p50 {statistics.median(cpu):.0f}"
          f" us, p99 {cpu[int(len(cpu) * 0.99)]:.0f} us")


def bench_consensus() -> None:
    embedder = MiniLMOnnxEmbedder.shared()
    answers = [
        Answer(key="a/1", text="The capital of Australia is Canberra. It was chosen in 1908 "
               "as a compromise between Sydney and Melbourne."),
        Answer(key="b/2", text="Canberra is Australia's capital, picked as a compromise "
               "between the two largest cities."),
        Answer(key="c/3", text="Australia's capital city is Canberra."),
        Answer(key="d/4", text="Sydney is the capital of Australia."),
        Answer(key="e/5", text="It is Canberra, located in the Australian Capital Territory."),
    ]
    consensus(answers, embedder.embed)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        result = consensus(answers, embedder.embed, question="What is Australia's capital?")
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    print(f"consensus, 5 answers (embedding included): median {statistics.median(timings):.1f}"
          f" ms, max {timings[-1]:.1f} ms; reached={result.reached} answer={result.answer_key}"
          f" agreement={result.agreement:.2f}")


def _registry_file(path: Path, o: ReplayServer, a: ReplayServer, g: ReplayServer,
                   b: ReplayServer) -> None:
    providers = [{"name": "openai", "kind": "openai", "base_url": o.url},
                 {"name": "anthropic", "kind": "anthropic", "base_url": a.url},
                 {"name": "gemini", "kind": "gemini", "base_url": g.url}]
    path.write_text(json.dumps({"providers": providers, "leaderboard": b.url + "/rows",
                                "leaderboard_rows_api": {}, "tick_check_s": 0.1}))


def _counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM mnemos.registry_models),"
            " (SELECT count(*) FROM mnemos.registry_rankings),"
            " (SELECT count(*) FROM mnemos.registry_events)").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def _wait_projected(url: str, events: int, timeout_s: float = 300) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error):
            if _counts(url)[2] >= events:
                return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"{events} registry events not projected")


def _route_ready(http: httpx.Client, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get("/v1/bench/route").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError("registry_sync did not answer route")


def bench_service() -> None:
    with ReplayServer() as o, ReplayServer() as a, ReplayServer() as g, ReplayServer() as b, \
            running_system() as system:
        serve(o, a, g, b)
        registry = system.workdir / "registry.json"
        _registry_file(registry, o, a, g, b)
        system.start_service("projector")
        system.start_service("command")
        system.wait_gateway()
        url = system.postgres.url
        started = time.perf_counter()
        system.start_service("registry_sync", MNEMOS_REGISTRY_CONFIG=str(registry))
        http = httpx.Client(base_url=f"http://127.0.0.1:{system.config.http_port}", timeout=60)
        first = 3 * MODELS + 3 + 1  # listed, synced per provider, one ranking
        projected = _wait_projected(url, first)
        _route_ready(http)
        models, rankings, events = _counts(url)
        report_line("service: first sync 3x500 models + 1,000-row board (start->projected)",
                    f"{(projected - started) * 1000:.0f} ms, {events} events, {models} models,"
                    f" {rankings} ranking")
        quiet = http.post("/v1/registry/sync", json={"target": "all"}).json()
        report_line("service: on-demand sync, nothing changed",
                    f"{quiet['duration_s'] * 1000:.0f} ms, {quiet['events']} events")
        o.add("GET", "/v1/models", Recorded.json({"object": "list", "data": [
            {"id": f"gpt-bench-{i}", "object": "model", "created": 1700000000 + i,
             "owned_by": "system", "context_window": 8192 * (1 + i % 16)}
            for i in range(MODELS - 100)]}))
        changed = http.post("/v1/registry/sync", json={"target": "providers"}).json()
        report_line("service: on-demand sync, 100 models withdrawn",
                    f"{changed['duration_s'] * 1000:.0f} ms, {changed['events']} events "
                    f"{changed['by_type']}")
        timings = []
        for i in range(300):
            params = {"profile": ("cheap", "balanced", "best")[i % 3],
                      "context_tokens": (0, 50_000, 200_000)[i % 3]}
            t0 = time.perf_counter()
            response = http.get("/v1/bench/route", params=params)
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.text
        report_line("service: route over HTTP (gateway->NATS->registry_sync), 300 calls",
                    f"p50 {percentile(timings, 50):.1f} ms, p99 {percentile(timings, 99):.1f} ms")
        http.close()


def main() -> None:
    if "--core" not in sys.argv:
        bench_service()
    index = asyncio.run(bench_sync())
    bench_routing(index)
    bench_consensus()


if __name__ == "__main__":
    main()
