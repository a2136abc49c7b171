"""Context assembly through the gateway (issue 13): never over budget, names what it left out,
takes compressed forms only where their receipt is safe for the purpose; bad input is a 400 that
changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.runtime.config import Config
from services.compressor.tokenizer import default_tokenizer
from tests.support.compressor import eventually, receipts, running_compressor
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "ctx"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = [json.loads(line) for line in
        (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines()]
TASK = "incident latency hosts timeline, meeting figures, contract liability amounts"


async def context(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    async def answered() -> httpx.Response | None:
        response = await http.post(f"/v1/{NS}/context", json={"task": TASK, **body})
        return None if response.status_code == 503 else response  # the compressor is starting

    return await eventually(answered, timeout_s=30)


async def test_context_within_budget_with_receipts_and_left_out(config: Config) -> None:
    tokens = default_tokenizer()
    async with running_gateway(config) as (http, nc), running_compressor(config):
        made = [(await http.post(f"/v1/{NS}/memories", json={"content": row["text"]})).json()
                for row in HAND]
        for memory, row in zip(made, HAND, strict=True):
            if tokens.count(row["text"]) >= 40:
                await eventually(lambda m=memory: receipts(  # type: ignore[misc]
                    http, m["memory_id"], m["seq"], ns=NS))
        originals = {m["memory_id"]: row["text"] for m, row in zip(made, HAND, strict=True)}
        for purpose in ("summary", "financial", "compliance", "brainstorming"):
            for budget in (0, 60, 300, 1200):
                response = await context(http, purpose=purpose, budget=budget, k=12)
                assert response.status_code == 200, response.text
                view = response.json()
                assert view["used_tokens"] <= budget
                assert tokens.count(view["text"]) <= budget, (purpose, budget)
                assert view["tokenizer"] == tokens.name
                receipts_by_id = {r["receipt_id"]: r for r in view["receipts"]}
                for piece in view["pieces"]:
                    if piece["form"] == "original":
                        assert piece["text"] == originals[piece["memory_id"]]
                        assert piece["receipt_id"] is None
                    else:
                        receipt = receipts_by_id[piece["receipt_id"]]
                        assert purpose in {v["purpose"] for v in receipt["safe_for"]}
                        assert receipt["version_id"] == piece["version_id"]
                placed = {p["memory_id"] for p in view["pieces"]}
                left = {o["memory_id"] for o in view["left_out"]}
                assert not placed & left
                if budget == 0:
                    assert not placed and left
        small = (await context(http, purpose="summary", budget=120, k=12)).json()
        assert small["left_out"], "a small budget names what it left out"
        forms = {p["form"] for p in (await context(http, purpose="summary", budget=1200,
                                                    k=12)).json()["pieces"]}
        assert forms & {"compressed", "pruned"}, forms
        only = (await context(http, purpose="summary", budget=1200, k=12,
                              originals_only=True)).json()
        assert {p["form"] for p in only["pieces"]} == {"original"} and not only["receipts"]
        # The same operations over NATS (the catalog generates both transports).
        body = json.dumps({"task": TASK, "purpose": "summary", "budget": 300}).encode()
        reply = json.loads((await nc.request(f"mnemos.qry.{NS}.context", body, timeout=30)).data)
        assert reply["ok"] and reply["result"]["used_tokens"] <= 300, reply
        first = made[0]["memory_id"]
        reply = json.loads((await nc.request(f"mnemos.qry.{NS}.receipts", json.dumps(
            {"memory_id": first}).encode(), timeout=30)).data)
        assert reply["ok"] and reply["result"]["compressions"], reply
        bad = json.loads((await nc.request(f"mnemos.qry.{NS}.context", json.dumps(
            {"task": TASK, "purpose": "summary", "budget": -5}).encode(), timeout=30)).data)
        assert not bad["ok"] and bad["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("body", [
    {"purpose": "summary", "budget": -1},
    {"purpose": "summary", "budget": 10**12},
    {"purpose": "summary", "budget": 1e308},
    {"purpose": "summary", "budget": "100"},
    {"purpose": "nope", "budget": 100},
    {"purpose": "summary"},
    {"purpose": "summary", "budget": 100, "k": 0},
    {"purpose": "summary", "budget": 100, "k": 1000},
    {"purpose": "summary", "budget": 100, "unknown": 1},
    {"purpose": "summary", "budget": 100, "task": ""},
    {"purpose": "summary", "budget": 100, "task": "   "},
    {"purpose": "summary", "budget": 100, "task": "a\u0000b"},
    {"purpose": "summary", "budget": 100, "task": "x" * 5000},
    {"purpose": "summary", "budget": 100, "mode": "psychic"},
], ids=lambda body: json.dumps(body)[:60])
async def test_bad_context_requests_are_400(config: Config, body: dict[str, Any]) -> None:
    async with running_gateway(config) as (http, _), running_compressor(config):
        response = await context(http, **body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_input"


async def test_bad_bytes_and_bad_receipt_requests_are_400(config: Config) -> None:
    async with running_gateway(config) as (http, _), running_compressor(config):
        for raw in (b'{"task": "\\ud800", "purpose": "summary", "budget": 10}',
                    b'{"task": "\xff\xfe", "purpose": "summary", "budget": 10}',
                    b'{"task": "x", "purpose": "summary", "budget": 10'):
            response = await http.post(f"/v1/{NS}/context", content=raw,
                                       headers={"content-type": "application/json"})
            assert response.status_code == 400, (raw, response.text)
        memory = (await http.post(f"/v1/{NS}/memories", json={"content": "a note"})).json()
        for params in ({"version_id": "xyz"}, {"after_seq": -1}, {"after_seq": "x"}):
            response = await http.get(f"/v1/{NS}/memories/{memory['memory_id']}/receipts",
                                      params=params)
            assert response.status_code == 400, (params, response.text)
