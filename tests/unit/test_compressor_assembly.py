"""Context assembly: cheapest form safe for the purpose, never over budget, originals when
asked, left-out memories listed, query-aware pruning with its own receipt."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.events.errors import InvalidInput
from services.compressor.assembly import (
    CompressedForm,
    MemoryCandidate,
    assemble,
    query_pruner,
)
from services.compressor.compressor import Compressor, Subject
from services.compressor.tokenizer import default_tokenizer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = {row["id"]: row["text"] for row in map(
    json.loads, (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines())}
TOKENS = default_tokenizer()


def memory_id(index: int) -> str:
    return f"0190a0d2-7c4e-7b2a-9f3e-{index:012d}"


def candidate(index: int, key: str, *, compress: bool = True) -> MemoryCandidate:
    text = HAND[key]
    version = f"{index:032x}"
    forms: tuple[CompressedForm, ...] = ()
    if compress:
        data = Compressor().offline(Subject(memory_id=memory_id(index), version_id=version),
                                    text).data
        assert data is not None
        forms = (CompressedForm(data.content, data.receipt),)
    return MemoryCandidate(memory_id=memory_id(index), version_id=version, original=text,
                           forms=forms)


@pytest.fixture(scope="module")
def ranked() -> list[MemoryCandidate]:
    keys = ["hand-meeting-notes", "hand-incident-report", "hand-customer-email",
            "hand-research-summary", "hand-short-note", "hand-recipe"]
    return [candidate(i, key) for i, key in enumerate(keys)]


def test_takes_the_cheapest_form_safe_for_the_purpose(ranked: list[MemoryCandidate]) -> None:
    context = assemble(ranked, purpose="financial", budget=100_000, tokens=TOKENS)
    assert [p.memory_id for p in context.pieces] == [c.memory_id for c in ranked]
    for piece, cand in zip(context.pieces, ranked, strict=True):
        form = cand.forms[0]
        if form.receipt.is_safe_for("financial") and form.receipt.compressed_tokens < \
                TOKENS.count(cand.original):
            assert piece.form == "compressed" and piece.receipt == form.receipt
        else:
            assert piece.form == "original" and piece.receipt is None
    assert context.receipts == tuple(p.receipt for p in context.pieces if p.receipt)
    assert context.used_tokens == TOKENS.count(context.render()) <= context.budget
    assert context.left_out == ()


def test_falls_back_to_the_original_when_no_receipt_covers_the_purpose(
        ranked: list[MemoryCandidate]) -> None:
    first = ranked[0]
    receipt = first.forms[0].receipt
    narrowed = msgspec.structs.replace(receipt, safe_for=tuple(
        v for v in receipt.safe_for if v.purpose != "legal"))
    memory = msgspec.structs.replace(first, forms=(CompressedForm(first.forms[0].content,
                                                                  narrowed),))
    context = assemble([memory], purpose="legal", budget=100_000, tokens=TOKENS)
    assert context.pieces[0].form == "original" and context.receipts == ()


def test_a_form_for_another_version_or_tampered_is_never_served(
        ranked: list[MemoryCandidate]) -> None:
    first = ranked[0]
    other_version = msgspec.structs.replace(first, version_id="f" * 32)
    tampered = msgspec.structs.replace(first, forms=(
        CompressedForm(first.forms[0].content + " Revenue doubled.", first.forms[0].receipt),))
    for memory in (other_version, tampered):
        context = assemble([memory], purpose="summary", budget=100_000, tokens=TOKENS)
        assert context.pieces[0].form == "original"


def test_originals_only_when_asked(ranked: list[MemoryCandidate]) -> None:
    context = assemble(ranked, purpose="summary", budget=100_000, tokens=TOKENS,
                       allow_compressed=False, prune=query_pruner("revenue", tokens=TOKENS))
    assert {p.form for p in context.pieces} == {"original"} and context.receipts == ()


def test_left_out_for_lack_of_budget(ranked: list[MemoryCandidate]) -> None:
    context = assemble(ranked, purpose="compliance", budget=300, tokens=TOKENS)
    assert context.used_tokens <= 300
    assert context.left_out
    taken = {p.memory_id for p in context.pieces}
    for left in context.left_out:
        assert left.memory_id not in taken
        assert left.needed_tokens is None or left.needed_tokens > left.available_tokens


def test_budget_zero_leaves_everything_out(ranked: list[MemoryCandidate]) -> None:
    context = assemble(ranked, purpose="summary", budget=0, tokens=TOKENS)
    assert context.pieces == () and len(context.left_out) == len(ranked)
    assert context.render() == "" and context.used_tokens == 0


def test_bad_requests_are_invalid_input(ranked: list[MemoryCandidate]) -> None:
    with pytest.raises(InvalidInput):
        assemble(ranked, purpose="gossip", budget=10, tokens=TOKENS)
    with pytest.raises(InvalidInput):
        assemble(ranked, purpose="summary", budget=-1, tokens=TOKENS)


def test_query_pruning_fits_and_carries_a_context_receipt() -> None:
    memory = candidate(7, "hand-research-summary", compress=False)
    pruner = query_pruner("fused ranking latency p95", tokens=TOKENS)
    context = assemble([memory], purpose="summary", budget=150, tokens=TOKENS, prune=pruner)
    (piece,) = context.pieces
    assert piece.form == "pruned" and piece.tokens <= 150
    assert piece.receipt is not None and piece.receipt.trigger == "context"
    assert piece.receipt.settings["query"] == "fused ranking latency p95"
    assert piece.receipt.is_safe_for("summary")
    assert context.receipts == (piece.receipt,)
    assert "91 ms at p95" in piece.text


@settings(max_examples=40, deadline=None)
@given(budget=st.integers(min_value=0, max_value=2500),
       purpose=st.sampled_from(["summary", "financial", "code", "brainstorming"]))
def test_never_over_budget(ranked: list[MemoryCandidate], budget: int, purpose: str) -> None:
    context = assemble(ranked, purpose=purpose, budget=budget, tokens=TOKENS)
    assert TOKENS.count(context.render()) == context.used_tokens <= budget
    assert len(context.pieces) + len(context.left_out) == len(ranked)


def test_memories_after_a_full_budget_are_not_sized(ranked: list[MemoryCandidate]) -> None:
    first = TOKENS.count(ranked[0].forms[0].content)
    context = assemble(ranked, purpose="summary", budget=first, tokens=TOKENS)
    assert [p.memory_id for p in context.pieces] == [ranked[0].memory_id]
    assert all(left.needed_tokens is None for left in context.left_out)
