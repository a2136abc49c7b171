"""The version DAG end to end: branch/commit/merge/revert commands over HTTP and NATS, the
projector's branches and versions, the log/diff/ancestor queries, replay, isolation and forget.

Runs ``services.command.main.run`` and ``services.projector.main.run`` against real nats-server
and Postgres + pgvector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from libs.events import EVENTS_STREAM
from libs.runtime.config import Config
from services.projector.replay import replay
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
    last_seq: int = 0

    async def stream_count(self) -> int:
        return int((await self.js.stream_info(EVENTS_STREAM)).state.messages)

    async def command(self, memory_id: str, name: str, ns: str = NS, **body: Any
                      ) -> httpx.Response:
        response = await self.http.post(f"/v1/{ns}/memories/{memory_id}/{name}", json=body)
        if response.status_code == 200:
            self.last_seq = max(self.last_seq, response.json()["seq"])
        return response

    async def ok(self, memory_id: str, name: str, **body: Any) -> dict[str, Any]:
        response = await self.command(memory_id, name, **body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def remember(self, content: str) -> dict[str, Any]:
        response = await self.http.post(f"/v1/{NS}/memories", json={"content": content})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        self.last_seq = max(self.last_seq, result["seq"])
        return result

    async def get(self, path: str, ns: str = NS, **params: Any) -> httpx.Response:
        return await self.http.get(f"/v1/{ns}/memories/{path}",
                                   params={"after_seq": self.last_seq, **params})

    async def query(self, name: str, ns: str = NS, **body: Any) -> dict[str, Any]:
        msg = await self.nc.request(f"mnemos.qry.{ns}.{name}",
                                    json.dumps({"after_seq": self.last_seq, **body}).encode(),
                                    timeout=10)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply


@pytest.fixture
async def system(config: Config) -> AsyncIterator[System]:
    config = config.model_copy(update={"read_your_writes_timeout_s": 10.0})
    async with running_gateway(config) as (http, nc):
        yield System(http=http, nc=nc, js=nc.jetstream(), config=config)


async def _diamond(system: System) -> tuple[str, dict[str, str]]:
    """root -> (dev: ONE) and (main: THREE) -> three-way merge into main."""
    created = await system.remember("one\ntwo\nthree\n")
    mid, root = created["memory_id"], created["version_id"]
    await system.ok(mid, "branch", branch="dev")
    dev = await system.ok(mid, "commit", branch="dev", content="ONE\ntwo\nthree\n",
                          expected_head=root)
    main = await system.ok(mid, "revise", content="one\ntwo\nTHREE\n")
    merged = await system.ok(mid, "merge", into="main", **{"from": "dev"},
                             strategy="three_way", expected_head=main["version_id"])
    return mid, {"root": root, "dev": dev["version_id"], "main": main["version_id"],
                 "merge": merged["version_id"]}


async def test_diamond_merge_queries_and_replay_give_identical_ids(system: System) -> None:
    mid, v = await _diamond(system)
    memory = (await system.http.get(f"/v1/{NS}/memories/{mid}",
                                    params={"after_seq": system.last_seq})).json()
    assert memory["content"] == "ONE\ntwo\nTHREE\n"
    assert memory["head_version_id"] == v["merge"] and memory["version_count"] == 4

    log = (await system.get(f"{mid}/log")).json()
    assert [e["version_id"] for e in log["entries"]] == [v["merge"], v["main"], v["dev"],
                                                         v["root"]]
    merge_entry = log["entries"][0]
    assert merge_entry["origin"] == "merge" and merge_entry["strategy"] == "three_way"
    assert merge_entry["parent_ids"] == [v["main"], v["dev"]]  # caller order: ours first
    page1 = (await system.get(f"{mid}/log", limit=2)).json()
    page2 = (await system.get(f"{mid}/log", limit=2, cursor=page1["next_cursor"])).json()
    assert [e["version_id"] for e in page1["entries"] + page2["entries"]] == [
        e["version_id"] for e in log["entries"]]
    assert page2["next_cursor"] is None
    dev_log = await system.query("log", memory_id=mid, ref="dev")
    assert [e["version_id"] for e in dev_log["result"]["entries"]] == [v["dev"], v["root"]]

    branches = (await system.get(f"{mid}/branches")).json()["branches"]
    assert {b["branch"]: b["head_version_id"] for b in branches} == {
        "dev": v["dev"], "main": v["merge"]}
    ancestor = (await system.get(f"{mid}/common_ancestor", a="main", b=v["dev"])).json()
    assert ancestor["base"] == v["dev"]  # dev is merged into main
    ancestor = (await system.get(f"{mid}/common_ancestor", a=v["main"], b="dev")).json()
    assert ancestor["base"] == v["root"] and ancestor["lowest"] == [v["root"]]
    diff = (await system.get(f"{mid}/diff", **{"from": v["root"], "to": "main"})).json()
    assert diff["added"] == 2 and diff["removed"] == 2
    assert "-one\n+ONE\n" in diff["unified"] and "-three\n+THREE\n" in diff["unified"]
    assert diff["hunks"][0]["lines"][0] == {"kind": "delete", "text": "one\n"}
    version = (await system.get(f"{mid}/versions/{v['dev']}")).json()
    assert version["content"] == "ONE\ntwo\nthree\n" and version["branch"] == "dev"
    assert (await system.query("version", memory_id=mid, ref="main"))["result"][
        "version_id"] == v["merge"]

    # Rebuilding the read models from the stream gives the same rows, ids included.
    report = await replay(system.config, swap=False, progress=False, stall_timeout_s=1.0)
    assert report.verified is True, report.summary()
    assert report.rebuild_counts["memory_branches"] == 2
    assert report.rebuild_counts["memory_versions"] == 4


async def test_concurrent_commits_one_wins_per_head_losers_rebase(system: System) -> None:
    created = await system.remember("base\n")
    mid, root = created["memory_id"], created["version_id"]
    writers = 5

    async def attempt(i: int, head: str) -> httpx.Response:
        return await system.command(mid, "commit", branch="main", content=f"writer {i}\n",
                                    expected_head=head)

    first = await asyncio.gather(*(attempt(i, root) for i in range(writers)))
    assert sorted(r.status_code for r in first).count(200) == 1
    assert all(r.json()["error"]["code"] == "conflict" for r in first if r.status_code == 409)
    pending = [i for i, r in enumerate(first) if r.status_code == 409]
    rounds = 0
    while pending:
        rounds += 1
        heads = {i: first[i].json()["error"]["detail"]["head"] for i in pending}
        retry = await asyncio.gather(*(attempt(i, heads[i]) for i in pending))
        assert [r.status_code for r in retry].count(200) >= 1  # someone wins every round
        for i, response in zip(pending, retry, strict=True):
            first[i] = response
        pending = [i for i in pending if first[i].status_code == 409]
        assert rounds <= writers
    log = (await system.get(f"{mid}/log")).json()["entries"]
    assert len(log) == writers + 1
    assert all(len(e["parent_ids"]) <= 1 for e in log)  # one line, no lost write
    contents = {(await system.get(f"{mid}/versions/{e['version_id']}")).json()["content"]
                for e in log}
    assert contents == {"base\n", *(f"writer {i}\n" for i in range(writers))}


async def test_conflicting_three_way_merge_changes_nothing(system: System) -> None:
    created = await system.remember("shared line\n")
    mid = created["memory_id"]
    await system.ok(mid, "branch", branch="dev")
    await system.ok(mid, "commit", branch="dev", content="dev line\n")
    main = await system.ok(mid, "commit", branch="main", content="main line\n")
    before = await system.stream_count()
    response = await system.command(mid, "merge", into="main", **{"from": "dev"})
    assert response.status_code == 409, response.text
    detail = response.json()["error"]["detail"]
    assert detail["conflicts"][0]["ours_text"] == "main line\n"
    assert detail["conflicts"][0]["theirs_text"] == "dev line\n"
    assert "<<<<<<< ours" in detail["marked"]
    assert await system.stream_count() == before
    branches = (await system.get(f"{mid}/branches")).json()["branches"]
    assert {b["branch"]: b["head_version_id"] for b in branches}["main"] == main["version_id"]
    # NATS takes the same path and gives the same answer.
    msg = await system.nc.request(f"mnemos.cmd.{NS}.merge", json.dumps(
        {"memory_id": mid, "into": "main", "from": "dev"}).encode(), timeout=10)
    assert json.loads(msg.data)["error"]["code"] == "conflict"
    assert await system.stream_count() == before
    theirs = await system.ok(mid, "merge", into="main", **{"from": "dev"}, strategy="theirs")
    version = (await system.get(f"{mid}/versions/{theirs['version_id']}")).json()
    assert version["content"] == "dev line\n" and version["strategy"] == "theirs"


async def test_revert_of_a_revert(system: System) -> None:
    created = await system.remember("first\n")
    mid, v1 = created["memory_id"], created["version_id"]
    v2 = (await system.ok(mid, "revise", content="second\n"))["version_id"]
    v3 = (await system.ok(mid, "revert", to_version=v1, expected_head=v2))["version_id"]
    v4 = (await system.ok(mid, "revert", to_version=v2, expected_head=v3))["version_id"]
    memory = (await system.http.get(f"/v1/{NS}/memories/{mid}",
                                    params={"after_seq": system.last_seq})).json()
    assert memory["content"] == "second\n" and memory["head_version_id"] == v4
    log = (await system.get(f"{mid}/log")).json()["entries"]
    assert [(e["version_id"], e["origin"], e["reverted_to"]) for e in log] == [
        (v4, "revert", v2), (v3, "revert", v1), (v2, "revise", None), (v1, "create", None)]
    assert len({v1, v2, v3, v4}) == 4
    stale = await system.command(mid, "revert", to_version=v1, expected_head=v3)
    assert stale.status_code == 409


async def test_other_namespaces_see_and_change_nothing(system: System) -> None:
    mid, v = await _diamond(system)
    before = await system.stream_count()
    for path, params in [("log", {}), ("branches", {}), (f"versions/{v['dev']}", {}),
                         ("diff", {"from": v["root"], "to": "main"}),
                         ("common_ancestor", {"a": "main", "b": "dev"})]:
        response = await system.get(f"{mid}/{path}", ns=OTHER, **params)
        assert response.status_code == 404, (path, response.text)
    for name, body in [("log", {}), ("branches", {}), ("version", {"ref": "main"}),
                       ("diff", {"from": "main", "to": "dev"}),  # one name everywhere
                       ("common_ancestor", {"a": "main", "b": "dev"})]:
        assert (await system.query(name, memory_id=mid, **body))["ok"] is True
        reply = await system.query(name, ns=OTHER, memory_id=mid, **body)
        assert reply["error"]["code"] == "not_found", (name, reply)
    for name, body in [("branch", {"branch": "x"}),
                       ("commit", {"branch": "main", "content": "hijack\n"}),
                       ("merge", {"into": "main", "from": "dev", "strategy": "ours"}),
                       ("revert", {"to_version": v["root"]})]:
        response = await system.command(mid, name, ns=OTHER, **body)
        assert response.status_code == 404, (name, response.text)
    assert await system.stream_count() == before


async def test_forgotten_memories_have_no_log_branches_or_diff(system: System) -> None:
    mid, v = await _diamond(system)
    await system.ok(mid, "forget", reason="user asked")
    for path, params in [("log", {}), ("branches", {}), (f"versions/{v['dev']}", {}),
                         ("diff", {"from": v["root"], "to": "main"}),
                         ("common_ancestor", {"a": "main", "b": "dev"})]:
        response = await system.get(f"{mid}/{path}", **params)
        assert response.status_code == 404, (path, response.text)
    response = await system.command(mid, "commit", branch="dev", content="after forget\n")
    assert response.status_code == 404


async def test_branch_foreign_keys(system: System) -> None:
    mid, v = await _diamond(system)
    await system.get(f"{mid}/branches")  # projected up to last_seq
    url = system.config.database_url or ""
    schema = system.config.db_schema
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"SET search_path TO {schema}, public")
        # A version that is a branch head cannot be removed on its own (NO ACTION).
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await conn.execute("DELETE FROM memory_versions WHERE version_id = %s", [v["dev"]])
        # Removing the memory removes its branches with its versions (CASCADE).
        await conn.execute("DELETE FROM memories WHERE memory_id = %s", [mid])
        cur = await conn.execute("SELECT count(*) FROM memory_branches WHERE memory_id = %s",
                                 [mid])
        assert (await cur.fetchone()) == (0,)
