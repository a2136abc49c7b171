"""Retrieval through the real gateway (issue 12): the two clocks, threads and context, recency,
a top-k that does not depend on k, and bad inputs refused with nothing appended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from libs.events import EVENTS_STREAM
from libs.runtime.config import Config
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "retrieval"


class Client:
    def __init__(self, http: httpx.AsyncClient, js: Any) -> None:
        self.http = http
        self.js = js
        self.last_seq = 0

    async def remember(self, content: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post(f"/v1/{NS}/memories", json={"content": content, **body})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        self.last_seq = max(self.last_seq, int(result["seq"]))
        return result

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(f"/v1/{NS}/{path}",
                                       params={"after_seq": self.last_seq, **params})
        assert response.status_code == 200, response.text
        return response.json()

    async def search(self, q: str, **params: Any) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = (await self.get("search", q=q, **params))["hits"]
        return hits

    async def stream_count(self) -> int:
        return int((await self.js.stream_info(EVENTS_STREAM)).state.messages)


@pytest.fixture
async def client(config: Config) -> AsyncIterator[Client]:
    async with running_gateway(config) as (http, nc):
        yield Client(http, nc.jetstream())


def _ids(hits: list[dict[str, Any]]) -> list[str]:
    return [hit["memory"]["memory_id"] for hit in hits]


async def test_occurred_at_round_trips_and_filters(client: Client) -> None:
    old = await client.remember("The team offsite happened in Porto",
                                occurred_at="2023-05-08T15:56:00+02:00")
    now = await client.remember("The team offsite is planned for Lisbon")
    seen = await client.get(f"memories/{old['memory_id']}")
    assert datetime.fromisoformat(seen["occurred_at"]) == datetime.fromisoformat(
        "2023-05-08T13:56:00+00:00")
    fresh = await client.get(f"memories/{now['memory_id']}")
    assert fresh["occurred_at"] == fresh["created_at"]  # defaults to the recording time
    assert fresh["thread"] is None
    before = await client.get("memories", occurred_until="2024-01-01T00:00:00Z")
    assert [m["memory_id"] for m in before["items"]] == [old["memory_id"]]
    after = await client.search("team offsite", occurred_since="2024-01-01T00:00:00Z")
    assert _ids(after) == [now["memory_id"]]
    revised = await client.http.post(
        f"/v1/{NS}/memories/{now['memory_id']}/revise",
        json={"content": "The team offsite is planned for Lisbon",
              "occurred_at": "2025-09-01T09:00:00Z"})
    assert revised.status_code == 200, revised.text  # only the time changed: still a change
    client.last_seq = revised.json()["seq"]
    moved = await client.get(f"memories/{now['memory_id']}")
    assert moved["occurred_at"].startswith("2025-09-01T09:00:00")
    assert moved["version_count"] == 2


async def test_threads_order_turns_and_search_returns_context(client: Client) -> None:
    turns = [
        "Maria: Hi Tom, long time no see!",
        "Tom: Hey Maria, how was your weekend?",
        "Maria: What did you think of the pottery class?",
        "Tom: I loved it, I made a blue vase with a wide handle.",
        "Maria: Great, bye for now!",
    ]
    # Written out of order with explicit positions: the thread's order is the positions'.
    written = {}
    for position in (3, 0, 4, 1, 2):
        written[position] = await client.remember(turns[position], thread="chat-1",
                                                  thread_position=position)
    other = await client.remember("Maria: The pottery class was cancelled", thread="chat-2")
    page = await client.get("threads", thread="chat-1", limit=3)
    assert [m["content"] for m in page["items"]] == turns[:3]
    assert [m["thread"] for m in page["items"]] == [
        {"id": "chat-1", "position": p} for p in range(3)]
    rest = await client.get("threads", thread="chat-1", cursor=page["next_cursor"])
    assert [m["content"] for m in rest["items"]] == turns[3:] and rest["next_cursor"] is None
    later = await client.get("threads", thread="chat-1", from_position=3)
    assert [m["content"] for m in later["items"]] == turns[3:]
    # Equal positions (a writer's choice) are ordered by id; pages neither repeat nor skip.
    ties = [await client.remember(f"tie {i}", thread="ties", thread_position=7) for i in range(5)]
    paged: list[str] = []
    cursor = None
    while True:
        params = {"thread": "ties", "limit": 2, **({"cursor": cursor} if cursor else {})}
        part = await client.get("threads", **params)
        paged += [m["memory_id"] for m in part["items"]]
        cursor = part["next_cursor"]
        if cursor is None:
            break
    assert paged == sorted(t["memory_id"] for t in ties)
    seen = await client.get(f"memories/{other['memory_id']}")
    assert seen["thread"]["id"] == "chat-2" and seen["thread"]["position"] == other["seq"]

    hits = await client.search("what did Tom think of the pottery class", k=3, context=1,
                               thread="chat-1", mode="lexical")
    assert hits[0]["memory"]["memory_id"] == written[2]["memory_id"]
    assert [m["content"] for m in hits[0]["context"]] == [turns[1], turns[3]]
    # The answer is the next turn: it ranks right after the question that restates the query.
    assert _ids(hits)[1] == written[3]["memory_id"]
    assert "thread" in hits[1]["matched"]
    wide = await client.search("pottery class", k=3, context=10, thread="chat-1",
                               mode="lexical")
    assert [m["content"] for m in wide[0]["context"]] == [t for t in turns if t != turns[2]]
    assert (await client.search("pottery class", thread="nope")) == []


async def test_prefer_recent_on_either_clock(client: Client) -> None:
    # Equal matches (the same words): only time can tell them apart. `new` happened later
    # but was recorded first.
    new = await client.remember("Ana's favourite band is Radiohead.",
                                occurred_at="2026-01-01T00:00:00Z")
    old = await client.remember("Ana's favourite band: Radiohead",
                                occurred_at="2020-01-01T00:00:00Z")
    await client.remember("Radiohead is a band")
    plain = await client.search("Ana favourite band", mode="lexical")
    assert plain[0]["score"] == plain[1]["score"]
    recent = await client.search("Ana favourite band", mode="lexical", prefer_recent="occurred",
                                 half_life_days=30, as_of="2026-02-01T00:00:00Z")
    assert _ids(recent)[:2] == [new["memory_id"], old["memory_id"]]
    assert recent[1]["score"] < recent[0]["score"] <= plain[0]["score"]
    recorded = await client.search("Ana favourite band", mode="lexical",
                                   prefer_recent="recorded")
    assert _ids(recorded)[:2] == [old["memory_id"], new["memory_id"]]


async def test_top_k_is_the_same_whatever_k(client: Client) -> None:
    for i in range(40):
        await client.remember(f"Note {i}: the garden needs water, tomatoes {i % 7} and beans",
                              thread=f"t{i % 3}")
    for mode in ("hybrid", "lexical", "dense"):
        ten = await client.search("watering the tomatoes in the garden", k=10, mode=mode)
        five = await client.search("watering the tomatoes in the garden", k=5, mode=mode)
        assert _ids(five) == _ids(ten)[:5], mode
        for hit in ten:
            assert (hit["dense_score"] is None) == (hit["dense_rank"] is None)
            assert (hit["lexical_score"] is None) == (hit["lexical_rank"] is None)


@pytest.mark.parametrize(("method", "path", "payload"), [
    ("post", "memories", {"content": "x", "occurred_at": "2023-05-08T13:56:00"}),
    ("post", "memories", {"content": "x", "occurred_at": "2023-13-40T00:00:00Z"}),
    ("post", "memories", {"content": "x", "thread": "bad thread"}),
    ("post", "memories", {"content": "x", "thread": "t\u0000"}),
    ("post", "memories", {"content": "x", "thread": "t", "thread_position": -1}),
    ("post", "memories", {"content": "x", "thread": "t", "thread_position": 2**53}),
    ("post", "memories", {"content": "x", "thread_position": 1}),
    ("get", "search", {"q": "x", "context": 11}),
    ("get", "search", {"q": "x", "half_life_days": 0}),
    ("get", "search", {"q": "x", "half_life_days": "nan"}),
    ("get", "search", {"q": "x", "half_life_days": "1e999"}),
    ("get", "search", {"q": "x", "as_of": "2023-05-08T13:56:00"}),
    ("get", "search", {"q": "x", "occurred_since": "2023-05-08"}),
    ("get", "memories", {"occurred_until": "0.5"}),  # lax coercion read numbers as Unix time
    ("get", "memories", {"since": "1700000000"}),
    ("get", "search", {"q": "x", "prefer_recent": "soon"}),
    ("post", "search", {"q": "x", "context": 1.5}),
    ("post", "search", {"q": "x", "half_life_days": -3}),
    ("get", "threads", {"thread": ""}),
    ("get", "threads", {"thread": "t", "from_position": -1}),
    ("get", "threads", {"thread": "t", "limit": 0}),
    ("get", "threads", {"thread": "t", "cursor": "not-a-cursor"}),
    ("get", "threads", {"thread": "t", "cursor": "WzE4NDQ2NzQ0MDczNzA5NTUxNjE1LCJ4Il0"}),  # 2^64-1
    ("get", "threads", {"thread": "t", "cursor": "WzEsIlx1MDAwMCJd"}),  # [1, "\u0000"]
])
async def test_bad_inputs_are_400_and_append_nothing(client: Client, method: str, path: str,
                                                     payload: dict[str, Any]) -> None:
    before = await client.stream_count()
    url = f"/v1/{NS}/{path}"
    if method == "post":
        response = await client.http.post(url, json=payload)
    else:
        response = await client.http.get(url, params=payload)
    assert response.status_code == 400, (payload, response.text)
    assert await client.stream_count() == before
