"""Appending through the command handler against a real nats-server: optimistic concurrency,
creation with expected sequence 0, and idempotency (duplicate window and beyond)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from libs.events import (
    EVENTS_STREAM,
    Actor,
    Conflict,
    InvalidInput,
    MemoryCreated,
    NotFound,
    Remember,
    decode_event,
    event_subject,
    events_stream_config,
    new_command_id,
)
from libs.eventstore import WrongExpectedSequence
from libs.readmodel.pool import ReadModels
from libs.runtime.config import Config
from libs.runtime.migrations import apply_migrations
from libs.runtime.nats_client import connect_nats
from services.command.application.commands import CommandService, memory_store
from services.command.domain.memory import DecisionContext, MemoryState, creation_memory_id, decide
from tests.support.commands import send

NS = "team-a"
MIGRATIONS = Path(__file__).parents[2] / "libs" / "readmodel" / "migrations"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


async def stream_count(js) -> int:
    return int((await js.stream_info(EVENTS_STREAM)).state.messages)


@pytest.fixture
def service(nats_js, config: Config) -> CommandService:
    return CommandService(memory_store(nats_js), None, config)


async def test_remember_appends_one_event_on_the_memory_subject(nats_js, service) -> None:
    result = await send(service, NS, "remember", body(content="likes tea", tags=["pref"]),
                                  "alice")
    assert result.event_type == "MemoryCreated" and not result.duplicate
    assert result.revision == result.seq == 1
    msg = await nats_js.get_msg(EVENTS_STREAM, seq=result.seq)
    assert msg.subject == event_subject(NS, "memory", result.memory_id)
    event = decode_event(msg.data)
    assert event.id == result.event_id == msg.headers["Nats-Msg-Id"]
    assert isinstance(event, MemoryCreated)
    assert event.actor.principal == "alice" and event.data.tags == ("pref",)
    assert event.correlation_id == event.command_id == result.command_id


async def test_creation_uses_expected_sequence_zero(nats_js, service) -> None:
    created = await send(service, NS, "remember", body(content="first"), None)
    cid = new_command_id()
    ctx = DecisionContext(ns=NS, command_id=cid, correlation_id=cid, actor=Actor(principal="x"),
                          at=datetime.now(UTC), max_content_bytes=100)
    # A creation aimed at an existing memory's subject (expected sequence 0) is refused by
    # JetStream itself, whatever the caller believed.
    events = decide(MemoryState(memory_id=created.memory_id), Remember(content="again"), ctx)
    with pytest.raises(WrongExpectedSequence):
        await memory_store(nats_js).append(NS, created.memory_id, events, 0)
    assert await stream_count(nats_js) == 1


async def test_two_writers_same_expected_version_exactly_one_wins(nats_js, config) -> None:
    # Two gateway instances (separate stores and caches) race on one memory.
    first = CommandService(memory_store(nats_js), None, config)
    second = CommandService(memory_store(nats_js), None, config)
    created = await send(first, NS, "remember", body(content="v1"), None)
    await send(second, NS, "tag", body(memory_id=created.memory_id, add=["warm-cache"]), None)
    version = (await send(first, NS, "tag", body(memory_id=created.memory_id, add=["x"]),
                                  None)).revision
    outcomes = await asyncio.gather(
        send(first, NS, "revise", body(memory_id=created.memory_id, content="from first",
                                        expected_version=version), None),
        send(second, NS, "revise", body(memory_id=created.memory_id, content="from second",
                                         expected_version=version), None),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    losses = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], Conflict) and losses[0].http_status == 409
    assert losses[0].detail["expected_version"] == version
    assert await stream_count(nats_js) == 4


async def test_same_instance_writers_with_one_expected_version(nats_js, service) -> None:
    created = await send(service, NS, "remember", body(content="v1"), None)
    outcomes = await asyncio.gather(*(
        send(service, NS, "revise", body(memory_id=created.memory_id, content=f"v{i}",
                                          expected_version=created.revision), None)
        for i in range(2, 6)
    ), return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    assert await stream_count(nats_js) == 2


async def test_stale_expected_version_conflicts_without_appending(nats_js, service) -> None:
    created = await send(service, NS, "remember", body(content="v1"), None)
    await send(service, NS, "revise", body(memory_id=created.memory_id, content="v2"), None)
    before = await stream_count(nats_js)
    with pytest.raises(Conflict):
        await send(service, NS, "revise", body(memory_id=created.memory_id, content="v3",
                                                expected_version=created.revision), None)
    assert await stream_count(nats_js) == before


async def test_concurrent_writers_without_expected_version_lose_no_update(nats_js, config
                                                                            ) -> None:
    services = [CommandService(memory_store(nats_js), None, config) for _ in range(4)]
    created = await send(services[0], NS, "remember", body(content="shared"), None)
    tags = [f"t{i}" for i in range(16)]
    results = await asyncio.gather(*(
        send(services[i % 4], NS, "tag", body(memory_id=created.memory_id, add=[tag]), None)
        for i, tag in enumerate(tags)
    ))
    assert len({r.seq for r in results}) == len(tags)
    state = await memory_store(nats_js).load(NS, created.memory_id)
    assert state.tags == set(tags) and state.last_seq == max(r.seq for r in results)


async def test_same_command_id_twice_gives_one_event_and_the_same_result(nats_js, service
                                                                        ) -> None:
    cid = new_command_id()
    first = await send(service, NS, "remember", body(content="once", command_id=cid), None)
    again = await send(service, NS, "remember", body(content="once", command_id=cid), None)
    assert again.duplicate and not first.duplicate
    assert (again.event_id, again.memory_id, again.seq, again.version_id) == (
        first.event_id, first.memory_id, first.seq, first.version_id)
    assert first.memory_id == creation_memory_id(NS, cid)
    # A different gateway instance (cold cache) answers the same.
    other = CommandService(memory_store(nats_js), None, service._config)
    third = await send(other, NS, "remember", body(content="once", command_id=cid), None)
    assert third.duplicate and third.seq == first.seq
    assert await stream_count(nats_js) == 1


async def test_retried_revise_after_later_changes_is_still_a_duplicate(nats_js, service
                                                                       ) -> None:
    created = await send(service, NS, "remember", body(content="v1"), None)
    cid = new_command_id()
    revise = body(memory_id=created.memory_id, content="v2", command_id=cid)
    first = await send(service, NS, "revise", revise, None)
    await send(service, NS, "tag", body(memory_id=created.memory_id, add=["later"]), None)
    again = await send(service, NS, "revise", revise, None)
    assert again.duplicate and again.seq == first.seq and again.version_id == first.version_id
    assert await stream_count(nats_js) == 3


async def test_idempotency_holds_beyond_the_duplicate_window(nats_server, config) -> None:
    """With a 1 s duplicate window (set on the stream directly; Config refuses < 120 s), retries
    after the window are still recognised from the memory's own history in the stream."""
    nc = await connect_nats(nats_server.url, "tests-short-window")
    try:
        js = nc.jetstream()
        await js.add_stream(events_stream_config(duplicate_window_s=1.0))
        service = CommandService(memory_store(js), None, config)
        create_id, revise_id = new_command_id(), new_command_id()
        created = await send(service, NS, "remember", body(content="a", command_id=create_id),
                                       None)
        revised = await send(service, NS, "revise", body(
            memory_id=created.memory_id, content="b", command_id=revise_id), None)
        await asyncio.sleep(1.6)
        fresh = CommandService(memory_store(js), None, config)  # no cache either
        again_create = await send(fresh, NS, "remember", body(content="a", command_id=create_id),
                                          None)
        again_revise = await send(fresh, NS, "revise", body(
            memory_id=created.memory_id, content="b", command_id=revise_id), None)
        assert again_create.duplicate and again_create.seq == created.seq
        assert again_revise.duplicate and again_revise.seq == revised.seq
        assert (await js.stream_info(EVENTS_STREAM)).state.messages == 2
    finally:
        await nc.drain()


