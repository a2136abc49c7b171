"""The contest: deterministic offline result, every loser with its reason, and an LLM engine
that can never delay the offline result beyond its own timeout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from libs.events.codec import canonical_bytes
from libs.events.errors import Unavailable
from services.compressor.compressor import Compression, CompressionSettings, Compressor, Subject
from services.compressor.contest import Judge, run_offline
from services.compressor.engines import (
    Candidate,
    ChatMessage,
    ChatReply,
    CompressionRequest,
    ExtractiveEngine,
    FactsEngine,
    LlmEngine,
)
from services.compressor.tokenizer import TokenCounter, default_tokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = {row["id"]: row["text"] for row in map(
    json.loads, (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines())}
SUBJECT = Subject(memory_id="0190a0d2-7c4e-7b2a-9f3e-1c2d3e4f5a6b", version_id="a" * 32)


class FakeChat:
    def __init__(self, text: str = "", delay: float = 0.0,
                 error: Exception | None = None) -> None:
        self.text, self.delay, self.error = text, delay, error

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                       timeout_s: float) -> ChatReply:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return ChatReply(text=self.text, model="fake-1", input_tokens=10, output_tokens=5)


class Crashing:
    """An offline engine with a bug: the contest must record it and carry on."""

    name = "crashing"
    version = "0"

    def compress(self, request: CompressionRequest, tokens: TokenCounter) -> Candidate:
        raise ZeroDivisionError("bug")


@pytest.mark.parametrize("key", sorted(HAND))
def test_offline_contest_is_deterministic(key: str) -> None:
    runs = [Compressor().offline(SUBJECT, HAND[key]) for _ in range(3)]
    encoded = {canonical_bytes(run.data) for run in runs}
    assert len(encoded) == 1
    assert runs[0].result.winner is not None


def test_every_contestant_is_recorded_with_a_reason() -> None:
    out = Compressor().offline(SUBJECT, HAND["hand-settings-note"])
    assert out.data is not None
    entries = out.data.receipt.contest
    assert [e.engine for e in entries] == ["extractive", "facts"]
    assert sum(e.outcome == "won" for e in entries) == 1
    assert all(e.reason for e in entries)
    assert out.data.receipt.engine == next(e.engine for e in entries if e.outcome == "won")


def test_no_output_and_crash_are_losers_not_failures() -> None:
    compressor = Compressor(engines=(ExtractiveEngine(), FactsEngine(), Crashing()))
    out = compressor.offline(SUBJECT, HAND["hand-recipe"])
    outcomes = {c.engine: (c.outcome, c.reason) for c in out.result.contestants}
    assert outcomes["facts"][0] == "no_output"
    assert outcomes["crashing"] == ("error", "ZeroDivisionError: bug")
    assert outcomes["extractive"][0] == "won"


def test_quality_floor_makes_losers() -> None:
    compressor = Compressor(settings=CompressionSettings(quality_floor=100.0))
    out = compressor.offline(SUBJECT, HAND["hand-code-review"])
    by_engine = {c.engine: c for c in out.result.contestants}
    assert by_engine["extractive"].outcome == "below_floor"
    assert "floor 100" in by_engine["extractive"].reason


def test_winner_order_is_merit_then_tokens_then_name() -> None:
    request = Compressor().request(HAND["hand-decision-log"])
    result = run_offline(request, (ExtractiveEngine(), FactsEngine()),
                         Judge(tokens=default_tokenizer()))
    eligible = [c for c in result.contestants if c.merit is not None]
    best = max(eligible, key=lambda c: (c.merit or 0.0, -(c.compressed_tokens or 0)))
    assert result.winner is not None and result.winner.engine == best.engine


async def test_llm_output_with_an_invented_number_is_rejected_by_measurement() -> None:
    text = HAND["hand-meeting-notes"]
    invented = "<compressed>revenue: $412,500 (+9.9%)\nbudget: EUR 45,000</compressed>"
    compressor = Compressor(llm_engines=(LlmEngine(FakeChat(invented), "fake-1", 1.0),))
    out = await compressor.run(SUBJECT, text)
    llm = next(c for c in out.result.contestants if c.engine == "llm")
    assert llm.outcome == "gate_failed"
    assert "'+9.9%'" in llm.reason or "'9.9%'" in llm.reason
    assert out.data is not None and out.data.receipt.engine != "llm"


async def test_a_good_llm_candidate_can_win() -> None:
    text = ("Quick recap from the call: after a lot of back and forth, and some detours about "
            "the office plants and the holiday rota, everyone was happy with the plan as it "
            "stands. The budget is $5,000.")
    reply = "<compressed>Everyone was happy with the plan. The budget is $5,000.</compressed>"
    compressor = Compressor(llm_engines=(LlmEngine(FakeChat(reply), "fake-1", 1.0),))
    out = await compressor.run(SUBJECT, text)
    assert out.result.winner is not None and out.result.winner.engine == "llm", [
        (c.engine, c.outcome, c.reason) for c in out.result.contestants]
    assert out.data is not None and out.data.content.endswith("$5,000.")


async def test_a_dead_llm_is_an_error_entry() -> None:
    chat = FakeChat(error=Unavailable("provider down", status=503))
    compressor = Compressor(llm_engines=(LlmEngine(chat, "fake-1", 1.0),))
    out = await compressor.run(SUBJECT, HAND["hand-meeting-notes"])
    llm = next(c for c in out.result.contestants if c.engine == "llm")
    assert (llm.outcome, llm.reason) == ("error", "provider down")
    assert out.data is not None and out.data.receipt.engine == "extractive"


async def test_a_slow_llm_never_delays_the_offline_receipt() -> None:
    loop = asyncio.get_running_loop()
    slow = LlmEngine(FakeChat("<compressed>x</compressed>", delay=30.0), "slow", timeout_s=0.3)
    compressor = Compressor(llm_engines=(slow,))
    offline_at: list[float] = []
    offline_payloads: list[Compression] = []

    def on_offline(compression: Compression) -> None:
        offline_at.append(loop.time())
        offline_payloads.append(compression)

    started = loop.time()
    out = await compressor.run(SUBJECT, HAND["hand-meeting-notes"], on_offline=on_offline)
    finished = loop.time()
    assert offline_at[0] - started < 0.25  # did not wait for the LLM at all
    assert finished - started < 1.0  # the LLM got its own 0.3 s, no more
    llm = next(c for c in out.result.contestants if c.engine == "llm")
    assert llm.outcome == "timeout" and "0.3 s" in llm.reason
    offline = offline_payloads[0].data
    assert offline is not None and out.data is not None
    assert offline.content == out.data.content  # same winner, same compressed form
    assert offline.receipt.receipt_id != out.data.receipt.receipt_id  # different engine sets
    assert [e.engine for e in offline.receipt.contest] == ["extractive", "facts"]


async def test_an_llm_winner_gets_measured_removals() -> None:
    text = ("Quick recap from the call: after a lot of back and forth, and some detours about "
            "the office plants and the holiday rota, everyone was happy with the plan as it "
            "stands. The budget is $5,000.")
    reply = "<compressed>Everyone was happy with the plan. The budget is $5,000.</compressed>"
    compressor = Compressor(llm_engines=(LlmEngine(FakeChat(reply), "fake-1", 1.0),))
    out = await compressor.run(SUBJECT, text)
    assert out.data is not None and out.data.receipt.engine == "llm"
    removed = out.data.receipt.removed
    assert removed and all("measured" in note.reason for note in removed)
    assert any("office plants" in text[note.start:note.end] for note in removed)
