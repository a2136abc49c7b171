"""The projector against a real nats-server and a real Postgres + pgvector."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from libs.consumer import Delivery
from libs.consumer.dead_letters import HDR_ATTEMPTS, HDR_ERROR, HDR_ORIGINAL_SEQ
from libs.embeddings import MiniLMOnnxEmbedder
from libs.events import (
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    AuditCheckpointSigned,
    AuditCheckpointSignedData,
    content_hash,
    derive_event_id,
    new_command_id,
)
from libs.readmodel.digest import read_model_digest, row_counts
from libs.readmodel.schema import EmbeddingDimensionMismatch, prepare_schema
from libs.readmodel.statistics import ANALYZE_AT, WRITTEN_TABLES
from libs.runtime.config import Config
from services.projector.batch import BatchApplier
from tests.support.events import (
    ACTOR,
    CountingEmbedder,
    History,
    apply_above_checkpoint,
    checkpoint,
    publish,
    publish_all,
    read_models,
    rows,
    running_projector,
    wait_checkpoint,
)

pytestmark = pytest.mark.integration

ACTOR_JSON = json.loads(msgspec.json.encode(ACTOR))


async def test_each_event_type_projects(config: Config, nats_js) -> None:
    h = History()
    a = h.created("The user prefers dark mode", kind="preference", tags=("ui", "theme"),
                  metadata={"confidence": 0.9, "lang": "en"}, source="chat-42")
    b = h.created("The user lives in Lisbon")
    a_id, b_id = a.aggregate_id, b.aggregate_id
    root = a.data.version_id
    revised = h.revised(a_id, "The user prefers dark mode at night", metadata={"confidence": 1.0},
                        reason="more precise")
    events = [
        a, b, revised,
        h.tagged(a_id, added=("night", "Zeta"), removed=("theme",)),
        h.metadata_changed(a_id, {"source_turn": 7}, unset=["lang"]),
        h.linked(a_id, b_id, "about-same-user"),
        h.linked(a_id, b_id, "about-same-user"),  # same edge again: one row
        h.forgotten(b_id, "user asked"),
    ]
    async with running_projector(config):
        last = await publish_all(nats_js, events)
        await wait_checkpoint(config.database_url or "", last)

    async with read_models(config.database_url or "") as conn:
        mem = {r["memory_id"]: r for r in await rows(conn, "SELECT * FROM memories")}
        ma, mb = mem[a_id], mem[b_id]
        assert ma["content"] == "The user prefers dark mode at night"
        assert ma["content_hash"] == content_hash("The user prefers dark mode at night")
        assert ma["kind"] == "preference" and ma["source"] == "chat-42"
        assert ma["agent_id"] == "planner"
        assert ma["created_by"] == ACTOR_JSON and ma["updated_by"] == ACTOR_JSON
        assert ma["created_command_id"] == a.command_id
        assert ma["created_at"] == a.at and ma["updated_at"] == events[6].at
        assert ma["head_version_id"] == revised.data.version_id and ma["version_count"] == 2
        # The revision carried metadata (replaces), then set/unset changed keys.
        assert ma["metadata"] == {"confidence": 1.0, "source_turn": 7}
        assert ma["tags"] == ["Zeta", "night", "ui"]  # byte order, deduplicated
        assert ma["revision"] == last - 1  # the second link was its last event
        assert ma["forgotten_at"] is None
        assert ma["embedding_model"] == MiniLMOnnxEmbedder.shared().model_id
        assert ma["embedding"].dimensions() == 384
        assert mb["forgotten_at"] == events[7].at and mb["forgotten_reason"] == "user asked"
        assert mb["forgotten_by"] == ACTOR_JSON and mb["revision"] == last
        assert mb["tags"] == [] and mb["metadata"] == {}

        versions = await rows(conn, "SELECT * FROM memory_versions WHERE memory_id = %s"
                              " ORDER BY seq", [a_id])
        assert [v["version_id"] for v in versions] == [root, revised.data.version_id]
        assert versions[0]["parent_ids"] == [] and versions[1]["parent_ids"] == [root]
        assert versions[1]["reason"] == "more precise"
        assert versions[1]["metadata"] == {"confidence": 1.0}

        history = await rows(conn, "SELECT * FROM memory_events ORDER BY seq")
        assert [e["event_id"] for e in history] == [e.id for e in events]
        assert [e["seq"] for e in history] == list(range(1, last + 1))
        assert history[3]["type"] == "MemoryTagged"
        assert history[3]["data"] == {"added": ["night", "Zeta"], "removed": ["theme"]}

        links = await rows(conn, "SELECT * FROM memory_links")
        assert [(x["memory_id"], x["target_memory_id"], x["relation"]) for x in links] == [
            (a_id, b_id, "about-same-user")]
        assert links[0]["seq"] == 6

        results = {r["command_id"]: r for r in await rows(conn, "SELECT * FROM command_results")}
        assert len(results) == len(events)
        assert results[revised.command_id]["version_id"] == revised.data.version_id
        assert results[revised.command_id]["seq"] == 3
        assert results[events[4].command_id]["version_id"] is None
        assert results[events[4].command_id]["event_type"] == "MemoryMetadataChanged"
        assert await rows(conn, "SELECT * FROM dead_letters") == []


async def test_restart_and_redelivery_below_the_checkpoint_are_skipped(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    first = [h.created(f"fact {i}") for i in range(5)]
    async with running_projector(config):
        last = await publish_all(nats_js, first)
        await wait_checkpoint(url, last)
    async with read_models(url) as conn:
        before = await read_model_digest(conn)
        # Every stored message offered again (as a redelivery would): all skipped.
        stored = [await nats_js.get_msg(EVENTS_STREAM, seq) for seq in range(1, last + 1)]
        deliveries = [Delivery(m.seq, m.subject, m.data) for m in stored]
        applier = BatchApplier(conn, MiniLMOnnxEmbedder.shared(), schema="mnemos",
                               fence_key=None)
        cp = await applier.read_checkpoint()
        outcome = await apply_above_checkpoint(applier, deliveries, cp)
        assert (cp, outcome.skipped, outcome.applied, outcome.last_seq) == (last, last, 0, last)
        assert await read_model_digest(conn) == before

    # A restart resumes after the checkpoint: only the new events are applied, once.
    more = [h.revised(first[0].aggregate_id, "fact 0, revised"), h.created("fact 5")]
    async with running_projector(config):
        last = await publish_all(nats_js, more)
        await wait_checkpoint(url, last)
    async with read_models(url) as conn:
        counts = await row_counts(conn)
        assert counts["memory_events"] == 7 and counts["memories"] == 6
        assert counts["memory_versions"] == 7


async def test_a_batch_straddling_the_checkpoint_applies_only_the_new_part(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    events = [h.created(f"note {i}") for i in range(4)]
    last = await publish_all(nats_js, events)
    prepare_schema(url, "mnemos", 384)
    stored = [await nats_js.get_msg(EVENTS_STREAM, seq) for seq in range(1, last + 1)]
    deliveries = [Delivery(m.seq, m.subject, m.data) for m in stored]
    async with read_models(url) as conn:
        applier = BatchApplier(conn, MiniLMOnnxEmbedder.shared(), schema="mnemos",
                               fence_key=None)
        first = await apply_above_checkpoint(applier, deliveries[:2], 0)
        assert (first.applied, first.last_seq) == (2, 2)
        second = await apply_above_checkpoint(applier, deliveries,
                                              await applier.read_checkpoint())
        assert (second.skipped, second.applied, second.last_seq) == (2, 2, 4)
        assert (await row_counts(conn))["memory_events"] == 4


async def test_embedding_cache_hit_means_no_re_embed(config: Config, nats_js) -> None:
    url = config.database_url or ""
    embedder = CountingEmbedder()
    h = History()
    a = h.created("shared text")
    events = [a, h.created("shared text"), h.revised(a.aggregate_id, "other text"),
              h.revised(a.aggregate_id, "shared text")]
    async with running_projector(config, embedder=embedder):
        for event in events:  # one batch each, so the cache (not the batch) must dedupe
            await wait_checkpoint(url, await publish(nats_js, event))
    assert sorted(embedder.texts) == ["other text", "shared text"]
    async with read_models(url) as conn:
        cached = await rows(conn, "SELECT model, content_hash FROM embedding_cache")
        assert {r["content_hash"] for r in cached} == {content_hash("shared text"),
                                                       content_hash("other text")}
        vectors = await rows(conn, "SELECT embedding FROM memories")
        assert all(v["embedding"] is not None for v in vectors)


async def test_a_memory_keeps_its_vector_in_its_row(config: Config, nats_js) -> None:
    """A 384-float vector (1,540 bytes) with a ~1 KB content passes the default 2 kB toast
    threshold; migration 0011 keeps such rows whole, so inserting or reading a vector touches
    no TOAST table (bulk replay load 8.8 -> 6.1 s for 30k memories, README)."""
    url = config.database_url or ""
    h = History()
    events = [h.created(f"note {i}: " + "the user prefers short answers. " * 32)
              for i in range(5)]
    async with running_projector(config, embedder=CountingEmbedder()):
        await wait_checkpoint(url, await publish_all(nats_js, events))
    async with read_models(url) as conn:
        sizes = await rows(conn, "SELECT pg_column_size(m.*) AS row_bytes,"
                                 " pg_column_size(embedding) AS vector_bytes FROM memories m")
        assert len(sizes) == 5 and all(r["row_bytes"] > 2100 for r in sizes)
        assert all(r["vector_bytes"] == 4 * 384 + 8 for r in sizes)
        toast = await rows(conn, "SELECT c.reltoastrelid::regclass::text AS name"
                                 " FROM pg_class c WHERE c.oid = 'memories'::regclass")
        stored = await rows(conn, f"SELECT count(*) AS n FROM {toast[0]['name']}")
        assert stored[0]["n"] == 0, "vectors went to the TOAST table"


async def test_poison_events_are_dead_lettered_and_the_stream_keeps_flowing(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    good = h.created("a good memory")
    ghost = h.revised("no-such-memory", "revising nothing")
    dangling = h.linked(good.aggregate_id, "no-such-target")
    tampered = h.created("tampered")
    wrong_hash = msgspec.structs.replace(
        tampered, data=msgspec.structs.replace(tampered.data, content="tampered!"))
    after = [h.tagged(good.aggregate_id, added=("kept",)), h.created("still flowing")]
    command_id = new_command_id()
    audit = AuditCheckpointSigned(  # another aggregate sharing the stream: not poison
        id=derive_event_id("system", command_id), schema=1, ns="system", aggregate="audit",
        aggregate_id="chain", actor=ACTOR, command_id=command_id, correlation_id=command_id,
        at=good.at, data=AuditCheckpointSignedData(seq=1, link="00", at="t", public_key="k",
                                                   signature="s"))
    async with running_projector(config):
        await publish(nats_js, good)
        await publish(nats_js, audit)
        garbage = await nats_js.publish("mnemos.evt.team-a.memory.garbage", b"\x00not json")
        ghost_seq = await publish(nats_js, ghost)
        dangling_seq = await publish(nats_js, dangling)
        wrong_seq = await publish(nats_js, wrong_hash)
        last = await publish_all(nats_js, after)
        await wait_checkpoint(url, last)

    async with read_models(url) as conn:
        letters = await rows(conn, "SELECT * FROM dead_letters ORDER BY seq")
        assert [d["seq"] for d in letters] == [garbage.seq, ghost_seq, dangling_seq, wrong_seq]
        by_seq = {d["seq"]: d for d in letters}
        assert by_seq[garbage.seq]["raw"] == b"\x00not json"
        assert by_seq[garbage.seq]["attempts"] == 1 and by_seq[garbage.seq]["event_id"] is None
        assert "does not exist" in str(by_seq[ghost_seq]["error"])
        assert by_seq[ghost_seq]["event_id"] == ghost.id
        # A foreign-key violation is a database error: retried, then given up on.
        assert by_seq[dangling_seq]["attempts"] == 3
        assert "ForeignKeyViolation" in str(by_seq[dangling_seq]["error"])
        assert "content_hash does not match" in str(by_seq[wrong_seq]["error"])
        tags = await rows(conn, "SELECT tags FROM memories WHERE memory_id = %s",
                          [good.aggregate_id])
        assert tags == [{"tags": ["kept"]}]
        assert (await row_counts(conn))["memories"] == 2
        assert await checkpoint(url) == last

    info = await nats_js.stream_info(DEADLETTER_STREAM)
    assert info.state.messages == 4
    first = await nats_js.get_msg(DEADLETTER_STREAM, 1)
    assert first.subject == "mnemos.dlq.projector.team-a"
    assert first.data == b"\x00not json"
    assert first.headers[HDR_ORIGINAL_SEQ] == str(garbage.seq)
    assert first.headers[HDR_ATTEMPTS] == "1" and "not an event" in first.headers[HDR_ERROR]


async def test_foreign_keys_cascade_from_memories(config: Config, nats_js) -> None:
    url = config.database_url or ""
    h = History()
    a, b, c = h.created("source"), h.created("target"), h.created("bystander")
    events = [a, b, c, h.revised(a.aggregate_id, "source v2"),
              h.linked(a.aggregate_id, b.aggregate_id), h.linked(c.aggregate_id, b.aggregate_id),
              h.linked(c.aggregate_id, a.aggregate_id)]
    async with running_projector(config):
        await wait_checkpoint(url, await publish_all(nats_js, events))

    async def owned(conn, memory_id: str) -> dict[str, int]:
        counts = {}
        for table, column in [("memory_versions", "memory_id"), ("memory_events", "memory_id"),
                              ("memory_links", "memory_id"),
                              ("memory_links", "target_memory_id"),
                              ("lexical_docs", "memory_id")]:
            found = await rows(conn, f"SELECT count(*) AS n FROM {table} WHERE {column} = %s",
                               [memory_id])
            counts[f"{table}.{column}"] = int(found[0]["n"])
        return counts

    async with read_models(url) as conn:
        assert await owned(conn, a.aggregate_id) == {
            "memory_versions.memory_id": 2, "memory_events.memory_id": 3,
            "memory_links.memory_id": 1, "memory_links.target_memory_id": 1,
            "lexical_docs.memory_id": 1}
        # Deleting the source memory removes its versions, events, outgoing and incoming links.
        await conn.execute("DELETE FROM memories WHERE memory_id = %s", [a.aggregate_id])
        assert set((await owned(conn, a.aggregate_id)).values()) == {0}
        # Deleting a link target removes the edges pointing at it (memory_links target FK).
        assert (await owned(conn, b.aggregate_id))["memory_links.target_memory_id"] == 1
        await conn.execute("DELETE FROM memories WHERE memory_id = %s", [b.aggregate_id])
        assert set((await owned(conn, b.aggregate_id)).values()) == {0}
        # The bystander keeps its own rows.
        assert (await owned(conn, c.aggregate_id))["memory_events.memory_id"] == 3
        assert (await row_counts(conn))["memory_links"] == 0
        # The lexical statistics follow the deletions (the trigger's DELETE path).
        stats = await rows(conn, "SELECT doc_count FROM lexical_ns_stats", [])
        assert [int(r["doc_count"]) for r in stats] == [1]


def test_a_different_embedding_dimension_is_refused(database_url: str) -> None:
    prepare_schema(database_url, "mnemos", 384)
    prepare_schema(database_url, "mnemos", 384)  # idempotent
    with pytest.raises(EmbeddingDimensionMismatch, match="384-dimensional"):
        prepare_schema(database_url, "mnemos", 768)


async def test_one_active_projector_and_a_hot_standby_takes_over(
    config: Config, nats_js
) -> None:
    url = config.database_url or ""
    h = History()
    async with running_projector(config) as first:
        await wait_checkpoint(url, await publish(nats_js, h.created("before")))
        async with running_projector(config) as standby:
            await asyncio.sleep(0.5)
            async with read_models(url) as conn:
                held = await rows(
                    conn, "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
                    " AND granted AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())")
                assert held[0]["n"] == 1
            first.cancel()  # the leader dies without cleanup
            await asyncio.gather(first, return_exceptions=True)
            last = await publish_all(nats_js, [h.created(f"after {i}") for i in range(3)])
            await wait_checkpoint(url, last, timeout_s=10)
            assert not standby.done()
    async with read_models(url) as conn:
        assert (await row_counts(conn))["memory_events"] == 4


async def test_a_fresh_schema_gets_planner_statistics_as_it_grows(
    config: Config, nats_js
) -> None:
    """Without them Postgres keeps plans made for an empty table: each foreign key check then
    walks the whole namespace (see services/projector/statistics.py)."""
    url = config.database_url or ""
    prepare_schema(url, "mnemos", 384)
    async with read_models(url) as conn:
        for table in WRITTEN_TABLES:  # so only the projector can have analyzed them
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    h = History()
    size = ANALYZE_AT[0]
    async with running_projector(config):
        await wait_checkpoint(url, await publish_all(
            nats_js, [h.created(f"fact number {i}") for i in range(size - 1)]), timeout_s=120)
        async with read_models(url) as conn:
            assert await _never_analyzed(conn) == set(WRITTEN_TABLES)
        await wait_checkpoint(url, await publish(nats_js, h.created("the one that crosses")))
    async with read_models(url) as conn:
        assert await _never_analyzed(conn) == set()
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("PREPARE by_key(text, text) AS SELECT 1 FROM ONLY memories x"
                           " WHERE ns = $1 AND memory_id = $2 FOR KEY SHARE OF x")
        plan = [r["QUERY PLAN"] for r in await rows(conn, "EXPLAIN EXECUTE by_key('a', 'b')")]
        assert any("memories_pkey" in line for line in plan), plan


async def _never_analyzed(conn) -> set[str]:
    found = await rows(conn, "SELECT relname FROM pg_class WHERE relkind = 'r'"
                             " AND relnamespace = 'mnemos'::regnamespace AND reltuples < 0")
    return {str(r["relname"]) for r in found} & set(WRITTEN_TABLES)
