"""The compressor's LLM engine as the service builds it (``build_compressor``): real HTTP to a
local server replaying recorded OpenAI-compatible answers, a 429 then an answer, an answer that
invents a figure, a malformed one. The contest records each outcome; the offline receipt never
waits for any of it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.runtime.config import load_config
from services.compressor.compressor import Compressor, Subject
from services.compressor.main import build_compressor
from tests.support_http.server import Recorded, ReplayServer, load_recorded

PROVIDERS = Path(__file__).parents[1] / "fixtures" / "providers" / "openai"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
NOTES = json.loads((FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines()[0]
                   )["text"]
SUBJECT = Subject(memory_id="0190a0d2-7c4e-7b2a-9f3e-000000000001", version_id="1" * 32)
PATH = "/v1/chat/completions"


def completion(content: str) -> Recorded:
    """The recorded chat completion with another assistant message."""
    raw = json.loads((PROVIDERS / "chat_completion.json").read_text(encoding="utf-8"))
    body: dict[str, Any] = copy.deepcopy(raw["body"])
    body["choices"][0]["message"]["content"] = content
    return Recorded.json(body)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


def compressor(server: ReplayServer) -> Compressor:
    return build_compressor(load_config(compressor_llm_url=server.url,
                                        compressor_llm_model="gpt-4o-mini",
                                        compressor_llm_api_key="k-1",
                                        compressor_llm_timeout_s=10.0))


def llm_entry(full: Any) -> Any:
    assert full.data is not None
    return next(c for c in full.data.receipt.contest if c.engine == "llm")


async def test_a_rate_limited_then_answering_provider_takes_part(server: ReplayServer) -> None:
    kept = "\n".join(NOTES.splitlines()[:3])  # verbatim lines: nothing invented
    server.add("POST", PATH, load_recorded(PROVIDERS / "rate_limited.json"),
               completion(f"<compressed>{kept}</compressed>"))
    engine = compressor(server)
    offline = engine.offline(SUBJECT, NOTES)
    full = await engine.llm_round(SUBJECT, NOTES, offline)
    entry = llm_entry(full)
    assert entry.outcome in {"won", "worse_score", "gate_failed", "below_floor"}, entry
    assert entry.engine_version == "p1:gpt-4o-mini"
    assert len(server.requests) == 2  # the 429 was retried (after its Retry-After)
    sent = server.requests[-1].json()
    assert sent["model"] == "gpt-4o-mini" and "<text>" in sent["messages"][1]["content"]
    assert server.requests[-1].headers.get("authorization") == "Bearer k-1"


async def test_an_invented_figure_fails_the_gate(server: ReplayServer) -> None:
    server.add("POST", PATH, completion(
        "<compressed>Revenue: $999,999 (8.4% above plan); margin 61%.</compressed>"))
    engine = compressor(server)
    full = await engine.llm_round(SUBJECT, NOTES, engine.offline(SUBJECT, NOTES))
    entry = llm_entry(full)
    assert entry.outcome == "gate_failed" and "999,999" in entry.reason, entry
    assert full.data is not None and full.data.receipt.engine != "llm"


async def test_a_malformed_answer_is_an_error(server: ReplayServer) -> None:
    server.add("POST", PATH, completion("Here is your summary: revenue was fine."))
    engine = compressor(server)
    full = await engine.llm_round(SUBJECT, NOTES, engine.offline(SUBJECT, NOTES))
    entry = llm_entry(full)
    assert entry.outcome == "error" and "malformed" in entry.reason, entry
