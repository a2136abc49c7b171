"""Retrieval quality on the LoCoMo development set, through the real gateway (issue 12).

Run: ``python -m tests.bench.bench_retrieval [--dir ../shared/data/locomo-dev] [--sweep]``

Every dialogue turn is remembered through the gateway's HTTP API (one namespace per
conversation, one thread per session, ``occurred_at`` = the session's date, content
``"<speaker>: <text>"``); every question is one HTTP search. Printed, for lexical, dense and
the default (hybrid) search side by side: evidence recall@5/@10, hit@10, recall@10 without
category 5 and per category, HTTP search p50/p95, and whether every top-5 is the first five of
the top-10. ``--sweep`` then re-ranks in process (the same library code the gateway runs) under
alternative settings, the evidence behind the defaults. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from libs.embeddings import MiniLMOnnxEmbedder
from libs.events import Search
from libs.readmodel import memories as queries
from libs.readmodel.fusion import FusedHit, reciprocal_rank_fusion
from libs.readmodel.pool import ReadModels
from libs.readmodel.search import SearchSettings, rank
from tests.bench.harness import BenchSystem, percentile, progress, report_line, running_system
from tests.bench.locomo import CATEGORIES, DEFAULT_DIR, Conversation, load_conversations, score

MODES = ("lexical", "dense", "hybrid")
INFLIGHT = 16
DEPTH = 200


async def _load(http: httpx.AsyncClient, conv: Conversation) -> tuple[dict[str, str], int]:
    """Remember every turn; the memory id of each ``dia_id`` and the last stream sequence."""
    ns = f"locomo-{conv.name}"
    gate = asyncio.Semaphore(INFLIGHT)
    ids: dict[str, str] = {}
    last = 0

    async def one(index: int) -> None:
        nonlocal last
        turn = conv.turns[index]
        body = {"content": turn.content, "occurred_at": turn.occurred_at.isoformat(),
                "thread": f"session-{turn.session}", "thread_position": turn.position}
        async with gate:
            for attempt in range(5):
                response = await http.post(f"/v1/{ns}/memories", json=body)
                if response.status_code == 201:
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
            response.raise_for_status()
        result = response.json()
        ids[result["memory_id"]] = turn.dia_id
        last = max(last, int(result["seq"]))

    await asyncio.gather(*(one(i) for i in range(len(conv.turns))))
    return ids, last


def _wait_projected(system: BenchSystem, seq: int, timeout_s: float = 3600.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        while system.checkpoint(conn) < seq:
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection did not reach {seq}")
            time.sleep(1.0)


async def _search(http: httpx.AsyncClient, ns: str, q: str, k: int, mode: str,
                  times: list[float]) -> list[str]:
    began = time.perf_counter()
    response = await http.get(f"/v1/{ns}/search", params={"q": q, "k": k, "mode": mode})
    times.append(time.perf_counter() - began)
    response.raise_for_status()
    return [hit["memory"]["memory_id"] for hit in response.json()["hits"]]


def _report(label: str, results: dict[int, list[tuple[Any, Sequence[str]]]]) -> None:
    at5, at10 = score(results[5], 5), score(results[10], 10)
    report_line(f"{label:<28} R@5 / R@10 / hit@10",
                f"{at5.mean('all'):.3f} / {at10.mean('all'):.3f} / "
                f"{at10.mean('all', 'hit'):.3f}   R@10 w/o c5 {at10.mean('no-c5'):.3f}")
    report_line(f"{label:<28} R@10 per category", "  ".join(
        f"{name} {at10.mean(f'c{c}'):.3f}" for c, name in CATEGORIES.items()))


async def _measure_http(system: BenchSystem, convs: list[Conversation],
                        dia: dict[str, dict[str, str]]) -> None:
    base = f"http://127.0.0.1:{system.config.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        prefix_ok = prefix_total = 0
        for mode in MODES:
            times: list[float] = []
            results: dict[int, list[tuple[Any, Sequence[str]]]] = {5: [], 10: []}
            for conv in convs:
                ns, mapping = f"locomo-{conv.name}", dia[conv.name]
                for question in conv.questions:
                    top10 = await _search(http, ns, question.text, 10, mode, times)
                    top5 = await _search(http, ns, question.text, 5, mode, [])
                    prefix_total += 1
                    prefix_ok += top5 == top10[:5]
                    results[10].append((question, [mapping[m] for m in top10]))
                    results[5].append((question, [mapping[m] for m in top5]))
            _report(mode, results)
            report_line(f"{mode:<28} HTTP search (k=10)",
                        f"p50 {percentile(times, 50) * 1000:.1f} ms"
                        f"  p95 {percentile(times, 95) * 1000:.1f} ms  ({len(times)} searches)")
        report_line("top-5 == first 5 of top-10", f"{prefix_ok}/{prefix_total}")


Variant = tuple[str, SearchSettings, Callable[..., list[FusedHit]] | None]

_ENGLISH_STOPWORDS = (  # Postgres' english.stop, which migration 0010 shortened
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself "
    "she her hers herself it its itself they them their theirs themselves what which who whom "
    "this that these those am is are was were be been being have has had having do does did "
    "doing a an the and but if or because as until while of at by for with about against "
    "between into through during before after above below to from up down in out on off over "
    "under again further then once here there when where why how all any both each few more "
    "most other some such no nor not only own same so than too very s t can will just don "
    "should now")


def _retokenise(stopwords: Sequence[str] | None, compounds: bool,
                strip_label: bool = False) -> str:
    """SQL redefining the read model's tokenisation in the bench database, then re-indexing
    every memory (the statistics trigger recounts): an experiment on the stopword list, the
    compounds and a leading speaker label. ``None`` keeps the stopword function."""
    doc = (r"regexp_replace(doc, '^\s*[^:\n]{1,40}:\s+', '')" if strip_label else "doc")
    parts = [
        "CREATE OR REPLACE FUNCTION mnemos_tsvector(doc text) RETURNS tsvector LANGUAGE sql"
        f" IMMUTABLE PARALLEL SAFE AS $b$ SELECT ts_delete(to_tsvector('mnemos_english', {doc})"
        f" || to_tsvector('mnemos_english', mnemos_compounds({doc})), mnemos_stopwords()) $b$"]
    if stopwords is not None:
        words = ", ".join(f"'{w}'" for w in stopwords)
        parts.append(
            "CREATE OR REPLACE FUNCTION mnemos_stopwords() RETURNS text[] LANGUAGE sql IMMUTABLE"
            " PARALLEL SAFE AS $b$ SELECT array_agg(DISTINCT l) FROM unnest(ARRAY["
            f"{words}]) w, unnest(ts_lexize('mnemos_english_stem', w)) l $b$")
    body = ("SELECT coalesce(string_agg(replace(m[1], '-', ''), ' '), '') FROM"
            " regexp_matches(doc, '([[:alnum:]]+(?:-[[:alnum:]]+)+)', 'g') AS m"
            if compounds else "SELECT ''::text")
    parts.append("CREATE OR REPLACE FUNCTION mnemos_compounds(doc text) RETURNS text"
                 f" LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $b$ {body} $b$")
    parts.append("UPDATE memories SET content = content || ' '")
    parts.append("UPDATE memories SET content = rtrim(content, ' ')")
    return ";\n".join(parts)


async def _sweep(system: BenchSystem, convs: list[Conversation],
                 dia: dict[str, dict[str, str]]) -> None:
    """In-process re-ranking under alternative settings (the same library code as the
    gateway; rankings of each side computed once per tokenisation, DEPTH deep)."""
    rm = ReadModels(system.config)
    await rm.open_when_ready(asyncio.Event())
    embedder = MiniLMOnnxEmbedder.shared()
    base = SearchSettings()
    rrf = lambda rankings, weights: reciprocal_rank_fusion(  # noqa: E731
        {side: [doc for doc, _ in ranking] for side, ranking in rankings.items()})
    lexical_only = replace(base, dense_weight=0.0)
    groups: list[tuple[str, str | None, list[Variant]]] = [
        ("migration 0010 tokenisation", None, [
            ("default", base, None),
            ("RRF k=60", base, rrf),
            ("RRF k=60, no thread context", replace(base, context_pool=0), rrf),
            ("no thread context", replace(base, context_pool=0), None),
            ("lexical only (with context)", lexical_only, None),
            ("lexical only, no context", replace(lexical_only, context_pool=0), None),
            ("weights 0.6/0.4 (dense/lex)", replace(base, dense_weight=0.6, lexical_weight=0.4),
             None),
            ("weights 0.5/0.5", replace(base, dense_weight=0.5, lexical_weight=0.5), None),
            ("weights 0.3/0.7", replace(base, dense_weight=0.3, lexical_weight=0.7), None),
            ("candidates 50", replace(base, candidates=50), None),
            ("candidates 200", replace(base, candidates=200), None),
            ("pool 10", replace(base, context_pool=10), None),
            ("pool 60", replace(base, context_pool=60), None),
            ("after 0.3", replace(base, context_after_share=0.3), None),
            ("after 0.7", replace(base, context_after_share=0.7), None),
            ("before 0.0", replace(base, context_before_share=0.0), None),
            ("before 0.3", replace(base, context_before_share=0.3), None),
        ]),
        ("query: prefix matching of the last word", "lexical:prefix=1", [
            ("default", base, None), ("lexical only", lexical_only, None)]),
        ("query: no joined adjacent words", "lexical:pairs=0", [
            ("default", base, None), ("lexical only", lexical_only, None)]),
        ("no speaker label in the lexical index", _retokenise(None, True, strip_label=True), [
            ("default", base, None), ("lexical only", lexical_only, None)]),
        ("no compounds", _retokenise(None, False), [
            ("default", base, None), ("lexical only", lexical_only, None)]),
        ("english stopwords (Postgres' list)", _retokenise(_ENGLISH_STOPWORDS.split(), True), [
            ("default", base, None), ("lexical only", lexical_only, None)]),
    ]
    try:
        for title, setup, variants in groups:
            progress(f"sweep: {title}")
            report_line(f"-- sweep: {title}", "")
            options: dict[str, bool] = {"prefix": base.prefix_matching}
            if setup is not None and setup.startswith("lexical:"):
                name, _, value = setup.removeprefix("lexical:").partition("=")
                options[name] = value == "1"
            elif setup is not None:
                async with rm.connection() as conn:
                    for statement in setup.split(";\n"):
                        await conn.execute(statement)
            await _evaluate(rm, embedder, convs, dia, variants, options)
    finally:
        await rm.close()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _exists(path: Path) -> bool:
    return path.exists()


async def _evaluate(rm: ReadModels, embedder: MiniLMOnnxEmbedder, convs: list[Conversation],
                    dia: dict[str, dict[str, str]], variants: list[Variant],
                    options: dict[str, bool]) -> None:
    cached: list[tuple[Conversation, Any, dict[str, list[tuple[str, float]]]]] = []
    for conv in convs:
        ns = f"locomo-{conv.name}"
        vectors = embedder.embed([q.text for q in conv.questions])
        for question, vector in zip(conv.questions, vectors, strict=True):
            request = Search(q=question.text, k=10)
            async with rm.connection() as conn:
                lexical = await queries.lexical_ranking(conn, ns, request, question.text,
                                                        DEPTH, **options)
                dense = await queries.dense_ranking(conn, ns, request, vector, DEPTH)
            cached.append((conv, question, {"lexical": lexical, "dense": dense}))
    dump = os.environ.get("MNEMOS_BENCH_RANKINGS_DIR")
    if dump and not _exists(Path(dump, "locomo.json")):  # the default tokenisation only:
        # the rankings with the evidence, for offline study of fusion methods
        _write(Path(dump, "locomo.json"), json.dumps([
            {"category": q.category, "evidence": sorted(q.evidence),
             "sides": {side: [[dia[c.name][doc], score] for doc, score in ranking]
                       for side, ranking in sides.items()}}
            for c, q, sides in cached]))
    for label, settings, fusion in variants:
        results: dict[int, list[tuple[Any, Sequence[str]]]] = {5: [], 10: []}
        for conv, question, sides in cached:
            ns = f"locomo-{conv.name}"
            rankings = {side: ranking[: settings.candidates]
                        for side, ranking in sides.items()
                        if settings.weights[side] > 0}
            fused = (fusion(rankings, settings.weights) if fusion is not None
                     else settings.fuse(rankings))
            async with rm.connection() as conn:
                ranked = await rank(conn, ns, Search(q=question.text), fused, settings,
                                    datetime.now(UTC))
            names = [dia[conv.name][item.doc_id] for item in ranked[:10]]
            results[10].append((question, names))
            results[5].append((question, names[:5]))
        _report(label, results)


async def main_async(args: argparse.Namespace) -> None:
    convs = load_conversations(Path(args.dir))
    if args.conversations:
        convs = [c for c in convs if c.name in args.conversations.split(",")]
    turns = sum(len(c.turns) for c in convs)
    with running_system("2m") as system:
        system.start_service("projector")
        system.start_service("command")
        system.wait_gateway()
        report_line("machine", f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        base = f"http://127.0.0.1:{system.config.http_port}"
        dia: dict[str, dict[str, str]] = {}
        began = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            last = 0
            for conv in convs:
                progress(f"remembering {len(conv.turns)} turns of conversation {conv.name}")
                dia[conv.name], seq = await _load(http, conv)
                last = max(last, seq)
        _wait_projected(system, last)
        report_line(f"load {turns:,} turns through the gateway, projected",
                    f"{time.perf_counter() - began:.0f} s")
        await _measure_http(system, convs, dia)
        if args.sweep:
            progress("sweep: alternative settings, re-ranked in process")
            await _sweep(system, convs, dia)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=str(DEFAULT_DIR))
    parser.add_argument("--conversations", default="", help="comma-separated names (default all)")
    parser.add_argument("--sweep", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
