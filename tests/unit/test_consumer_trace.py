"""``trace_of``: the ids a consumer logs per event, from stored bytes, never raising."""

from __future__ import annotations

import json

import pytest

from libs.consumer.deliveries import trace_of
from libs.events import encode_event
from tests.support.auditor import memory_created


def test_an_event_gives_its_ids() -> None:
    event = memory_created("team-a", 0, content="The user prefers dark mode")
    raw = encode_event(event)
    assert trace_of(raw) == {
        "event_id": event.id, "event_type": json.loads(raw)["type"], "command_id": event.command_id,
        "correlation_id": event.correlation_id}


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"\xff\xfe invalid utf-8", b"[1, 2]", b"null", b'"\\u0000"',
    b'{"id": "\\ud800"', b'{"id": "\\ud800"}', b'{"id": 1e999}', b'{"command_id": 12}',
    b"{" * 10_000,
])
def test_bytes_that_are_not_an_event_give_nothing(raw: bytes) -> None:
    assert trace_of(raw) == {}


def test_missing_fields_are_left_out_and_others_ignored() -> None:
    raw = json.dumps({"correlation_id": "c\u0000x", "data": {"x": [1] * 1000}}).encode()
    assert trace_of(raw) == {"correlation_id": "c\u0000x"}
