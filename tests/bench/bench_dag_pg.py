"""Latency of the version-DAG queries through the query layer, for a memory with 10k versions.

Run: ``python -m tests.bench.bench_dag_pg``. A fresh PostgreSQL gets the projector's schema; the
read-model rows of one memory (10,000 versions: ``main`` with a feature branch merged back every
100 versions; a 200-line document with one line rewritten per version) are written directly, so
the figures measure the queries, not the projector. Measured through
:class:`services.command.application.history.HistoryService` (pooled connections, namespace checks,
graph cache): log pages (first and deep, via cursor), diffs (adjacent and far apart) and the
common ancestor. Figures are printed (p50/p99 over repeated calls), never asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from libs.events import GetCommonAncestor, GetDiff, GetLog
from libs.events.ids import content_hash
from libs.events.versions import version_id
from libs.readmodel.pool import ReadModels
from libs.readmodel.schema import prepare_schema
from services.command.application.history import HistoryService
from tests.bench.harness import percentile, progress, report_line, running_system

NS: Final = "bench"
MEMORY: Final = "0190a8b2-0000-7000-8000-0000000dagpg"
VERSIONS: Final = 10_000
DOC_LINES: Final = 200
FEATURE_EVERY: Final = 100
REPEAT: Final = 200
AT: Final = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR: Final = json.dumps({"principal": "bench"})


def _history() -> tuple[list[tuple[Any, ...]], str]:
    """Version rows (ns, memory_id, version_id, parent_ids, content, hash, seq, origin, branch)
    and the head of ``main``."""
    lines = [f"line {i}\n" for i in range(DOC_LINES)]
    rows: list[tuple[Any, ...]] = []
    head = ""
    feature_base = ""
    for seq in range(1, VERSIONS + 1):
        lines[(seq * 2) % DOC_LINES] = f"line {(seq * 2) % DOC_LINES} rev {seq}\n"
        content = "".join(lines)
        digest = content_hash(content)
        if not head:
            parents: list[str] = []
            origin, branch = "create", "main"
        elif seq % FEATURE_EVERY == 0 and feature_base:
            parents = [head, feature_base]
            origin, branch = "merge", "main"
            feature_base = ""
        elif seq % FEATURE_EVERY == FEATURE_EVERY // 2:
            parents, origin, branch = [head], "commit", "feature"
            feature_base = version_id(MEMORY, digest, {}, parents)
            rows.append((NS, MEMORY, feature_base, parents, content, digest, seq, origin, branch))
            continue  # a feature commit does not move main
        else:
            parents, origin, branch = [head], "revise", "main"
        head = version_id(MEMORY, digest, {}, parents)
        rows.append((NS, MEMORY, head, parents, content, digest, seq, origin, branch))
    return rows, head


def _seed(url: str, schema: str) -> tuple[list[str], str]:
    rows, head = _history()
    by_id = {row[2]: row for row in rows}
    with psycopg.connect(url) as conn:
        conn.execute(f"SET search_path TO {schema}, public")
        top = by_id[head]
        conn.execute(
            "INSERT INTO memories (ns, memory_id, kind, content, content_hash, head_version_id,"
            " version_count, created_by, updated_by, created_command_id, created_at,"
            " updated_at, revision) VALUES (%s, %s, 'note', %s, %s, %s, %s, %s, %s, 'bench',"
            " %s, %s, %s)",
            (NS, MEMORY, top[4], top[5], head, len(rows), ACTOR, ACTOR, AT, AT, VERSIONS),
        )
        with conn.cursor().copy(
            "COPY memory_versions (ns, memory_id, version_id, parent_ids, content, content_hash,"
            " seq, origin, branch, actor, command_id, event_id, created_at) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((*row, ACTOR, f"c{row[6]}", f"e{row[6]}", AT))
        conn.execute(
            "INSERT INTO memory_branches (ns, memory_id, branch, head_version_id,"
            " from_version_id, created_seq, updated_seq, created_at, updated_at, updated_by)"
            " VALUES (%s, %s, 'main', %s, %s, 1, %s, %s, %s, %s)",
            (NS, MEMORY, head, rows[0][2], VERSIONS, AT, AT, ACTOR),
        )
    return [row[2] for row in rows], head


async def _timed(name: str, call: Callable[[], Awaitable[object]], repeat: int = REPEAT) -> None:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    report_line(name, f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")


async def _measure(service: HistoryService, ids: list[str], head: str) -> None:
    started = time.perf_counter()
    await service.log(NS, GetLog(memory_id=MEMORY))
    report_line("log page 1 (cold: loads the 10k-version graph)",
                f"{(time.perf_counter() - started) * 1000:7.2f} ms")
    await _timed("log page 1 (50 entries, warm graph)",
                 lambda: service.log(NS, GetLog(memory_id=MEMORY)))
    deep = (await service.log(NS, GetLog(memory_id=MEMORY, limit=1000))).entries[-1].version_id
    await _timed("log page via cursor (~1000 entries deep)",
                 lambda: service.log(NS, GetLog(memory_id=MEMORY, cursor=deep)))
    await _timed("diff adjacent versions",
                 lambda: service.diff(NS, GetDiff(memory_id=MEMORY, from_ref=ids[-2],
                                                  to_ref=head)))
    await _timed("diff far apart (v100 -> head, ~100 changed lines)",
                 lambda: service.diff(NS, GetDiff(memory_id=MEMORY, from_ref=ids[99],
                                                  to_ref=head)), repeat=50)
    await _timed("common ancestor (v100, head)",
                 lambda: service.common_ancestor(NS, GetCommonAncestor(
                     memory_id=MEMORY, a=ids[99], b="main")), repeat=50)


async def _run() -> None:
    with running_system() as system:
        config = system.config
        url = config.database_url or ""
        progress("preparing schema")
        prepare_schema(url, config.db_schema, 384)
        progress(f"seeding {VERSIONS} versions")
        ids, head = _seed(url, config.db_schema)
        read_models = ReadModels(config)
        stop = asyncio.Event()
        await read_models.open_when_ready(stop)
        try:
            await _measure(HistoryService(read_models), ids, head)
        finally:
            await read_models.close()


def main() -> None:
    """Run the benchmark and print its figures."""
    asyncio.run(_run())


if __name__ == "__main__":
    main()
