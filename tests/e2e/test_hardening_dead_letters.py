"""An acknowledged event that could not be projected is never hidden (issue 10, defect 1):
read-your-writes names it instead of answering stale data, and the memory it belongs to is not
served as if nothing had happened."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from libs.events import (
    Actor,
    MemoryRevised,
    MemoryRevisedData,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
)
from libs.runtime.config import Config
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "letters"


async def _publish_broken_revision(nc: Any, created: dict[str, Any]) -> tuple[MemoryRevised, int]:
    """A revision whose content hash does not match its content: an invariant violation,
    dead-lettered by the projector after it was acknowledged by the stream."""
    mid, command_id = created["memory_id"], new_command_id()
    broken = MemoryRevised(
        id=derive_event_id(NS, command_id), schema=1, ns=NS, aggregate="memory",
        aggregate_id=mid, actor=Actor(principal="buggy-writer"), command_id=command_id,
        correlation_id=command_id, at=datetime.now(UTC),
        data=MemoryRevisedData(version_id="0" * 32, parent_version_id=created["version_id"],
                               content="v2", content_hash="f" * 64),
    )
    ack = await nc.jetstream().publish(event_subject(NS, "memory", mid), encode_event(broken),
                                       headers={"Nats-Msg-Id": broken.id})
    return broken, int(ack.seq)


async def test_a_dead_lettered_event_is_named_not_hidden(config: Config) -> None:
    async with running_gateway(config) as (http, nc):
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "v1",
                                                                "tags": ["t"]})).json()
        mid = created["memory_id"]
        _, seq = await _publish_broken_revision(nc, created)
        for path in (f"/v1/{NS}/memories/{mid}", f"/v1/{NS}/memories/{mid}/history",
                     f"/v1/{NS}/memories/{mid}/log", f"/v1/{NS}/memories"):
            response = await http.get(path, params={"after_seq": seq})
            assert response.status_code == 500, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "dead_lettered" and error["detail"]["seq"] == seq, error
        for path in (f"/v1/{NS}/memories/{mid}", f"/v1/{NS}/memories/{mid}/history"):
            response = await http.get(path)  # without after_seq too: the memory is diverged
            assert response.status_code == 500 and response.json()["error"]["code"] == (
                "dead_lettered"), response.text
        found = (await http.get(f"/v1/{NS}/search", params={"q": "v1", "mode": "lexical"})
                 ).json()
        assert [hit["memory"]["memory_id"] for hit in found["hits"]] == []
        listed = (await http.get(f"/v1/{NS}/memories", params={"tags": "t"})).json()
        assert listed["items"] == []


async def test_operators_see_dead_letters_consumers_and_lag(config: Config) -> None:
    """Issue 17: ``mnemos dlq list|show`` read the parked message back with why; ``mnemos
    status`` shows every consumer on the stream (a third-party durable too), lag and the DLQ."""
    from nats.js.api import ConsumerConfig

    from libs.events import EVENTS_STREAM
    from mnemos.dlq import read_dead_letters, show_dead_letter
    from mnemos.status import collect_status

    async with running_gateway(config) as (http, nc):
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "v1"})).json()
        broken, seq = await _publish_broken_revision(nc, created)
        answer = await http.get(f"/v1/{NS}/memories/{created['memory_id']}",
                                params={"after_seq": seq})
        assert answer.json()["error"]["code"] == "dead_lettered", answer.text
        js = nc.jetstream()
        await js.add_consumer(EVENTS_STREAM, ConsumerConfig(
            durable_name="billing_watcher", filter_subject=f"mnemos.evt.{NS}.>"))
        letters = [e for e in await read_dead_letters(config, "projector", limit=10_000)
                   if e.original_seq == seq]
        assert len(letters) == 1, letters
        letter = letters[0]
        assert letter.ns == NS and "content" in letter.error and letter.attempts, letter
        shown = await show_dead_letter(config, letter.dlq_seq)
        assert shown["payload"]["id"] == broken.id and shown["original_seq"] == seq, shown
        status = await collect_status(config)
        assert status.errors == [], status.errors
        watcher = status.consumers["billing_watcher"]
        assert watcher["owner"] == "third-party" and watcher["pending"] >= 2, watcher
        assert status.consumers["projector"]["owner"] == "mnemos"
        assert status.lag["read_models"] == 0, status.lag
        assert status.dead_letters["messages"] >= 1, status.dead_letters
