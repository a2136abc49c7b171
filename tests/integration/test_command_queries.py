"""The query layer against real read models filled by the real projector: lexical OR + BM25,
dense HNSW with filters, fusion, and the namespace/forgotten rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.embeddings import build_embedder
from libs.events import Filters, ListMemories, Search
from libs.readmodel import memories as queries
from libs.readmodel.pool import ReadModels
from libs.runtime.config import Config
from libs.runtime.nats_client import connect_nats
from services.command.application.commands import CommandService, memory_store
from services.command.application.queries import QueryService
from services.projector import main as projector_main
from tests.support.commands import send

pytestmark = pytest.mark.integration

NS = "team-a"


@dataclass
class Stack:
    commands: CommandService
    queries: QueryService
    read_models: ReadModels

    async def remember(self, content: str, ns: str = NS, **fields: object) -> str:
        result = await send(self.commands,
            ns, "remember", json.dumps({"content": content, **fields}).encode(), None)
        self.last_seq = result.seq
        return result.memory_id

    async def settle(self) -> None:
        await self.read_models.wait_for(self.last_seq)

    last_seq: int = 0


@pytest.fixture
async def stack(config: Config, nats_js: Any) -> AsyncIterator[Stack]:
    # nats_js declares the streams: commands may be appended before the projector has started.
    config = config.model_copy(update={"read_your_writes_timeout_s": 30.0})
    stop = asyncio.Event()
    projector = asyncio.create_task(projector_main.run(config, stop))
    nc = await connect_nats(config.nats_url or "", "tests")
    read_models = ReadModels(config)
    try:
        await asyncio.wait_for(read_models.open_when_ready(stop), 60)
        yield Stack(
            commands=CommandService(memory_store(nc.jetstream()), read_models, config),
            queries=QueryService(read_models, lambda: build_embedder(config)),
            read_models=read_models,
        )
    finally:
        stop.set()
        await read_models.close()
        await asyncio.wait_for(projector, 30)
        await nc.drain()


async def _lexical(stack: Stack, text: str, **filters: object) -> list[str]:
    async with stack.read_models.connection() as conn:
        ranking = await queries.lexical_ranking(conn, NS, Filters(**filters), text, 50)  # type: ignore[arg-type]
    return [memory_id for memory_id, _ in ranking]


async def test_lexical_side_ranks_partial_matches_by_bm25(stack: Stack) -> None:
    cat_mat = await stack.remember("The cat sat on the mat")
    dog = await stack.remember("A dog barked at the mailman")
    physics = await stack.remember("Quantum chromodynamics describes the strong interaction")
    cat_dog = await stack.remember("The cat and the dog are friends")
    other_ns = await stack.remember("chromodynamics in another namespace", ns="team-b")
    await stack.settle()

    # An AND of the terms would match nothing; the OR matches every partial match, and the rare
    # term outranks the common one.
    ranked = await _lexical(stack, "cat chromodynamics zebra")
    assert ranked[0] == physics and set(ranked) == {physics, cat_mat, cat_dog}
    assert other_ns not in ranked
    # more matched terms rank higher
    assert (await _lexical(stack, "cat dog"))[0] == cat_dog
    # operators in the query text are data, not tsquery syntax
    assert set(await _lexical(stack, "cat & !dog | (")) == {cat_mat, dog, cat_dog}
    assert await _lexical(stack, "the and of") == []
    assert await _lexical(stack, "?!") == []


async def test_dense_side_honours_selective_filters(stack: Stack) -> None:
    for i in range(60):
        await stack.remember(f"Routine status update number {i} about the build pipeline")
    rare = [await stack.remember(f"Rare finding {i}: the deploy key rotated", tags=["rare"],
                                 kind="finding", actor={"agent_id": "auditor"})
            for i in range(3)]
    await stack.settle()
    found = await stack.queries.search(NS, Search(q="build pipeline status", tags=("rare",),
                                                  mode="dense", k=10))
    assert sorted(hit.memory.memory_id for hit in found.hits) == sorted(rare)
    for filters in ({"kind": "finding"}, {"agent_id": "auditor"}):
        hybrid = await stack.queries.search(NS, Search(q="deploy key", k=10, **filters))  # type: ignore[arg-type]
        assert sorted(hit.memory.memory_id for hit in hybrid.hits) == sorted(rare)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (await stack.queries.search(NS, Search(q="deploy", since=future))).hits == []
    page = await stack.queries.list_memories(NS, ListMemories(until=future, tags=("rare",)))
    assert len(page.items) == 3


async def test_dense_statement_is_served_by_the_hnsw_index(stack: Stack) -> None:
    await stack.remember("anything at all")
    await stack.settle()
    vector = (await asyncio.to_thread(build_embedder(stack.commands._config).embed, ["q"]))[0]
    params: dict[str, object] = {"ns": NS, "q": vector, "limit": 10}
    statement = queries.dense_sql(queries.filter_sql(Filters(kind="note"), params))
    async with stack.read_models.connection() as conn, conn.transaction():
        # With one row any plan is cheap; make sorting expensive, as it is on a real table, so
        # the planner shows whether the statement *can* be served in index order.
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_sort = off")
        cur = await conn.execute("EXPLAIN (COSTS OFF) " + statement, params)
        plan = [str(next(iter(row.values())))[:120] for row in await cur.fetchall()]
    assert any("Index Scan using memories_embedding" in line for line in plan), plan
    async with stack.read_models.connection() as conn:
        cur = await conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'memories_embedding'::regclass")
        row = await cur.fetchone()
    assert row is not None and sorted(row["reloptions"]) == ["ef_construction=96", "m=8"]


async def test_hybrid_reports_both_sides_and_hides_forgotten(stack: Stack) -> None:
    keep = await stack.remember("The quarterly revenue report is due on Friday")
    drop = await stack.remember("The quarterly revenue forecast was revised downward")
    await send(stack.commands, NS, "forget", json.dumps(
        {"memory_id": drop, "reason": "obsolete"}).encode(), None)
    result = await send(stack.commands, NS, "tag", json.dumps(
        {"memory_id": keep, "add": ["finance"]}).encode(), None)
    found = await stack.queries.search(NS, Search(q="quarterly revenue",
                                                  after_seq=result.seq))
    assert [hit.memory.memory_id for hit in found.hits] == [keep]
    hit = found.hits[0]
    assert hit.matched == ["dense", "lexical"] and hit.dense_rank == hit.lexical_rank == 1
    assert hit.memory.tags == ["finance"]


async def test_lexical_tiers_keep_or_semantics_when_terms_are_too_common(stack: Stack) -> None:
    both = await stack.remember("alpha beta gamma")
    pair = await stack.remember("alpha beta")
    only_alpha = await stack.remember("alpha delta")
    only_beta = await stack.remember("beta epsilon")
    rare = await stack.remember("zeta")
    unrelated = await stack.remember("omega")
    await stack.settle()
    expected = [rare, pair, both]  # the rare term, then both common terms (shorter first)
    async with stack.read_models.connection() as conn:
        exact = [memory_id for memory_id, _ in
                 await queries.lexical_ranking(conn, NS, Filters(), "alpha beta zeta", 50)]
        # A budget of one posting: only "zeta" is read in full; "alpha" and "beta" come from
        # the capped all-common and any-common tiers, which still find the single-word matches.
        tiny = [memory_id for memory_id, _ in
                await queries.lexical_ranking(conn, NS, Filters(), "alpha beta zeta", 50,
                                              budget=1, cap=1)]
    for ranked in (exact, tiny):
        assert set(ranked) == {both, pair, only_alpha, only_beta, rare}, ranked
        assert unrelated not in ranked
    assert exact[:3] == expected
    assert tiny[0] == rare and set(tiny[1:3]) <= {both, pair}


async def test_lexical_rarer_terms_rank_higher_and_filters_apply(stack: Stack) -> None:
    common = [await stack.remember(f"shared weather note {i}") for i in range(5)]
    rare = await stack.remember("a weather note about a tornado", tags=["storm"])
    await stack.settle()
    ranked = await _lexical(stack, "tornado shared")
    assert ranked[0] == rare and set(ranked) == {rare, *common}
    assert await _lexical(stack, "weather", tags=["storm"]) == [rare]
    assert await _lexical(stack, "shared", kind="finding") == []


async def _lexical_tables(stack: Stack) -> list[list[dict[str, Any]]]:
    """lexical_df, lexical_ns_stats, lexical_docs; asserted equal to a recount from scratch."""
    async with stack.read_models.connection() as conn:
        tables: list[list[dict[str, Any]]] = []
        for statement in (
            "SELECT ns, lexeme, df FROM lexical_df ORDER BY ns, lexeme COLLATE \"C\"",
            "SELECT ns, doc_count, total_len FROM lexical_ns_stats ORDER BY ns",
            "SELECT ns, memory_id, doc_len, tsv::text AS tsv FROM lexical_docs"
            " ORDER BY ns, memory_id",
        ):
            cur = await conn.execute(statement, prepare=False)
            tables.append([dict(row) for row in await cur.fetchall()])
        recounts = []
        for statement in (
            "SELECT m.ns, l.lexeme, count(*) AS df FROM memories m,"
            " unnest(tsvector_to_array(m.tsv)) AS l(lexeme) WHERE m.forgotten_at IS NULL"
            " GROUP BY m.ns, l.lexeme ORDER BY m.ns, l.lexeme COLLATE \"C\"",
            "SELECT ns, count(*) AS doc_count, sum(length(tsv)) AS total_len FROM memories"
            " WHERE forgotten_at IS NULL GROUP BY ns ORDER BY ns",
            "SELECT ns, memory_id, length(tsv) AS doc_len, tsv::text AS tsv FROM memories"
            " WHERE forgotten_at IS NULL ORDER BY ns, memory_id",
        ):
            cur = await conn.execute(statement, prepare=False)
            recounts.append([dict(row) for row in await cur.fetchall()])
    assert tables == recounts
    return tables


async def test_lexical_statistics_equal_a_recount_across_create_revise_forget(
    stack: Stack,
) -> None:
    first = await stack.remember("Kafka lag grew during the migration")
    second = await stack.remember("The migration finished; Kafka is healthy")
    await stack.remember("Kafka in another namespace", ns="team-b")
    await stack.settle()
    df, ns_stats, _ = await _lexical_tables(stack)
    assert {"ns": NS, "lexeme": "kafka", "df": 2} in df
    assert [row["doc_count"] for row in ns_stats] == [2, 1]

    # A revision swaps lexemes: "lag" and "grew" leave (df to zero: the rows go), others stay.
    await send(stack.commands, NS, "revise", json.dumps(
        {"memory_id": first, "content": "Kafka throughput doubled after the migration"}
    ).encode(), None)
    result = await send(stack.commands, NS, "tag", json.dumps(
        {"memory_id": second, "add": ["ops"]}).encode(), None)  # no lexical change
    await stack.read_models.wait_for(result.seq)
    df, _, _ = await _lexical_tables(stack)
    lexemes = {row["lexeme"] for row in df if row["ns"] == NS}
    assert {"throughput", "doubl"} <= lexemes and not {"lag", "grew"} & lexemes
    assert await _lexical(stack, "lag") == [] and await _lexical(stack, "throughput") == [first]

    # Forgetting removes the document from every statistic; the last one empties the namespace.
    for memory_id in (second, first):
        result = await send(stack.commands, NS, "forget", json.dumps(
            {"memory_id": memory_id, "reason": "test"}).encode(), None)
        await stack.read_models.wait_for(result.seq)
        await _lexical_tables(stack)
    df, ns_stats, docs = await _lexical_tables(stack)
    assert [row["ns"] for row in ns_stats] == ["team-b"]
    assert {row["ns"] for row in df} == {row["ns"] for row in docs} == {"team-b"}
    assert await _lexical(stack, "kafka") == []