async def test_command_results_answer_before_anything_is_published(nats_js, config) -> None:
    """A command id known to ``command_results`` is answered from Postgres, appending nothing."""
    with psycopg.connect(config.database_url) as conn:
        apply_migrations(conn, "projector", MIGRATIONS, config.db_schema, {"embedding_dim": 384})
        cid = new_command_id()
        conn.execute(
            "INSERT INTO mnemos.command_results (ns, command_id, event_id, event_type,"
            " memory_id, version_id, seq) VALUES (%s, %s, 'e1', 'MemoryCreated', 'm1', 'v1', 42)",
            (NS, cid),
        )
        conn.commit()
    read_models = ReadModels(config)
    stop = asyncio.Event()
    await read_models.open_when_ready(stop)
    try:
        service = CommandService(memory_store(nats_js), read_models, config)
        result = await send(service, NS, "remember", body(content="x", command_id=cid), None)
        assert result.duplicate and (result.seq, result.memory_id, result.version_id) == (
            42, "m1", "v1")
        assert await stream_count(nats_js) == 0
        # same command id in another namespace is a different command
        other = await send(service, "team-b", "remember", body(content="x", command_id=cid),
                                     None)
        assert not other.duplicate and await stream_count(nats_js) == 1
    finally:
        await read_models.close()


@pytest.mark.parametrize(("name", "payload", "error"), [
    ("remember", b"{not json", InvalidInput),
    ("remember", b'{"content": ""}', InvalidInput),
    ("remember", b'{"content": "x", "command_id": "not-a-uuid"}', InvalidInput),
    ("remember", b'{"content": "x", "command_id": "0190b6f2-7c5e-4b7a-8000-000000000000"}',
     InvalidInput),  # a UUIDv4-shaped id is not a v7
    ("fly", b"{}", InvalidInput),
    ("revise", b'{"memory_id": "a.b", "content": "x"}', InvalidInput),
    ("revise", b'{"memory_id": "missing", "content": "x"}', NotFound),
    ("link", b'{"memory_id": "missing", "target_memory_id": "*"}', InvalidInput),
])
async def test_bad_commands_append_nothing(nats_js, service, name, payload, error) -> None:
    with pytest.raises(error):
        await send(service, NS, name, payload, None)
    with pytest.raises(InvalidInput):
        await send(service, "a.b", "remember", body(content="x"), None)
    assert await stream_count(nats_js) == 0
