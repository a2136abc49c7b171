"""Search latency and recall at a given corpus size, against the gateway's real query layer.

The query vectors are computed before timing starts, so latency excludes query embedding (the
embedder's cost is reported separately by the spine benchmark). Recall@10 compares the HNSW
(dense) ranking with exact cosine search computed in numpy over every stored vector.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector_async

from libs.embeddings import MiniLMOnnxEmbedder
from libs.events import Filters, Search
from libs.readmodel import memories as queries
from libs.readmodel.fusion import reciprocal_rank_fusion, score_fusion
from libs.readmodel.search import SearchSettings, fuse_concurrently, rank
from libs.runtime.database import connect_async
from tests.bench.corpus import memory_texts, query_for
from tests.bench.harness import BenchSystem, percentile, progress, report_line

__all__ = ["run_search_bench"]

K = 10
EF_SEARCH_SWEEP = (40, 100, 200, 400, 800)
QUERIES = 500


async def _count(system: BenchSystem, ns: str) -> int:
    async with await psycopg.AsyncConnection.connect(system.postgres.url) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM mnemos.memories WHERE ns = %s", (ns,), prepare=False
        )).fetchone()
        return int(row[0]) if row else 0


async def _exact_top_k(system: BenchSystem, ns: str, vectors: npt.NDArray[np.float32]
                       ) -> list[list[str]]:
    async with await psycopg.AsyncConnection.connect(system.postgres.url) as conn:
        await register_vector_async(conn)
        cur = await conn.execute(
            "SELECT memory_id, embedding FROM mnemos.memories"
            " WHERE ns = %s AND forgotten_at IS NULL AND embedding IS NOT NULL",
            (ns,), prepare=False,
        )
        rows = await cur.fetchall()
    ids = [str(r[0]) for r in rows]
    matrix = np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])
    scores = vectors @ matrix.T
    top = np.argsort(-scores, axis=1)[:, :K]
    return [[ids[j] for j in row] for row in top]


async def _timed(fn: Callable[[], Awaitable[Sequence[str] | Sequence[tuple[str, float]]]],
                 runs: list[float]) -> list[str]:
    began = time.perf_counter()
    result = await fn()
    runs.append(time.perf_counter() - began)
    return [item if isinstance(item, str) else item[0] for item in result]


async def run_search_bench(
    system: BenchSystem, ns: str, size: int,
    send: Callable[..., Awaitable[tuple[float, list[float], list[tuple[int, float]]]]],
    wait: Callable[[BenchSystem, int], float], inflight: int,
) -> None:
    """Grow ``ns`` to ``size`` memories through the real pipeline, then measure search."""
    have = await _count(system, ns)
    if have < size:
        progress(f"growing corpus {have} -> {size} memories through gateway + projector")
        texts = memory_texts(size - have, seed=size)
        last = 0
        for start in range(0, len(texts), 5000):
            _, _, acks = await send(system, texts[start:start + 5000], inflight)
            last = max(last, *(seq for seq, _ in acks))
            progress(f"  sent {min(start + 5000, len(texts))}/{len(texts)}")
        wait(system, last)
    await _settle(system)
    rng = random.Random(size)
    async with await psycopg.AsyncConnection.connect(system.postgres.url) as conn:
        cur = await conn.execute("SELECT memory_id, content FROM mnemos.memories WHERE ns = %s"
                                 " ORDER BY random() LIMIT %s", (ns, QUERIES), prepare=False)
        sample = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
    query_texts = [query_for(t, rng) for _, t in sample]
    sources = [memory_id for memory_id, _ in sample]
    vectors = MiniLMOnnxEmbedder.shared().embed(query_texts)
    exact = await _exact_top_k(system, ns, vectors)
    filters = Filters()
    dense_ms: list[float] = []
    lexical_ms: list[float] = []
    hybrid_ms: list[float] = []
    recalls: list[float] = []
    # Reciprocal rank (top K) of the memory each query was derived from, per retrieval side.
    reciprocal: dict[str, list[float]] = {"lexical": [], "dense": [], "hybrid": []}
    deep: list[tuple[str, dict[str, list[tuple[str, float]]]]] = []
    qconn = await connect_async(system.postgres.url, "mnemos", autocommit=True)
    second = await connect_async(system.postgres.url, "mnemos", autocommit=True)
    settings = SearchSettings()
    try:
        # A warm-up pass first: the figures are the steady state, not the first touch of
        # pages that the bulk load left outside shared buffers (that pass is printed too).
        first_pass: list[float] = []
        for text, vector in zip(query_texts, vectors, strict=True):
            await _timed(partial(_hybrid, (qconn, second), ns, text, vector, settings),
                         first_pass)
        report_line(f"search @ {size:,} hybrid, warm-up pass",
                    f"p50 {percentile(first_pass, 50) * 1000:.1f} ms"
                    f"  p95 {percentile(first_pass, 95) * 1000:.1f} ms")
        for text, vector, truth, source in zip(query_texts, vectors, exact, sources, strict=True):
            dense = await _timed(partial(queries.dense_ranking, qconn, ns, filters, vector, K),
                                 dense_ms)
            recalls.append(len(set(dense[:K]) & set(truth)) / K)
            lexical = await _timed(
                partial(queries.lexical_ranking, qconn, ns, filters, text, K), lexical_ms)
            hybrid = await _timed(
                partial(_hybrid, (qconn, second), ns, text, vector, settings), hybrid_ms)
            for side, ranking in (("lexical", lexical), ("dense", dense), ("hybrid", hybrid)):
                reciprocal[side].append(_reciprocal_rank(ranking, source))
            deep.append((source, {
                "lexical": await queries.lexical_ranking(qconn, ns, filters, text,
                                                         settings.candidates),
                "dense": await queries.dense_ranking(qconn, ns, filters, vector,
                                                     settings.candidates)}))
        await _ef_search_sweep(qconn, ns, filters, vectors, exact, size)
    finally:
        await qconn.close()
        await second.close()
    _report(size, dense_ms, lexical_ms, hybrid_ms, recalls)
    report_line(f"MRR@{K} of the source memory @ {size:,}", "  ".join(
        f"{side} {float(np.mean(values)):.3f}" for side, values in reciprocal.items()))
    _fusion_variants(size, deep)
    dump = os.environ.get("MNEMOS_BENCH_RANKINGS_DIR")
    if dump:  # the rankings, for offline study of fusion methods
        _write(Path(dump, f"spine-{size}.json"), json.dumps(deep))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _fusion_variants(size: int, deep: list[tuple[str, dict[str, list[tuple[str, float]]]]]
                     ) -> None:
    """MRR@K of the fusion alone under other weights (and RRF), from the same rankings."""
    variants: dict[str, Callable[[dict[str, list[tuple[str, float]]]], list[str]]] = {
        f"{d:.1f}/{1 - d:.1f}": partial(_fused_ids, d) for d in (0.6, 0.5, 0.4, 0.3, 0.2)}
    variants["RRF"] = lambda sides: [hit.doc_id for hit in reciprocal_rank_fusion(
        {side: [doc for doc, _ in ranking] for side, ranking in sides.items()})]
    scores = {label: float(np.mean([_reciprocal_rank(fuse(sides), source)
                                    for source, sides in deep]))
              for label, fuse in variants.items()}
    report_line(f"MRR@{K} by fusion (dense/lexical weights) @ {size:,}",
                "  ".join(f"{label} {value:.3f}" for label, value in scores.items()))


def _fused_ids(dense_weight: float, sides: dict[str, list[tuple[str, float]]]) -> list[str]:
    weights = {"dense": dense_weight, "lexical": 1.0 - dense_weight}
    return [hit.doc_id for hit in score_fusion(sides, weights)]


async def _settle(system: BenchSystem) -> None:
    """VACUUM ANALYZE the searched tables after a bulk load, as autovacuum soon would, so its
    work (a pass over the 100k-row HNSW index) cannot land inside the measurement."""
    progress("VACUUM ANALYZE after the load")
    async with await psycopg.AsyncConnection.connect(system.postgres.url,
                                                     autocommit=True) as conn:
        await conn.execute("VACUUM (ANALYZE) mnemos.memories, mnemos.lexical_docs,"
                           " mnemos.lexical_df", prepare=False)


def _reciprocal_rank(ranking: Sequence[str], wanted: str) -> float:
    top = list(ranking[:K])
    return 1.0 / (top.index(wanted) + 1) if wanted in top else 0.0


async def _hybrid(conns: Sequence[Any], ns: str, text: str, vector: npt.NDArray[np.float32],
                  settings: SearchSettings) -> list[str]:
    """What the gateway does (libs.readmodel.search): both sides at once on two connections,
    fused, re-ranked with thread context, then fetched."""
    lexical_conn, dense_conn = conns
    request = Search(q=text, k=K)
    fused = await fuse_concurrently({
        "lexical": queries.lexical_ranking(lexical_conn, ns, request, text, settings.candidates,
                                           prefix=settings.prefix_matching),
        "dense": queries.dense_ranking(dense_conn, ns, request, vector, settings.candidates),
    }, settings.fuse)
    ranked = await rank(lexical_conn, ns, request, fused, settings, datetime.now(UTC))
    ids = [item.doc_id for item in ranked[:K]]
    found = await queries.fetch_memories(lexical_conn, ns, ids)
    return [doc_id for doc_id in ids if doc_id in found]  # ranked order


async def _ef_search_sweep(conn: Any, ns: str, filters: Filters,
                           vectors: npt.NDArray[np.float32], exact: list[list[str]],
                           size: int) -> None:
    """Recall and latency of the HNSW scan at several candidate-list sizes (ef_search)."""
    for ef in EF_SEARCH_SWEEP:
        runs: list[float] = []
        recall: list[float] = []
        for vector, truth in zip(vectors, exact, strict=True):
            found = await _timed(
                partial(queries.dense_ranking, conn, ns, filters, vector, K, ef_search=ef), runs)
            recall.append(len(set(found[:K]) & set(truth)) / K)
        p50, p95 = percentile(runs, 50) * 1000, percentile(runs, 95) * 1000
        report_line(f"  HNSW ef_search={ef} @ {size:,}",
                    f"recall@{K} {float(np.mean(recall)):.3f}  p50 {p50:.1f} ms  p95 {p95:.1f} ms")


def _report(size: int, dense: Sequence[float], lexical: Sequence[float],
            hybrid: Sequence[float], recalls: Sequence[float]) -> None:
    def fmt(xs: Sequence[float]) -> str:
        return f"p50 {percentile(xs, 50) * 1000:.1f} ms  p95 {percentile(xs, 95) * 1000:.1f} ms"

    report_line(f"search @ {size:,} dense (HNSW) top-{K}", fmt(dense))
    report_line(f"search @ {size:,} lexical (BM25 OR) top-{K}", fmt(lexical))
    candidates = SearchSettings().candidates
    report_line(f"search @ {size:,} hybrid (score fusion, {candidates} cand.)", fmt(hybrid))
    report_line(f"recall@{K} HNSW vs exact @ {size:,}", f"{float(np.mean(recalls)):.3f}")
