"""Engines: extractive (verbatim, deterministic, pass-through), facts (traceable lines), llm
(prompt, parsing, own timeout) over an in-process fake chat client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.compressor.compressor import Compressor
from services.compressor.engines import (
    ChatMessage,
    ChatReply,
    EngineError,
    EngineTimeout,
    ExtractiveEngine,
    FactsEngine,
    LlmEngine,
    NoOutput,
)
from services.compressor.engines.extractive import MIN_TOKENS
from services.compressor.engines.llm import build_messages, parse_reply

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = {row["id"]: row["text"] for row in map(
    json.loads, (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines())}


@pytest.fixture(scope="module")
def compressor() -> Compressor:
    return Compressor()


def test_extractive_output_is_verbatim_input_ranges(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-meeting-notes"])
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    assert candidate.kind == "extractive"
    assert len(candidate.text) < len(request.text)
    for source in candidate.sources:
        ((start, end),) = source.sources
        assert candidate.text[source.out_start:source.out_end] == request.text[start:end]
    kept = {(n.start, n.end) for n in candidate.preserved}
    removed = {(n.start, n.end) for n in candidate.removed}
    assert kept.isdisjoint(removed) and removed  # something was removed, each with a reason
    assert all(n.reason for n in candidate.removed)


def test_extractive_keeps_every_piece_holding_a_protected_span(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-incident-report"])
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    covered = [src for s in candidate.sources for src in s.sources]
    for span in request.spans:
        assert any(a <= span.start and span.end <= b for a, b in covered), span


def test_extractive_charges_headings_to_the_budget(compressor: Compressor) -> None:
    sections = [
        f"## Section about topic {name}\n\n"
        f"The {name} team reviewed the plan for the {name} rollout and agreed on the order. "
        f"Everyone on the {name} side wanted a slower start and a careful review. "
        f"Later the {name} group asked for more time to write the handbook."
        for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
    ]
    request = compressor.request("\n\n".join(sections))
    assert not request.spans  # nothing mandatory: only the budget decides
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    budget = int(request.target_ratio * request.input_tokens)
    kept = sum(compressor.tokens.count(request.text[n.start:n.end]) for n in candidate.preserved)
    assert any(n.reason == "heading of a kept section" for n in candidate.preserved)
    assert kept <= budget  # headings kept with their sections are inside the budget


def test_extractive_cuts_span_holding_clauses_finer(compressor: Compressor) -> None:
    text = ("The quarterly review of the platform team took place in the large meeting room "
            "on 2026-03-02 and lasted for most of the afternoon. Nobody took notes by hand. "
            "Everyone agreed that the migration of the billing database went smoothly overall "
            "and that the remaining work can wait for the next planning cycle this spring.")
    request = compressor.request(text)
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    assert "2026-03-02" in candidate.text
    assert "on 2026-03-02" in [request.text[n.start:n.end] for n in candidate.preserved]
    assert "The quarterly review of the platform team" not in candidate.text


def test_extractive_is_deterministic(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-research-summary"])
    first = ExtractiveEngine().compress(request, compressor.tokens)
    assert all(ExtractiveEngine().compress(request, compressor.tokens) == first for _ in range(5))


def test_short_input_passes_through_and_says_so(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-short-note"])
    assert request.input_tokens < MIN_TOKENS
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    assert candidate.kind == "passthrough"
    assert candidate.text == request.text
    assert "too short to gain" in candidate.notes[0]


def test_empty_input_passes_through(compressor: Compressor) -> None:
    candidate = ExtractiveEngine().compress(compressor.request(""), compressor.tokens)
    assert candidate.kind == "passthrough" and candidate.text == "" and candidate.sources == ()


def test_query_steers_what_is_kept(compressor: Compressor) -> None:
    text = HAND["hand-recipe"]
    plain = ExtractiveEngine().compress(compressor.request(text), compressor.tokens)
    steered = ExtractiveEngine().compress(compressor.request(text, "lemon coriander finish"),
                                          compressor.tokens)
    assert "lemon" in steered.text and "lemon" not in plain.text


def test_facts_lines_are_traceable_to_input_offsets(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-decision-log"])
    candidate = FactsEngine().compress(request, compressor.tokens)
    assert candidate.kind == "rewrite"
    lines = candidate.text.split("\n")
    assert "Owner: Chen Wei" in lines
    assert lines[0].startswith("2025-11-04: decided to keep PostgreSQL 16")
    assert len(candidate.sources) == len(lines)
    for line, source in zip(lines, candidate.sources, strict=True):
        assert candidate.text[source.out_start:source.out_end] == line
        for start, end in source.sources:
            assert 0 <= start < end <= len(request.text)
            assert request.text[start:end] in line  # every part of the line is input text


def test_facts_declines_unstructured_prose(compressor: Compressor) -> None:
    with pytest.raises(NoOutput):
        FactsEngine().compress(compressor.request(HAND["hand-recipe"]), compressor.tokens)


def test_facts_patterns(compressor: Compressor) -> None:
    text = ("The timeout is 30 s.\nWe decided to ship on 2026-04-02.\n"
            "Alice will prepare the budget.\n14:05 UTC - db-1 failed over.\nretries: 5")
    candidate = FactsEngine().compress(compressor.request(text), compressor.tokens)
    assert candidate.text.split("\n") == [
        "timeout: 30 s", "decision: ship on 2026-04-02", "action (Alice): prepare the budget",
        "14:05 UTC: db-1 failed over", "retries: 5"]


class FakeChat:
    """An in-process chat client: replies with a fixed text after a delay, or raises."""

    def __init__(self, text: str = "", delay: float = 0.0,
                 error: Exception | None = None) -> None:
        self.text, self.delay, self.error = text, delay, error
        self.calls: list[tuple[Sequence[ChatMessage], int, float]] = []

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                       timeout_s: float) -> ChatReply:
        self.calls.append((messages, max_tokens, timeout_s))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return ChatReply(text=self.text, model="fake-1", input_tokens=100, output_tokens=20)


async def test_llm_sends_the_prompt_and_parses_the_reply(compressor: Compressor) -> None:
    chat = FakeChat("<compressed>\nrevenue: $412,500\n</compressed>")
    engine = LlmEngine(chat, model="fake-1", timeout_s=2.0)
    request = compressor.request(HAND["hand-meeting-notes"], query="revenue")
    candidate = await engine.compress(request)
    assert candidate.text == "revenue: $412,500"
    assert candidate.kind == "rewrite" and candidate.engine_version == "p1:fake-1"
    messages, max_tokens, timeout_s = chat.calls[0]
    assert messages == build_messages(request)
    assert messages[0].role == "system" and "never add a fact" in messages[0].content
    assert request.text in messages[1].content and "revenue" in messages[1].content
    assert max_tokens == request.input_tokens and timeout_s == 2.0


@pytest.mark.parametrize("reply", [
    "revenue: $412,500", "<compressed>a</compressed><compressed>b</compressed>",
    "<compressed>unterminated", "</compressed>x<compressed>",
])
def test_malformed_replies_are_errors(reply: str) -> None:
    with pytest.raises(EngineError) as caught:
        parse_reply(reply)
    assert not isinstance(caught.value, NoOutput)


@pytest.mark.parametrize("reply", ["<compressed></compressed>", "<compressed> \n\t</compressed>"])
def test_empty_replies_are_no_output(reply: str) -> None:
    with pytest.raises(NoOutput):
        parse_reply(reply)


async def test_llm_enforces_its_own_timeout(compressor: Compressor) -> None:
    engine = LlmEngine(FakeChat("<compressed>x</compressed>", delay=5.0), "slow", timeout_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(EngineTimeout):
        await engine.compress(compressor.request(HAND["hand-meeting-notes"]))
    assert loop.time() - started < 1.0


def test_llm_rejects_a_nonsense_timeout() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout_s"):
            LlmEngine(FakeChat(), "m", timeout_s=bad)


_FRAGMENTS = (
    "The cache", "is not flushed", "on 2026-03-02", "in version 1.2.3", "(see `flush()`)",
    "and it returns", "$1,250,000,", "for 15 minutes;", "via https://example.com/a.b", "of the",
    "x: 1", "\n\n", "\n- ", "## Heading\n", ".", ",", " — ", "étude", "日本語", "\U0001f600",
    "at 10:30 CET", "user@example.com", "but never", "0x1f2e3d4c5b6a", "3.5%", "  ",
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), min_size=30, max_size=120))
def test_extractive_keeps_spans_verbatim_on_any_mix(compressor: Compressor,
                                                    parts: list[str]) -> None:
    text = " ".join(parts)
    request = compressor.request(text)
    candidate = ExtractiveEngine().compress(request, compressor.tokens)
    covered = [src for s in candidate.sources for src in s.sources]
    for source in candidate.sources:
        ((start, end),) = source.sources
        assert candidate.text[source.out_start:source.out_end] == request.text[start:end]
    for span in request.spans:
        assert any(a <= span.start and span.end <= b for a, b in covered), span
