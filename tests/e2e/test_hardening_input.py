"""Bad input at the edge (issue 10, defects 1, 2, 3 and 12): refused with a typed 400 that
appends nothing, on HTTP and on NATS; numbers round-trip exactly through the real projector,
the gateway and the auditor's verification."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.events import EVENTS_STREAM
from libs.runtime.config import Config
from mnemos.demo import run_demo
from services.auditor.verify import verify
from tests.support.auditor import running_auditor, wait_for_head
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "edge"


class Edge:
    def __init__(self, http: httpx.AsyncClient, nc: Any, config: Config) -> None:
        self.http, self.nc, self.js, self.config = http, nc, nc.jetstream(), config

    async def count(self) -> int:
        return int((await self.js.stream_info(EVENTS_STREAM)).state.messages)

    async def nats(self, subject: str, body: bytes) -> dict[str, Any]:
        reply = await self.nc.request(subject, body, timeout=10)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    async def remember(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post(f"/v1/{NS}/memories", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
async def edge(config: Config) -> AsyncIterator[Edge]:
    async with running_gateway(config) as (http, nc):
        yield Edge(http, nc, config)


def _raw(body: str) -> bytes:
    """JSON text sent as is (so escapes such as \\u0000 reach the server unchanged)."""
    return body.encode()


async def test_text_postgres_cannot_store_is_refused_everywhere(edge: Edge) -> None:
    memory = await edge.remember(content="x")
    mid = memory["memory_id"]
    before = await edge.count()
    bad_bodies: list[tuple[str, str]] = [
        (f"/v1/{NS}/memories", '{"content": "a\\u0000b"}'),
        (f"/v1/{NS}/memories", '{"content": "ok", "metadata": {"k": "v\\u0000"}}'),
        (f"/v1/{NS}/memories", '{"content": "ok", "metadata": {"k\\u0000": 1}}'),
        (f"/v1/{NS}/memories", '{"content": "ok", "source": "s\\u0000"}'),
        (f"/v1/{NS}/memories", '{"content": "ok", "actor": {"agent_id": "a\\u0000"}}'),
        (f"/v1/{NS}/memories", '{"content": "ok", "correlation_id": "c\\u0000"}'),
        (f"/v1/{NS}/memories", '{"content": "lone \\ud800 surrogate"}'),
        (f"/v1/{NS}/memories/{mid}/forget", '{"reason": "gone\\u0000"}'),
        (f"/v1/{NS}/memories/{mid}/revise", '{"content": "new", "reason": "r\\u0000"}'),
        (f"/v1/{NS}/memories/{mid}/revise", '{"content": "n\\u0000ew"}'),
        (f"/v1/{NS}/memories/{mid}/metadata", '{"set": {"k": "\\u0000"}}'),
        (f"/v1/{NS}/commands/remember", '{"content": "\\u0000"}'),
    ]
    for path, body in bad_bodies:
        response = await edge.http.post(path, content=_raw(body),
                                        headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["error"]["code"] == "invalid_input", response.text
    for name, body in [("remember", '{"content": "a\\u0000"}'),
                       ("forget", f'{{"memory_id": "{mid}", "reason": "x\\u0000"}}'),
                       ("tag", f'{{"memory_id": "{mid}", "add": ["ok"], '
                               '"actor": {"model": "\\u0000"}}')]:
        answer = await edge.nats(f"mnemos.cmd.{NS}.{name}", _raw(body))
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_input", answer
    for query, body in [("search", '{"q": "a\\u0000"}'), ("list", '{"agent_id": "\\u0000"}')]:
        answer = await edge.nats(f"mnemos.qry.{NS}.{query}", _raw(body))
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_input", answer
    searched = await edge.http.get(f"/v1/{NS}/search", params={"q": "a\u0000b"})
    assert searched.status_code == 400, searched.text
    assert await edge.count() == before
    served = await edge.http.get(f"/v1/{NS}/memories/{mid}",
                                 params={"after_seq": memory["seq"]})
    assert served.status_code == 200 and served.json()["content"] == "x"


async def test_invalid_utf8_is_a_400_on_http_and_nats(edge: Edge) -> None:
    memory = await edge.remember(content="x")
    before = await edge.count()
    for path in (f"/v1/{NS}/memories", f"/v1/{NS}/search", f"/v1/{NS}/commands/remember",
                 f"/v1/{NS}/memories/{memory['memory_id']}/revise"):
        response = await edge.http.post(path, content=b'{"content":"\xff","q":"\xed\xa0\x80"}',
                                        headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
    for subject in (f"mnemos.cmd.{NS}.remember", f"mnemos.qry.{NS}.search"):
        answer = await edge.nats(subject, b'{"content":"\xff","q":"\xff"}')
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_input", answer
    assert await edge.count() == before


async def test_invisible_content_and_reserved_namespace_are_refused(edge: Edge) -> None:
    before = await edge.count()
    for content in ("\u200b", " \u200b\u2060\ufeff\t", "\u0301"):
        response = await edge.http.post(f"/v1/{NS}/memories", json={"content": content})
        assert response.status_code == 400, (content, response.text)
    response = await edge.http.post("/v1/system/memories", json={"content": "mine"})
    assert response.status_code == 400 and "reserved" in response.json()["error"]["message"]
    answer = await edge.nats("mnemos.cmd.system.remember", b'{"content": "mine"}')
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input"
    assert await edge.count() == before


_EXTREMES: list[float | int] = [
    -1.7976931348623157e308, 1.7976931348623157e308, 1e20, -1e20, -0.0, 0.0, 5e-324, 1e-7,
    0.1, 2.5e-310, 123456789.125, 2**53 + 1, -(2**63), 2**64, 10**30, 0, -1,
]
NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from(_EXTREMES),
)


def _same(a: object, b: object) -> bool:
    """Equal as JSON values, including the type (1 vs 1.0) and the sign of zero."""
    return msgspec.json.encode(a) == msgspec.json.encode(b)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(NUMBERS, min_size=40, max_size=40))
async def test_numbers_round_trip_and_verify_passes(config: Config, values: list[float | int]
                                                    ) -> None:
    async with running_gateway(config) as (http, nc), running_auditor(config):
        metadata = {f"k{i:02d}": value for i, value in enumerate([*_EXTREMES, *values][:60])}
        created = await http.post(f"/v1/{NS}/memories",
                                  json={"content": "numbers", "metadata": metadata})
        assert created.status_code in (200, 201), created.text
        mid, seq = created.json()["memory_id"], created.json()["seq"]
        changed = await http.post(f"/v1/{NS}/memories/{mid}/metadata",
                                  json={"set": {"k00": -0.0, "extra": 1e21}, "unset": ["k01"]})
        assert changed.status_code == 200, changed.text
        seq = max(seq, changed.json()["seq"])
        served = (await http.get(f"/v1/{NS}/memories/{mid}", params={"after_seq": seq})).json()
        expected = {**metadata, "k00": -0.0, "extra": 1e21}
        del expected["k01"]
        assert served["metadata"].keys() == expected.keys()
        for key, value in expected.items():
            assert _same(served["metadata"][key], value), (key, value, served["metadata"][key])
            if isinstance(value, float):
                assert math.copysign(1.0, served["metadata"][key]) == math.copysign(1.0, value)
        events = (await http.get(f"/v1/{NS}/memories/{mid}/history")).json()["events"]
        assert _same(events[0]["data"]["metadata"], metadata)
        last = (await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq
        await wait_for_head(config, last)
        report = await verify(config, full=True)
        assert report.ok, msgspec.json.encode(report)


async def test_after_seq_is_checked_before_any_wait(edge: Edge) -> None:
    memory = await edge.remember(content="x")
    for path in ("/v1/BAD.NS/memories/x", f"/v1/{NS}/memories/a.b", f"/v1/{NS}/memories/x",
                 f"/v1/{NS}/memories", f"/v1/{NS}/memories/{memory['memory_id']}/history"):
        started = time.monotonic()
        response = await edge.http.get(path, params={"after_seq": 99_999_999})
        assert time.monotonic() - started < 1.0, path
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
    answer = await edge.nats(f"mnemos.qry.{NS}.get",
                             b'{"memory_id": "x", "after_seq": 99999999}')
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input", answer
    assert "beyond the stream" in answer["error"]["message"]


async def test_the_demo_writes_its_memories_once(edge: Edge) -> None:
    base = str(edge.http.base_url)
    await asyncio.to_thread(run_demo, base, "demo")
    after_first = await edge.count()
    await asyncio.to_thread(run_demo, base, "demo")
    assert after_first == 3 and await edge.count() == after_first
