"""The compressor service on real NATS and Postgres (issue 13): on-write receipts, projected
and served; poison versions dead-lettered without stopping; a killed process loses and
duplicates nothing; replay reproduces the receipts without recompressing; a dead LLM endpoint
does not delay the offline receipts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from libs.consumer.stream import read_stream, stream_bounds
from libs.events import (
    DEADLETTER_STREAM,
    Actor,
    MemoryCompressed,
    MemoryCreated,
    MemoryCreatedData,
    content_hash,
    decode_event,
    derive_event_id,
    encode_event,
    event_subject,
    new_command_id,
    new_memory_id,
    version_id,
)
from libs.readmodel.digest import read_model_digest
from libs.runtime.config import Config
from services.auditor.verify import verify
from services.compressor import main as compressor_main
from services.compressor.compressor import Compressor
from services.compressor.engines.llm import LlmEngine
from services.projector.replay import replay
from tests.integration import test_registry_service as reg
from tests.support.auditor import running_auditor, wait_for_head
from tests.support.compressor import eventually, receipts, running_compressor
from tests.support.events import CountingEmbedder, read_models, running_projector
from tests.support.registry import chat_reply, models_body
from tests.support.services import running_gateway
from tests.support_http.server import Recorded, ReplayServer

pytestmark = pytest.mark.integration

NS = "notes"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
T = TypeVar("T")


def texts() -> dict[str, str]:
    rows = [json.loads(line) for line in
            (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row["text"] for row in rows}


TEXTS = texts()
LONG = [TEXTS[k] for k in ("hand-meeting-notes", "hand-incident-report", "hand-code-review",
                           "hand-contract-clause")]


async def compressions_in_stream(nc: Any) -> list[tuple[int, MemoryCompressed]]:
    js = nc.jetstream()
    _, last = await stream_bounds(js)
    out = []
    async for msg in read_stream(nc, js, 1, last):
        try:
            event = decode_event(msg.data)
        except Exception:
            continue
        if isinstance(event, MemoryCompressed):
            out.append((msg.seq, event))
    return out


def created(text: str, ns: str = NS) -> MemoryCreated:
    command_id, memory_id = new_command_id(), new_memory_id()
    digest = content_hash(text)
    return MemoryCreated(
        id=derive_event_id(ns, command_id), schema=MemoryCreated.SCHEMA, ns=ns,
        aggregate="memory", aggregate_id=memory_id, actor=Actor(principal="tests"),
        command_id=command_id, correlation_id=command_id, at=(now := datetime.now(UTC)),
        data=MemoryCreatedData(memory_id=memory_id, version_id=version_id(memory_id, digest, {},
                                                                           []),
                               kind="note", content=text, content_hash=digest,
                               occurred_at=now))


async def publish(js: Any, event: MemoryCreated) -> int:
    ack = await js.publish(event_subject(event.ns, "memory", event.aggregate_id),
                           encode_event(event), headers={"Nats-Msg-Id": event.id}, timeout=5)
    return int(ack.seq)


async def test_remembering_a_long_text_yields_a_projected_receipt(config: Config) -> None:
    async with running_gateway(config) as (http, nc), running_compressor(config):
        short = (await http.post(f"/v1/{NS}/memories", json={
            "content": TEXTS["hand-short-note"]})).json()
        long = (await http.post(f"/v1/{NS}/memories", json={"content": LONG[0]})).json()
        found = await eventually(lambda: receipts(http, long["memory_id"], long["seq"]))
        receipt = found[0]["receipt"]
        assert receipt["version_id"] == long["version_id"]
        assert receipt["trigger"] == "on_write" and receipt["tokenizer"].startswith("cl100k_base")
        assert receipt["compressed_tokens"] < receipt["original_tokens"]
        assert receipt["engine"] in {"extractive", "facts"}
        assert {c["engine"] for c in receipt["contest"]} == {"extractive", "facts"}
        assert found[0]["content"] != LONG[0]
        # The original is what get serves, always.
        got = (await http.get(f"/v1/{NS}/memories/{long['memory_id']}")).json()
        assert got["content"] == LONG[0]
        # The compression moved the memory's revision (it is an event on its subject) ...
        assert got["revision"] == found[0]["seq"]
        history = (await http.get(f"/v1/{NS}/memories/{long['memory_id']}/history")).json()
        assert [e["type"] for e in history["events"]] == ["MemoryCreated", "MemoryCompressed"]
        assert len(history["versions"]) == 1
        # ... and the short note got none.
        assert await receipts(http, short["memory_id"], short["seq"]) == []
        assert (await http.get(f"/v1/{NS}/memories/{new_memory_id()}/receipts")
                ).status_code == 404
        assert (await http.get(f"/v1/{NS}/memories/BAD!/receipts")).status_code == 400
        # One event per receipt in the stream.
        events = await compressions_in_stream(nc)
        assert [e.data.receipt.receipt_id for _, e in events] == [receipt["receipt_id"]]


async def test_a_poison_version_is_dead_lettered_and_the_next_is_compressed(
        config: Config) -> None:
    async with running_gateway(config) as (http, nc), running_compressor(config):
        js = nc.jetstream()
        await js.publish(f"mnemos.evt.{NS}.memory.poison", b"not an event", timeout=5)
        long = (await http.post(f"/v1/{NS}/memories", json={"content": LONG[1]})).json()
        await eventually(lambda: receipts(http, long["memory_id"], long["seq"]))
        info = await js.stream_info(DEADLETTER_STREAM)
        letters = [await js.get_msg(DEADLETTER_STREAM, seq=seq)
                   for seq in range(1, int(info.state.last_seq) + 1)]
        ours = [m for m in letters if m.subject == f"mnemos.dlq.compressor.{NS}"]
        assert len(ours) == 1 and ours[0].data == b"not an event"  # (the projector has its own)
        assert ours[0].headers and "not an event" in ours[0].headers["Mnemos-Error"]


def _spawn(config: Config, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MNEMOS_NATS_URL": config.nats_url or "",
           "MNEMOS_DATABASE_URL": config.database_url or "", "MNEMOS_HOME": str(home),
           "MNEMOS_DB_SCHEMA": config.db_schema, "MNEMOS_COMPRESS_MIN_TOKENS": "40",
           "MNEMOS_COMPRESSOR_ACK_WAIT_S": "2", "MNEMOS_LOG_LEVEL": "info",
           "MNEMOS_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}  # the test reads the logs live
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "mnemos", "serve", "compressor"], env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _compressed_by(log: Path) -> int:
    return sum('"event": "compressed"' in line for line in
               log.read_text(errors="replace").splitlines())


async def test_instances_share_the_work_and_a_killed_one_loses_and_duplicates_nothing(
        config: Config, nats_js: Any, tmp_path: Path) -> None:
    versions = [created(f"{LONG[i % 4]}\n\nCopy {i}: ticket OPS-{1000 + i}.") for i in range(60)]
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    async with running_projector(config):
        a = _spawn(config, tmp_path / "home", logs["a"])
        b = _spawn(config, tmp_path / "home", logs["b"])
        try:
            async def both_pulling() -> bool | None:  # a slow start must not leave one idle
                ready = all(log.exists() and '"event": "consumer_active"' in
                            log.read_text(errors="replace") for log in logs.values())
                return ready or None

            await eventually(both_pulling, timeout_s=120)
            for event in versions[:30]:  # paced: both instances' pull requests get some
                await publish(nats_js, event)
                await asyncio.sleep(0.03)

            async def a_worked() -> int | None:
                return _compressed_by(logs["a"]) or None

            await eventually(a_worked, timeout_s=120)
            a.send_signal(signal.SIGKILL)  # mid-stream: what it took and did not ack comes back
            a.wait(10)
            for event in versions[30:]:
                await publish(nats_js, event)
            nc = nats_js._nc

            async def all_done() -> list[tuple[int, MemoryCompressed]] | None:
                events = await compressions_in_stream(nc)
                return events if len({e.aggregate_id for _, e in events}) == 60 else None

            events = await eventually(all_done, timeout_s=120)
        finally:
            for process in (a, b):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
        per_receipt = Counter(e.data.receipt.receipt_id for _, e in events)
        assert len(per_receipt) == 60 and set(per_receipt.values()) == {1}
        assert {e.data.receipt.version_id for _, e in events} == {
            v.data.version_id for v in versions}
        assert _compressed_by(logs["a"]) > 0 and _compressed_by(logs["b"]) > 0


async def test_replay_reproduces_the_receipts_without_recompressing(config: Config) -> None:
    url = config.database_url or ""
    async with running_gateway(config) as (http, nc), running_compressor(config), \
            running_auditor(config):
        made = [(await http.post(f"/v1/{NS}/memories", json={"content": t})).json()
                for t in LONG]
        ids = [m["memory_id"] for m in made]
        for m in made:
            await eventually(lambda m=m: receipts(http, m["memory_id"], m["seq"]))  # type: ignore[misc]
        before = {m: await receipts(http, m) for m in ids}
        # The compressions are on the audit chain, and the read models equal the fold of
        # their events (mnemos audit verify --full).
        _, last = await stream_bounds(nc.jetstream())
        await wait_for_head(config, last)
        verified = await verify(config, full=True)
        assert verified.ok and verified.read_model_issue_count == 0, verified.read_model_issues
        assert verified.memories_checked >= len(ids)
    # Everything stopped: the compressor cannot take part in the rebuild.
    report = await replay(config, swap=True, embedder=CountingEmbedder(), progress=False)
    assert report.verified is True, report.summary()
    assert report.rebuild_digest == report.live_digest
    async with read_models(url) as conn:
        cur = await conn.execute("SELECT memory_id, receipt FROM memory_compressions")
        rebuilt = {row["memory_id"]: row["receipt"] for row in await cur.fetchall()}
        assert await read_model_digest(conn) == report.rebuild_digest
    assert rebuilt == {m: found[0]["receipt"] for m, found in before.items()}
    # A compression row edited by hand is named by verification.
    async with read_models(url) as conn:
        await conn.execute("UPDATE memory_compressions SET ratio = 0.01"
                           " WHERE memory_id = %s", (ids[0],))
    tampered = await verify(config, full=True)
    assert [(i.table, i.field) for i in tampered.read_model_issues] == [
        ("memory_compressions", before[ids[0]][0]["receipt"]["receipt_id"])]


async def test_a_dead_llm_endpoint_does_not_delay_offline_receipts(config: Config) -> None:
    with ReplayServer() as provider:
        # The provider accepts the request and never answers in time.
        provider.add("POST", "/v1/chat/completions", Recorded.json({}).slowed(30.0))
        config = config.model_copy(update={"compressor_llm_url": provider.url,
                                           "compressor_llm_timeout_s": 4.0})
        compressor: Compressor = compressor_main.build_compressor(config)
        assert [type(e) for e in compressor.llm_engines] == [LlmEngine]
        async with running_gateway(config) as (http, nc), running_compressor(
                config, compressor=compressor):
            started = time.monotonic()
            long = (await http.post(f"/v1/{NS}/memories", json={"content": LONG[2]})).json()
            found = await eventually(lambda: receipts(http, long["memory_id"], long["seq"]))
            offline_after = time.monotonic() - started
            assert offline_after < 3.5, offline_after  # well before the LLM's 4 s timeout
            assert {c["engine"] for c in found[0]["receipt"]["contest"]} == {"extractive",
                                                                            "facts"}

            async def both() -> list[dict[str, Any]] | None:
                got = await receipts(http, long["memory_id"])
                return got if len(got) == 2 else None

            full = (await eventually(both, timeout_s=30))[1]["receipt"]
            llm = [c for c in full["contest"] if c["engine"] == "llm"]
            assert llm and llm[0]["outcome"] in {"timeout", "error"}, full["contest"]
            assert full["engine"] == found[0]["receipt"]["engine"]
            assert provider.requests  # the engine did ask
            del nc



@pytest.fixture
def providers() -> Iterator[dict[str, ReplayServer]]:
    """The registry test's providers (each lists its models)."""
    started = {name: ReplayServer().start() for name in reg.PROVIDERS}
    try:
        for name, model in reg.PROVIDERS.items():
            started[name].add("GET", "/v1/models", models_body(model, f"{model}-mini"))
        yield started
    finally:
        for server in started.values():
            server.stop()


