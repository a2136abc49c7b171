"""The registry_sync service end to end: real NATS, real Postgres, the projector and the
gateway in-process, providers and their chat endpoints served by local replay servers.

The service's clock is a test clock: advancing it makes the next timer due, so "retired at the
provider, not routed after the next tick" is shown tick by tick.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.embeddings import MiniLMOnnxEmbedder
from libs.events import encode_event, event_subject, new_command_id
from libs.events.reasoning import registry_event
from libs.events.registry import FieldChangeData, ModelChangedData
from libs.llm import ProviderConfig
from libs.llm.retry import RetryPolicy
from libs.llm.transport import CallPolicy
from libs.readmodel.verification import check_registry
from libs.runtime.config import Config
from libs.runtime.database import connect_async
from services.auditor.verify import verify
from services.projector.replay import replay
from services.registry_sync import main as registry_main
from services.registry_sync.config import RegistrySyncConfig
from services.registry_sync.diff import LivenessPolicy
from tests.support.auditor import running_auditor, wait_for_head
from tests.support.registry import chat_reply, models_body
from tests.support.services import running_gateway
from tests.support_http import Recorded, ReplayServer

NS = "team-a"
AGREE_1 = "The capital of Australia is Canberra."
AGREE_2 = "Canberra is Australia's capital city, not Sydney."
DISSENT = "The capital of Australia is Sydney."
PROVIDERS = {"alpha": "gpt-4o", "beta": "claude-sonnet-4", "gamma": "gemini-2.5-pro",
             "delta": "llama-3.3-70b"}


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def servers() -> Iterator[dict[str, ReplayServer]]:
    started = {name: ReplayServer().start() for name in PROVIDERS}
    try:
        for name, model in PROVIDERS.items():
            started[name].add("GET", "/v1/models", models_body(model, f"{model}-mini"))
        yield started
    finally:
        for server in started.values():
            server.stop()


def settings(servers: dict[str, ReplayServer], **kw: Any) -> RegistrySyncConfig:
    fast = CallPolicy(timeout_s=3.0, retry=RetryPolicy(attempts=1))
    return RegistrySyncConfig(
        providers=tuple(ProviderConfig(name=n, kind="openai", base_url=s.url, policy=fast)
                        for n, s in servers.items()),
        liveness=LivenessPolicy(retire_after_missing=2), tick_check_s=0.05,
        provider_interval_s=3600, leaderboard_interval_s=7 * 86400, **kw)


@dataclass
class System:
    http: httpx.AsyncClient
    clock: Clock
    config: Config
    nc: Any


@asynccontextmanager
async def running(config: Config, registry: RegistrySyncConfig) -> AsyncIterator[System]:
    clock = Clock()
    stop = asyncio.Event()
    async with running_gateway(config) as (http, nc):
        task = asyncio.create_task(registry_main.run(
            config, stop, registry=registry, clock=clock, embedder=MiniLMOnnxEmbedder.shared()))
        try:
            yield System(http=http, clock=clock, config=config, nc=nc)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def eventually(probe: Any, timeout_s: float = 45.0) -> Any:
    """Poll ``probe`` (an async function returning a value or None) until it answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def models(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await http.get(f"/v1/{NS}/models", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_key(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["key"]: m for m in view["models"]}


async def route(http: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await http.get(f"/v1/{NS}/route", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


async def cli(system: System, args: list[str]) -> Ran:
    """Run ``mnemos <args>`` in a subprocess against the test's gateway."""
    env = {**os.environ, "MNEMOS_HTTP_PORT": str(system.config.http_port),
           "MNEMOS_HOME": str(system.config.home), "MNEMOS_LOG_LEVEL": "warning"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mnemos", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return Ran(process.returncode or 0, out.decode(), err.decode())


async def registry_issues(config: Config) -> list[Any]:
    """What verification finds comparing the registry tables with the fold of their events."""
    issues: list[Any] = []
    conn = await connect_async(config.database_url or "", config.db_schema, autocommit=True)
    try:
        async with conn.transaction():  # as the auditor runs it: one snapshot
            checked = await check_registry(conn, issues.append)
    finally:
        await conn.close()
    assert checked >= 8
    return issues


async def until_routed(http: httpx.AsyncClient, check: Any, **params: Any) -> list[str]:
    """Poll ``route`` until ``check(candidate keys)`` holds."""
    async def probe() -> list[str] | None:
        response = await http.get(f"/v1/{NS}/route", params={"limit": 16, **params})
        if response.status_code == 503:  # registry_sync still folding / not listening yet
            return None
        assert response.status_code == 200, response.text
        keys = [c["key"] for c in response.json()["candidates"]]
        return keys if check(keys) else None

    found: list[str] = await eventually(probe)
    return found


async def test_sync_projects_retires_on_ticks_and_keeps_failed_providers_stale(  # noqa: PLR0915
        config: Config, servers: dict[str, ReplayServer]) -> None:
    async with running(config, settings(servers)) as system:
        http = system.http

        async def synced() -> dict[str, Any] | None:
            view = await models(http)
            return view if view["total"] == 8 else None

        view = await eventually(synced)
        alpha = by_key(view)["alpha/gpt-4o"]
        assert alpha["liveness"] == "active" and not alpha["stale"]
        assert alpha["record"]["family"] == "gpt"
        assert alpha["record"]["sources"]["family"] == "default"
        assert alpha["record"]["sources"]["created_at"] == "provider"
        assert {p["provider"]: p["last_outcome"] for p in view["providers"]} == dict.fromkeys(
            PROVIDERS, "synced")
        one = await models(http, key="beta/claude-sonnet-4")
        assert [m["key"] for m in one["models"]] == ["beta/claude-sonnet-4"]
        assert (await http.get(f"/v1/{NS}/models", params={"key": "nope/x"})).status_code == 404
        # The service folds its own events on its own consumer: route sees them soon after.
        await until_routed(http, lambda keys: "alpha/gpt-4o-mini" in keys)

        # alpha withdraws gpt-4o-mini; gamma's endpoint starts failing.
        servers["alpha"].add("GET", "/v1/models", models_body("gpt-4o"))
        servers["gamma"].add("GET", "/v1/models", Recorded.json(
            {"error": {"message": "boom", "type": "server_error"}}, status=500))
        system.clock.advance(3601)

        async def suspect() -> dict[str, Any] | None:
            view = await models(http)
            found = by_key(view)
            return view if found["alpha/gpt-4o-mini"]["liveness"] == "suspect" else None

        view = await eventually(suspect)
        found = by_key(view)
        assert found["alpha/gpt-4o-mini"]["missing_syncs"] == 1
        assert found["gamma/gemini-2.5-pro"]["stale"] and found["gamma/gemini-2.5-pro"][
            "liveness"] == "active"  # an outage is not a withdrawal
        gamma = {p["provider"]: p for p in view["providers"]}["gamma"]
        assert gamma["last_outcome"] == "failed"
        assert gamma["last_error"]["error_code"] == "server_error"
        assert gamma["last_error"]["stale_models"] == 2
        # suspect is not routed by default
        await until_routed(http, lambda keys: "alpha/gpt-4o-mini" not in keys)

        system.clock.advance(3601)

        async def retired() -> dict[str, Any] | None:
            view = await models(http)
            found = by_key(view)
            return view if found["alpha/gpt-4o-mini"]["liveness"] == "retired" else None

        await eventually(retired)

        async def retired_rejected() -> dict[str, Any] | None:
            decision = await route(http, limit=16, include_suspect="true")
            return decision if decision["rejected"].get("retired") == 1 else None

        decision = await eventually(retired_rejected)
        assert "alpha/gpt-4o-mini" not in [c["key"] for c in decision["candidates"]]
        # Even with every other gpt excluded, the retired one is not a candidate ...
        assert not any(k.startswith("alpha/") for k in await until_routed(
            http, lambda keys: True, exclude="alpha/gpt-4o"))
        # ... and a consultation over every family sends it nothing.
        for name in PROVIDERS:
            servers[name].add("POST", "/v1/chat/completions", chat_reply(AGREE_1))
        consulted = await http.post(f"/v1/{NS}/consult", json={
            "prompt": "What is the capital of Australia?", "models": 4, "timeout_s": 5})
        assert consulted.status_code == 200, consulted.text
        asked = [r.json()["model"] for r in servers["alpha"].requests
                 if r.path == "/v1/chat/completions"]
        assert asked == ["gpt-4o"]
        active = await models(http, liveness="active")
        assert "alpha/gpt-4o-mini" not in by_key(active)

        # Restored when it comes back.
        servers["alpha"].add("GET", "/v1/models", Recorded.json({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "created": 1718000000, "owned_by": "system",
             "context_window": 128000},  # a field the provider now states: ModelChanged
            {"id": "gpt-4o-mini", "object": "model", "created": 1718000000,
             "owned_by": "system"}]}))
        servers["gamma"].add("GET", "/v1/models", models_body("gemini-2.5-pro",
                                                             "gemini-2.5-pro-mini"))
        done = await cli(system, ["registry", "sync", "--target", "providers"])
        assert done.exit_code == 0, done.stderr
        assert json.loads(done.stdout)["by_type"].get("ModelRestored") == 1
        assert json.loads(done.stdout)["by_type"].get("ModelChanged") == 1

        async def projected_change() -> dict[str, Any] | None:
            view = await models(http)
            found = by_key(view)
            done = (found["alpha/gpt-4o"]["record"]["context_window"] == 128000
                    and not found["gamma/gemini-2.5-pro"]["stale"])
            return view if done else None

        view = await eventually(projected_change)  # the projector folds it on its own consumer
        changed = by_key(view)["alpha/gpt-4o"]["record"]
        assert changed["sources"]["context_window"] == "provider"
        assert by_key(view)["alpha/gpt-4o-mini"]["liveness"] == "active"
        assert not by_key(view)["gamma/gemini-2.5-pro"]["stale"]

        listed = await cli(system, ["models", "--ns", NS, "--provider",
                                                       "alpha"])
        assert listed.exit_code == 0, listed.stderr
        assert [m["key"] for m in json.loads(listed.stdout)["models"]] == [
            "alpha/gpt-4o", "alpha/gpt-4o-mini"]
        assert await registry_issues(config) == []


def leaderboard(tmp_path: Path, weights: dict[str, tuple[float, int]]) -> str:
    rows = [{"model_name": name, "rating": rating, "rating_lower": rating - 5,
             "rating_upper": rating + 5, "vote_count": votes, "rank": i + 1,
             "category": "overall", "leaderboard_publish_date": "2026-01-01"}
            for i, (name, (rating, votes)) in enumerate(weights.items())]
    path = tmp_path / "board.json"
    path.write_text(json.dumps(rows))
    return str(path)


async def test_consultation_by_content_with_a_dead_provider(
        config: Config, servers: dict[str, ReplayServer], tmp_path: Path) -> None:
    # The dissenter is the best-ranked model, the dead one second: neither decides.
    board = leaderboard(tmp_path, {"gpt-4o": (1500, 50_000), "llama-3.3-70b": (1450, 40_000),
                                   "claude-sonnet-4": (1300, 30_000),
                                   "gemini-2.5-pro": (1250, 30_000)})
    for name, text in (("alpha", DISSENT), ("beta", AGREE_1), ("gamma", AGREE_2)):
        servers[name].add("POST", "/v1/chat/completions", chat_reply(text))
    servers["delta"].add("POST", "/v1/chat/completions", Recorded(drop=True))
    registry = settings(servers, leaderboard=board)
    async with running(config, registry) as system:
        http = system.http
        remembered = await http.post(f"/v1/{NS}/memories", json={
            "content": "The user is planning a trip to Australia's capital in March."})
        assert remembered.status_code == 201, remembered.text

        async def ranked() -> dict[str, Any] | None:
            response = await http.get(f"/v1/{NS}/models", params={"key": "alpha/gpt-4o"})
            if response.status_code == 404:  # not synced yet
                return None
            view: dict[str, Any] = response.json()
            return view if view["models"][0]["ranking"] else None

        await eventually(ranked)
        await until_routed(http, lambda keys: keys[:1] == ["alpha/gpt-4o"], profile="best")
        started = time.monotonic()
        response = await http.post(f"/v1/{NS}/consult", json={
            "prompt": "What is the capital of Australia?", "profile": "best", "models": 3,
            "timeout_s": 5})
        assert response.status_code == 200, response.text
        result = response.json()
        assert time.monotonic() - started < 30
        assert result["reached"], result
        assert result["answer_key"].split("/")[0] in {"beta", "gamma"}  # the agreeing pair
        assert [d["key"] for d in result["dissent"]] == ["alpha/gpt-4o"]
        failed = {f["key"]: f for f in result["failed"]}
        assert "delta/llama-3.3-70b" in failed  # cut off, the consultation went on
        assert result["context"]["source"] == "search"
        sent = servers["beta"].requests[-1].json()["messages"][1]["content"]
        assert "planning a trip" in sent
        assert all(r.path != "/v1/chat/completions" or r.json()["model"] != "gpt-4o-mini"
                   for r in servers["alpha"].requests)

        async def projected() -> list[dict[str, Any]] | None:
            async with await connect_async(config.database_url or "", config.db_schema,
                                           autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT status, answers, failures FROM registry_consultations"
                    " WHERE ns = %s AND consultation_id = %s", (NS, result["consultation_id"]))
                rows = [dict(r) for r in await cur.fetchall()]
            return rows if rows and rows[0]["status"] != "running" else None

        rows = await eventually(projected)
        assert rows == [{"status": "reached", "answers": len(result["answers"]),
                         "failures": len(result["failed"])}]

        # A reused consultation id: the same consultation is answered again from its events
        # (no model is asked twice); another prompt under that id is a conflict.
        calls = sum(len(s.requests) for s in servers.values())
        body = {"prompt": "What is the capital of Australia?", "profile": "best",
                "consultation_id": result["consultation_id"]}
        again = await http.post(f"/v1/{NS}/consult", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] and again.json()["answer"] == result["answer"]
        other = await http.post(f"/v1/{NS}/consult", json=body | {"prompt": "Another one?"})
        assert other.status_code == 409, other.text
        assert sum(len(s.requests) for s in servers.values()) == calls

        assert await registry_issues(config) == []

        # The registry and consultation tables rebuild from the stream to the same digest.
        report = await replay(config, swap=False, embedder=MiniLMOnnxEmbedder.shared(),
                              progress=False)
        assert report.verified is True, report.summary()
        assert report.rebuild_counts["registry_models"] == 8
        assert report.rebuild_counts["registry_rankings"] == 1
        assert report.rebuild_counts["registry_consultations"] == 1


async def test_nothing_configured_answers_a_typed_error_fast_and_bad_input_is_400(
        config: Config) -> None:
    async with running(config, RegistrySyncConfig()) as system:
        http = system.http

        async def answered() -> httpx.Response | None:
            response = await http.post(f"/v1/{NS}/consult", json={"prompt": "hello?"})
            starting = ("no registry_sync instance" in response.text
                        or "still folding" in response.text)
            return None if starting else response

        started = time.monotonic()
        response = await eventually(answered)
        assert time.monotonic() - started < 30
        assert response.status_code == 503, response.text
        body = response.json()
        assert "MNEMOS_REGISTRY_CONFIG" in json.dumps(body)
        for bad in ({"prompt": ""}, {"prompt": "   "}, {"prompt": "a\u0000b"},
                    {"prompt": "x", "models": 0}, {"prompt": "x", "models": 99},
                    {"prompt": "x", "timeout_s": 1e308}, {"prompt": "x", "unknown": 1},
                    {"prompt": "x", "consultation_id": "not-a-uuid"},
                    {"prompt": "x", "profile": "fastest"}):
            got = await http.post(f"/v1/{NS}/consult", json=bad)
            assert got.status_code == 400, (bad, got.text)
        surrogate = await http.post(f"/v1/{NS}/consult", content=b'{"prompt": "\\ud800"}',
                                    headers={"content-type": "application/json"})
        assert surrogate.status_code == 400
        invalid = await http.post(f"/v1/{NS}/consult", content=b'{"prompt": "\xff\xfe"}',
                                  headers={"content-type": "application/json"})
        assert invalid.status_code == 400
        system_ns = await http.post("/v1/system/consult", json={"prompt": "hello?"})
        assert system_ns.status_code == 400
        for bad_route in ({"limit": 0}, {"context_tokens": -1}, {"profile": "x"}):
            got = await http.get(f"/v1/{NS}/route", params=bad_route)
            assert got.status_code == 400, (bad_route, got.text)
        for bad_models in ({"limit": 0}, {"liveness": "dead"}, {"limit": 10**9}):
            got = await http.get(f"/v1/{NS}/models", params=bad_models)
            assert got.status_code == 400, (bad_models, got.text)
        assert (await http.post("/v1/registry/sync", json={})).status_code == 400
        sync = await http.post("/v1/registry/sync", json={"target": "all"})
        assert sync.status_code == 503 and "provider" in sync.text
        # The same over NATS: an error reply naming what to configure.
        replied = await system.nc.request(f"mnemos.cmd.{NS}.consult",
                                          json.dumps({"prompt": "hello?"}).encode(), timeout=10)
        reply = json.loads(replied.data)
        assert reply["error"]["code"] == "unavailable", reply
        assert "MNEMOS_REGISTRY_CONFIG" in reply["error"]["message"]
        bad = await system.nc.request(f"mnemos.cmd.{NS}.consult",
                                      json.dumps({"prompt": "x", "models": 0}).encode(),
                                      timeout=10)
        assert json.loads(bad.data)["error"]["code"] == "invalid_input"
        listed = await system.nc.request(f"mnemos.qry.{NS}.models", b"{}", timeout=10)
        assert json.loads(listed.data)["result"]["total"] == 0
        asked = await cli(system, ["consult", "hello?", "--ns", NS])
        assert asked.exit_code == 2 and "MNEMOS_REGISTRY_CONFIG" in asked.stderr


async def test_a_model_whose_calls_keep_failing_is_suspect_until_a_probe_answers(
        config: Config, servers: dict[str, ReplayServer]) -> None:
    for name in ("alpha", "beta", "gamma"):
        servers[name].add("POST", "/v1/chat/completions", chat_reply(AGREE_1))
    servers["delta"].add("GET", "/v1/models", models_body("llama-3.3-70b"))
    servers["delta"].add("POST", "/v1/chat/completions", Recorded.json(
        {"error": {"message": "upstream exploded", "type": "server_error"}}, status=500))
    async with running(config, settings(servers)) as system:
        http = system.http
        await until_routed(http, lambda keys: "delta/llama-3.3-70b" in keys)

        async def all_projected() -> dict[str, Any] | None:
            view = await models(http)
            return view if view["total"] == 7 else None

        await eventually(all_projected)
        llama = await models(http, family="llama", capability="chat", provider="delta")
        assert [m["key"] for m in llama["models"]] == ["delta/llama-3.3-70b"]
        first = await models(http, limit=3)
        assert first["total"] == 7 and first["next_after"] == first["models"][-1]["key"]
        rest = await models(http, limit=10, after=first["next_after"])
        assert [m["key"] for m in first["models"] + rest["models"]] == sorted(
            m["key"] for m in (await models(http))["models"])
        assert rest["next_after"] is None
        for _ in range(3):
            response = await http.post(f"/v1/{NS}/consult", json={
                "prompt": "What is the capital of Australia?", "models": 4, "timeout_s": 5,
                "context": False})
            assert response.status_code == 200, response.text
            assert "delta/llama-3.3-70b" in {f["key"] for f in response.json()["failed"]}

        async def suspect() -> dict[str, Any] | None:
            view = await models(http, key="delta/llama-3.3-70b")
            model: dict[str, Any] = view["models"][0]
            return model if model["liveness"] == "suspect" else None

        model = await eventually(suspect)
        assert model["suspect_reason"] == "probe_failed"
        assert "3 calls in a row failed" in model["suspect_detail"]
        await until_routed(http, lambda keys: "delta/llama-3.3-70b" not in keys)

        # The provider recovers: the next tick probes the model and restores it.
        servers["delta"].add("POST", "/v1/chat/completions", chat_reply("ok"))
        system.clock.advance(3601)

        async def restored() -> dict[str, Any] | None:
            view = await models(http, key="delta/llama-3.3-70b")
            model: dict[str, Any] = view["models"][0]
            return model if model["liveness"] == "active" else None

        await eventually(restored)
        probe = servers["delta"].requests[-1].json()
        assert probe["max_tokens"] == 1
        await until_routed(http, lambda keys: "delta/llama-3.3-70b" in keys)
        assert await registry_issues(config) == []


async def test_a_registry_event_contradicting_the_registry_is_dead_lettered_not_fatal(
        config: Config, servers: dict[str, ReplayServer]) -> None:
    async with running(config, settings(servers)) as system:
        http = system.http
        await until_routed(http, lambda keys: len(keys) == 8)
        poison = registry_event(ModelChangedData(key="ghost/model", changes=(FieldChangeData(
            field="family", old="a", new="b", source="provider"),)),
            command_id=new_command_id(), index=0, at=system.clock())
        js = system.nc.jetstream()
        ack = await js.publish(event_subject(poison.ns, poison.aggregate, poison.aggregate_id),
                               encode_event(poison), headers={"Nats-Msg-Id": poison.id})

        async def dead_lettered() -> list[dict[str, Any]] | None:
            conn = await connect_async(config.database_url or "", config.db_schema,
                                       autocommit=True)
            try:
                cur = await conn.execute("SELECT seq, error FROM dead_letters WHERE seq = %s",
                                         (ack.seq,))
                rows = [dict(r) for r in await cur.fetchall()]
            finally:
                await conn.close()
            return rows or None

        rows = await eventually(dead_lettered)
        assert "ghost/model" in rows[0]["error"]
        # Both consumers went on: the next sync is folded and projected as usual.
        servers["alpha"].add("GET", "/v1/models", models_body("gpt-4o"))
        report = await http.post("/v1/registry/sync", json={"target": "providers"})
        assert report.status_code == 200, report.text
        assert report.json()["by_type"]["ModelSuspect"] == 1
        # Read-your-writes: the report's last_seq makes models wait for the projection.
        view = await models(http, key="alpha/gpt-4o-mini", after_seq=report.json()["last_seq"])
        assert view["models"][0]["liveness"] == "suspect"
        assert await registry_issues(config) == []


async def test_full_audit_verification_covers_the_registry_and_names_a_tampered_row(
        config: Config, servers: dict[str, ReplayServer]) -> None:
    async with running_auditor(config), running(config, settings(servers)) as system:
        await until_routed(system.http, lambda keys: len(keys) == 8)

        async def all_projected() -> dict[str, Any] | None:
            view = await models(system.http)
            return view if len(view["providers"]) == 4 else None

        await eventually(all_projected)
        js = system.nc.jetstream()
        last = (await js.stream_info("MNEMOS_EVENTS")).state.last_seq
        await wait_for_head(config, last)
        report = await verify(config, full=True)
        assert report.ok, report
        conn = await connect_async(config.database_url or "", config.db_schema, autocommit=True)
        try:
            await conn.execute("UPDATE registry_models SET liveness = 'retired'"
                               " WHERE key = 'beta/claude-sonnet-4'")
        finally:
            await conn.close()
        tampered = await verify(config, full=True)
    assert not tampered.ok
    assert [(i.table, i.field) for i in tampered.read_model_issues] == [
        ("registry_models", "liveness")]
    assert "beta/claude-sonnet-4" in tampered.read_model_issues[0].detail


async def test_an_unreadable_leaderboard_leaves_the_registry_working(
        config: Config, servers: dict[str, ReplayServer], tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-board.csv")
    async with running(config, settings(servers, leaderboard=missing)) as system:
        http = system.http
        await until_routed(http, lambda keys: len(keys) == 8)
        response = await http.post("/v1/registry/sync", json={"target": "leaderboard"})
        assert response.status_code == 503, response.text
        assert "no-such-board.csv" in response.text
        view = await models(http, key="alpha/gpt-4o")
        assert view["models"][0]["ranking"] is None
