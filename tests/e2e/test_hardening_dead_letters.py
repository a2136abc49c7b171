"""An acknowledged event that could not be projected is never hidden (issue 10, defect 1):
read-your-writes names it instead of answering stale data, and the memory it belongs to is not
served as if nothing had happened."""

from __future__ import annotations

from datetime import UTC, datetime

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


async def test_a_dead_lettered_event_is_named_not_hidden(config: Config) -> None:
    async with running_gateway(config) as (http, nc):
        created = (await http.post(f"/v1/{NS}/memories", json={"content": "v1",
                                                                "tags": ["t"]})).json()
        mid = created["memory_id"]
        # A revision whose content hash does not match its content: an invariant violation,
        # dead-lettered by the projector after it was acknowledged by the stream.
        command_id = new_command_id()
        broken = MemoryRevised(
            id=derive_event_id(NS, command_id), schema=1, ns=NS, aggregate="memory",
            aggregate_id=mid, actor=Actor(principal="buggy-writer"), command_id=command_id,
            correlation_id=command_id, at=datetime.now(UTC),
            data=MemoryRevisedData(version_id="0" * 32, parent_version_id=created["version_id"],
                                   content="v2", content_hash="f" * 64),
        )
        ack = await nc.jetstream().publish(event_subject(NS, "memory", mid), encode_event(broken),
                                           headers={"Nats-Msg-Id": broken.id})
        for path in (f"/v1/{NS}/memories/{mid}", f"/v1/{NS}/memories/{mid}/history",
                     f"/v1/{NS}/memories/{mid}/log", f"/v1/{NS}/memories"):
            response = await http.get(path, params={"after_seq": ack.seq})
            assert response.status_code == 500, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "dead_lettered" and error["detail"]["seq"] == ack.seq, error
        for path in (f"/v1/{NS}/memories/{mid}", f"/v1/{NS}/memories/{mid}/history"):
            response = await http.get(path)  # without after_seq too: the memory is diverged
            assert response.status_code == 500 and response.json()["error"]["code"] == (
                "dead_lettered"), response.text
        found = (await http.get(f"/v1/{NS}/search", params={"q": "v1", "mode": "lexical"})
                 ).json()
        assert [hit["memory"]["memory_id"] for hit in found["hits"]] == []
        listed = (await http.get(f"/v1/{NS}/memories", params={"tags": "t"})).json()
        assert listed["items"] == []