async def test_a_consultation_takes_its_context_from_the_compressor(
        config: Config, providers: dict[str, ReplayServer], tmp_path: Path) -> None:
    """Consultations call context assembly (purpose factual_recall) and carry its receipts."""
    board = reg.leaderboard(tmp_path, {"gpt-4o": (1500, 50_000), "llama-3.3-70b": (1450, 40_000),
                                       "claude-sonnet-4": (1300, 30_000),
                                       "gemini-2.5-pro": (1250, 30_000)})
    for name, text in (("alpha", reg.DISSENT), ("beta", reg.AGREE_1), ("gamma", reg.AGREE_2),
                       ("delta", reg.AGREE_1)):
        providers[name].add("POST", "/v1/chat/completions", chat_reply(text))
    async with reg.running(config, reg.settings(providers, leaderboard=board)) as system, \
            running_compressor(config):
        http = system.http
        note = (f"{LONG[0]}\n\nThe user is planning a trip to Australia's capital in March.")
        made = (await http.post(f"/v1/{reg.NS}/memories", json={"content": note})).json()
        await eventually(lambda: receipts(http, made["memory_id"], made["seq"], ns=reg.NS))
        await reg.until_routed(http, lambda keys: len(keys) >= 3, profile="best")
        response = await http.post(f"/v1/{reg.NS}/consult", json={
            "prompt": "Where is the user travelling, and what were the February numbers?",
            "profile": "best", "models": 3, "timeout_s": 5})
        assert response.status_code == 200, response.text
        context = response.json()["context"]
        assert context["source"] == "assembly", context
        assert made["memory_id"] in context["memory_ids"]
        stored = {c["receipt"]["receipt_id"] for c in await receipts(
            http, made["memory_id"], ns=reg.NS)}
        assert set(context["receipts"]) <= stored  # the receipts of the compressed pieces sent
