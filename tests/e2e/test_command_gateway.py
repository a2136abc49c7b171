"""The gateway end to end: the real uvicorn server and NATS subscriptions started by
``services.command.main.run``, the real projector, real nats-server and Postgres + pgvector."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from libs.events import EVENTS_STREAM, new_command_id
from libs.runtime.config import Config
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "team-a"
OTHER = "team-b"


@dataclass
class System:
    http: httpx.AsyncClient
    nc: Any
    js: Any
    config: Config

    async def stream_count(self) -> int:
        return int((await self.js.stream_info(EVENTS_STREAM)).state.messages)

    async def request(self, subject: str, payload: bytes, principal: str | None = None
                      ) -> dict[str, Any]:
        headers = {"Mnemos-Principal": principal} if principal else None
        msg = await self.nc.request(subject, payload, timeout=10, headers=headers)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def remember(self, ns: str = NS, **body: Any) -> dict[str, Any]:
        response = await self.http.post(f"/v1/{ns}/memories", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
async def system(config: Config) -> AsyncIterator[System]:
    config = config.model_copy(update={"read_your_writes_timeout_s": 1.5})
    async with running_gateway(config) as (http, nc):
        yield System(http=http, nc=nc, js=nc.jetstream(), config=config)


async def test_remember_then_search_get_history_with_provenance(system: System) -> None:
    http = system.http
    created = await system.remember(
        content="The user's favourite colour is ultramarine blue", kind="preference",
        tags=["ui", "colour"], metadata={"confidence": 0.9}, source="chat-7",
        actor={"agent_id": "planner", "model": "m-1", "provider": "acme"},
    )
    other = await system.remember(content="Lisbon is where the user lives", tags=["geo"])
    for mode in ("hybrid", "dense", "lexical"):
        found = await http.get(f"/v1/{NS}/search", params={
            "q": "what colour does the user like", "after_seq": other["seq"], "mode": mode})
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]
        assert hits and hits[0]["memory"]["memory_id"] == created["memory_id"], (mode, hits)
        assert mode == "hybrid" or hits[0]["matched"] == [mode]
    hybrid = (await http.post(f"/v1/{NS}/search", json={
        "q": "ultramarine", "k": 5, "tags": ["colour"], "after_seq": other["seq"]})).json()
    assert [h["memory"]["memory_id"] for h in hybrid["hits"]] == [created["memory_id"]]
    assert set(hybrid["hits"][0]["matched"]) == {"dense", "lexical"}

    revised = await http.post(
        f"/v1/{NS}/memories/{created['memory_id']}/revise",
        json={"content": "The user's favourite colour is teal", "reason": "changed mind",
              "expected_version": created["revision"]},
        headers={"X-Mnemos-Principal": "bob"},
    )
    assert revised.status_code == 200, revised.text
    seq = revised.json()["seq"]
    memory = (await http.get(f"/v1/{NS}/memories/{created['memory_id']}",
                             params={"after_seq": seq})).json()
    assert memory["content"] == "The user's favourite colour is teal"
    assert memory["created_by"] == {"principal": "anonymous", "agent_id": "planner",
                                    "model": "m-1", "provider": "acme"}
    assert memory["updated_by"]["principal"] == "bob"
    assert memory["source"] == "chat-7" and memory["agent_id"] == "planner"
    assert memory["created_command_id"] == created["command_id"]
    assert memory["tags"] == ["colour", "ui"] and memory["metadata"] == {"confidence": 0.9}
    assert memory["head_version_id"] == revised.json()["version_id"]
    assert memory["revision"] == seq and memory["version_count"] == 2

    history = (await http.get(f"/v1/{NS}/memories/{created['memory_id']}/history")).json()
    assert [v["version_id"] for v in history["versions"]] == [
        created["version_id"], revised.json()["version_id"]]
    assert history["versions"][1]["parent_ids"] == [created["version_id"]]
    assert [e["type"] for e in history["events"]] == ["MemoryCreated", "MemoryRevised"]

    # a stale expected_version is a 409 and appends nothing
    count = await system.stream_count()
    stale = await http.post(f"/v1/{NS}/memories/{created['memory_id']}/tag",
                            json={"add": ["x"], "expected_version": created["revision"]})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"
    assert await system.stream_count() == count


async def test_list_filters_pagination_links_and_forget(system: System) -> None:
    http = system.http
    a = await system.remember(content="alpha fact", kind="fact", tags=["x", "y"],
                              actor={"agent_id": "scout"})
    b = await system.remember(content="beta fact", kind="fact", tags=["x"])
    c = await system.remember(content="gamma note", tags=["y"])
    link = await http.post(f"/v1/{NS}/memories/{a['memory_id']}/link",
                           json={"target_memory_id": b["memory_id"], "relation": "supports"})
    assert link.status_code == 200, link.text
    after = link.json()["seq"]

    async def ids(**params: Any) -> list[str]:
        page = await http.get(f"/v1/{NS}/memories", params={"after_seq": after, **params})
        assert page.status_code == 200, page.text
        return [m["memory_id"] for m in page.json()["items"]]

    assert await ids() == [c["memory_id"], b["memory_id"], a["memory_id"]]
    # One name per field on every transport (issue 10, defect 12): tags, agent_id.
    assert await ids(tags=["x", "y"]) == [a["memory_id"]]
    assert await ids(kind="fact") == [b["memory_id"], a["memory_id"]]
    assert await ids(agent_id="scout") == [a["memory_id"]]
    first = (await http.get(f"/v1/{NS}/memories", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (await http.get(f"/v1/{NS}/memories",
                           params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [m["memory_id"] for m in rest["items"]] == [a["memory_id"]]
    assert rest["next_cursor"] is None
    got = (await http.get(f"/v1/{NS}/memories/{a['memory_id']}")).json()
    assert [(lk["target_memory_id"], lk["relation"]) for lk in got["links"]] == [
        (b["memory_id"], "supports")]

    forgot = await http.post(f"/v1/{NS}/memories/{b['memory_id']}/forget",
                             json={"reason": "user asked"})
    assert forgot.status_code == 200
    seq = forgot.json()["seq"]
    gone = await http.get(f"/v1/{NS}/memories/{b['memory_id']}", params={"after_seq": seq})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert b["memory_id"] not in await ids()
    search = (await http.get(f"/v1/{NS}/search", params={"q": "beta fact"})).json()
    assert b["memory_id"] not in [h["memory"]["memory_id"] for h in search["hits"]]
    assert (await http.get(f"/v1/{NS}/memories/{a['memory_id']}")).json()["links"] == []
    again = await http.post(f"/v1/{NS}/memories/{b['memory_id']}/revise", json={"content": "z"})
    assert again.status_code == 404


async def test_nats_commands_and_queries(system: System) -> None:
    cid = new_command_id()
    payload = json.dumps({"content": "Meeting moved to Thursday 3pm", "command_id": cid,
                          "tags": ["calendar"]}).encode()
    reply = await system.request(f"mnemos.cmd.{NS}.remember", payload, principal="agent-7")
    assert reply["ok"] is True, reply
    result = reply["result"]
    repeat = await system.request(f"mnemos.cmd.{NS}.remember", payload)
    assert repeat["ok"] and repeat["result"]["duplicate"] is True
    assert repeat["result"]["seq"] == result["seq"]
    assert await system.stream_count() == 1

    search = await system.request(f"mnemos.qry.{NS}.search", json.dumps(
        {"q": "when is the meeting", "after_seq": result["seq"]}).encode())
    assert search["ok"], search
    assert search["result"]["hits"][0]["memory"]["memory_id"] == result["memory_id"]
    got = await system.request(f"mnemos.qry.{NS}.get", json.dumps(
        {"memory_id": result["memory_id"]}).encode())
    assert got["result"]["created_by"]["principal"] == "agent-7"
    listed = await system.request(f"mnemos.qry.{NS}.list", b"")
    assert [m["memory_id"] for m in listed["result"]["items"]] == [result["memory_id"]]
    history = await system.request(f"mnemos.qry.{NS}.history", json.dumps(
        {"memory_id": result["memory_id"]}).encode())
    assert len(history["result"]["versions"]) == 1
    # After the read models have it, a repeat is answered from command_results.
    third = await system.request(f"mnemos.cmd.{NS}.remember", payload)
    assert third["result"]["duplicate"] and third["result"]["event_id"] == result["event_id"]
    unknown = await system.request(f"mnemos.qry.{NS}.explode", b"{}")
    assert unknown["error"]["code"] == "unknown_command"


async def test_bad_input_gets_typed_errors_and_appends_nothing(system: System) -> None:
    http, limit = system.http, system.config.max_content_bytes
    http_cases = [
        ("/v1/a.b/memories", {"content": "x"}, 400, "invalid_input"),
        ("/v1/*/memories", {"content": "x"}, 400, "invalid_input"),
        ("/v1/UPPER/memories", {"content": "x"}, 400, "invalid_input"),
        (f"/v1/{NS}/memories", {"content": "   "}, 400, "invalid_input"),
        (f"/v1/{NS}/memories", {"content": "x" * (limit + 1)}, 413, "payload_too_large"),
        (f"/v1/{NS}/memories", {"content": "x", "kind": "Not A Kind"}, 400, "invalid_input"),
        (f"/v1/{NS}/memories", {"content": "x", "command_id": "123"}, 400, "invalid_input"),
        (f"/v1/{NS}/commands/fly", {"content": "x"}, 404, "unknown_command"),
        (f"/v1/{NS}/memories/nope/revise", {"content": "x"}, 404, "not_found"),
        (f"/v1/{NS}/memories/nope/revise", {"content": "x", "memory_id": "other"}, 400,
         "invalid_input"),
    ]
    for path, body, status, code in http_cases:
        response = await http.post(path, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
    malformed = await http.post(f"/v1/{NS}/memories", content=b"{nope",
                                headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and "malformed" in malformed.json()["error"]["message"]
    huge = await http.post(f"/v1/{NS}/commands/remember",
                           content=b"x" * (system.config.max_request_bytes + 1))
    assert huge.status_code == 413
    bad_param = await http.get(f"/v1/{NS}/search", params={"q": "x", "k": "many"})
    assert bad_param.status_code == 400 and bad_param.json()["error"]["code"] == "invalid_input"
    no_route = await http.get("/v2/nothing")
    assert no_route.status_code == 404 and no_route.json()["error"]["code"] == "not_found"

    ok = json.dumps({"content": "x"}).encode()
    nats_cases = [
        ("mnemos.cmd.a.b.remember", ok, "invalid_input"),
        ("mnemos.cmd.*.remember", ok, "invalid_input"),
        (f"mnemos.cmd.{NS}.remember", b'{"content": ""}', "invalid_input"),
        (f"mnemos.cmd.{NS}.remember", json.dumps({"content": "x" * (limit + 1)}).encode(),
         "payload_too_large"),
        (f"mnemos.cmd.{NS}.remember", b"x" * (system.config.max_request_bytes + 1),
         "payload_too_large"),
        (f"mnemos.cmd.{NS}.remember", b"{not json", "invalid_input"),
        (f"mnemos.cmd.{NS}.fly", ok, "unknown_command"),
        (f"mnemos.qry.{NS}.search", b'{"q": "x", "k": 0}', "invalid_input"),
    ]
    for subject, payload, code in nats_cases:
        reply = await system.request(subject, payload)
        assert reply["ok"] is False and reply["error"]["code"] == code, (subject, reply)
    assert await system.stream_count() == 0


async def test_namespaces_are_isolated(system: System) -> None:
    http = system.http
    mine = await system.remember(content="secret launch codes are in the vault")
    seq = mine["seq"]
    mid = mine["memory_id"]
    assert (await http.get(f"/v1/{OTHER}/memories/{mid}", params={"after_seq": seq})
            ).status_code == 404
    assert (await http.get(f"/v1/{OTHER}/memories/{mid}/history")).status_code == 404
    assert (await http.get(f"/v1/{OTHER}/memories")).json()["items"] == []
    search = await http.get(f"/v1/{OTHER}/search", params={"q": "launch codes vault"})
    assert search.status_code == 200 and search.json()["hits"] == []
    count = await system.stream_count()
    for alias, body in (("revise", {"content": "mine now"}), ("tag", {"add": ["x"]}),
                        ("forget", {"reason": "x"})):
        response = await http.post(f"/v1/{OTHER}/memories/{mid}/{alias}", json=body)
        assert response.status_code == 404, (alias, response.text)
    theirs = await system.remember(ns=OTHER, content="their note")
    cross = await http.post(f"/v1/{OTHER}/memories/{theirs['memory_id']}/link",
                            json={"target_memory_id": mid})
    assert cross.status_code == 404
    assert await system.stream_count() == count + 1
    assert (await http.get(f"/v1/{NS}/memories/{mid}")).status_code == 200


async def test_operations_endpoints_and_read_your_writes_timeout(system: System) -> None:
    http = system.http
    assert (await http.get("/healthz")).json() == {"ok": True}
    ready = (await http.get("/readyz")).json()
    assert ready == {"ready": True, "nats": True, "database": True, "storage": True}
    spec = (await http.get("/openapi.json")).json()
    for path in ("/v1/{ns}/commands/{name}", "/v1/{ns}/memories", "/v1/{ns}/search",
                 "/v1/{ns}/memories/{memory_id}/revise", "/v1/{ns}/memories/{memory_id}/history"):
        assert path in spec["paths"]
    assert {"Remember", "ReviseBody", "CommandResult", "ErrorReply", "SearchResults"} <= set(
        spec["components"]["schemas"])
    assert (await http.get("/docs")).status_code == 200
    await system.remember(content="counted")
    metrics = (await http.get("/metrics")).text
    assert 'mnemos_commands_total{command="remember",outcome="ok"}' in metrics
    # A sequence beyond the stream's end is refused at once (issue 10, defect 7); the
    # read-your-writes timeout itself is covered by test_hardening_recovery.py.
    far = await http.get(f"/v1/{NS}/memories", params={"after_seq": 10_000})
    assert far.status_code == 400
    error = far.json()["error"]
    assert error["code"] == "invalid_input" and error["detail"]["field"] == "after_seq"


async def test_the_cli_shows_the_servers_reason_and_field(system: System) -> None:
    """Issue 10, defect 12: ``mnemos recall x --mode fuzzy`` prints which field and why, not only
    "invalid request parameters" (the CLI's client and error text, against the real gateway)."""
    import asyncio

    from libs.events.errors import MnemosError
    from mnemos.client import GatewayClient, describe_error

    client = GatewayClient(str(system.http.base_url))
    with pytest.raises(MnemosError) as raised:
        await asyncio.to_thread(lambda: client.search(NS, "x", mode="fuzzy"))
    text = describe_error(raised.value)
    assert text.startswith("error [invalid_input]"), text
    assert "mode" in text, text


async def test_count_answers_on_http_and_nats_with_the_filters_of_list(system: System) -> None:
    """``count``: the small example of issue 11 (one struct, one handler, one catalog row)."""
    ns = "count-ns"
    for n in range(3):
        last = await system.remember(ns=ns, content=f"counted {n}", tags=["c"] if n else [])
    counted = await system.http.get(f"/v1/{ns}/count", params={"after_seq": last["seq"]})
    assert counted.status_code == 200 and counted.json() == {"count": 3}, counted.text
    tagged = await system.http.get(f"/v1/{ns}/count", params={"tags": "c"})
    assert tagged.json() == {"count": 2}, tagged.text
    reply = await system.request(f"mnemos.qry.{ns}.count", json.dumps({"tags": ["c"]}).encode())
    assert reply["ok"] is True and reply["result"] == {"count": 2}, reply
    bad = await system.http.get(f"/v1/{ns}/count", params={"kind": "NOT A KIND"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input", bad.text
