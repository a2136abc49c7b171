"""Measurement and purpose rules: computed on (input, output), never taken from an engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from libs.embeddings import MiniLMOnnxEmbedder
from services.compressor.compressor import Compressor
from services.compressor.engines.base import Candidate, Source
from services.compressor.purposes import PURPOSES, judge
from services.compressor.quality import UNVERIFIED, WEIGHTS, measure

FIXTURES = Path(__file__).parents[1] / "fixtures" / "compressor"
HAND = {row["id"]: row["text"] for row in map(
    json.loads, (FIXTURES / "handmade.jsonl").read_text(encoding="utf-8").splitlines())}

CONTRACT = HAND["hand-contract-clause"]


@pytest.fixture(scope="module")
def compressor() -> Compressor:
    return Compressor()


@pytest.fixture(scope="module")
def embedder() -> MiniLMOnnxEmbedder:
    return MiniLMOnnxEmbedder(workers=1)


def extractive(text: str, keep: list[str]) -> Candidate:
    """A hand-made extractive candidate keeping the given verbatim pieces, in order."""
    sources: list[Source] = []
    parts: list[str] = []
    cursor = 0
    for piece in keep:
        start = text.index(piece)
        if parts:
            cursor += 1
        sources.append(Source(cursor, cursor + len(piece), ((start, start + len(piece)),)))
        parts.append(piece)
        cursor += len(piece)
    return Candidate(engine="hand", engine_version="0", kind="extractive",
                     text=" ".join(parts), sources=tuple(sources))


def rewrite(text: str) -> Candidate:
    return Candidate(engine="hand", engine_version="0", kind="rewrite", text=text)


def test_a_dropped_figure_is_named_and_not_safe_for_compliance(compressor: Compressor) -> None:
    request = compressor.request(CONTRACT)
    # Keep everything but clause 12.4 (15%, 95.0%, 30 days and an "except").
    kept = [line for line in CONTRACT.split("\n") if line.strip() and "12.4" not in line]
    m = measure(request.text, request.spans, extractive(request.text, kept))
    lost = {(s.kind, s.text) for s in m.lost}
    assert ("percentage", "15%") in lost and ("percentage", "95.0%") in lost
    recall = m.value("protected_recall")
    assert recall is not None and recall < 1.0
    assert not m.gates_passed
    verdicts = judge(m)
    unsafe = {v.purpose: v.reason for v in verdicts.not_safe_for}
    assert {"compliance", "financial", "legal", "factual_recall"} <= set(unsafe)
    assert "15%" in unsafe["compliance"] and "percentage" in unsafe["compliance"]
    assert any("15%" in risk for risk in verdicts.risk_factors)
    assert "compliance" not in {v.purpose for v in verdicts.safe_for}


def test_the_untouched_clause_is_safe_for_everything(compressor: Compressor) -> None:
    request = compressor.request(CONTRACT)
    m = measure(request.text, request.spans, extractive(request.text, [request.text]))
    assert m.gates_passed and m.value("precision") == 1.0
    assert {v.purpose for v in judge(m).safe_for} == set(PURPOSES)


def test_a_rewrite_that_invents_a_number_fails_precision(compressor: Compressor) -> None:
    request = compressor.request(CONTRACT)
    candidate = rewrite("liability cap: USD 250,000\nservice credits: capped at 17% of the fee")
    m = measure(request.text, request.spans, candidate)
    assert "17%" in m.unsupported
    assert not m.gates_passed
    precision = m.value("precision")
    assert precision is not None and precision < 1.0
    assert judge(m).safe_for == ()  # inventing is unsafe for every purpose


def test_a_rewrite_that_invents_a_name_fails_precision(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-meeting-notes"])
    m = measure(request.text, request.spans, rewrite("budget owner: Dana, approved by Mallory"))
    assert "Mallory" in m.unsupported


def test_reformatted_numbers_are_supported(compressor: Compressor) -> None:
    request = compressor.request("The cap is USD 250,000 for 2026.")
    m = measure(request.text, request.spans, rewrite("cap: USD 250000 for 2026"))
    assert m.unsupported == ()


def test_false_extractive_claims_fail_the_precision_gate(compressor: Compressor) -> None:
    request = compressor.request(HAND["hand-meeting-notes"])
    lie = Candidate(engine="hand", engine_version="0", kind="extractive",
                    text="Revenue came in at $999.", sources=(Source(0, 24, ((0, 24),)),))
    m = measure(request.text, request.spans, lie)
    assert not m.verified_extractive
    assert m.unsupported[0] == UNVERIFIED and "$999" in m.unsupported


def test_positional_survival_counts_each_occurrence(compressor: Compressor) -> None:
    text = "Alpha costs 5 units today. Beta also costs 5 units, sadly for us all."
    request = compressor.request(text)
    m = measure(text, request.spans, extractive(text, ["Alpha costs 5 units today."]))
    fives = [r for r in m.spans if r.span.text == "5"]
    assert [r.survived for r in fives] == [True, False]  # the second 5 is a different fact


def test_coverage_structure_and_score_formula(compressor: Compressor) -> None:
    text = "# Plan\n\n- migrate the orders table\n- rebuild the orders index\n\nOrders matter."
    request = compressor.request(text)
    m = measure(text, request.spans, rewrite("orders"))
    assert m.value("structure") == 0.0 and set(m.lost_structure) == {"heading", "list"}
    coverage = m.value("coverage")
    assert coverage is not None and 0.0 < coverage < 1.0
    measured = [(WEIGHTS[c.name], c.value) for c in m.components if c.value is not None]
    expected = 100 * sum(w * v for w, v in measured) / sum(w for w, _ in measured)
    assert m.score == round(expected, 2)
    assert all(c.method for c in m.components)


def test_similarity_uses_the_injected_embedder(compressor: Compressor,
                                               embedder: MiniLMOnnxEmbedder) -> None:
    request = compressor.request(HAND["hand-meeting-notes"])
    same = measure(request.text, request.spans, rewrite(request.text), embed=embedder.embed,
                   embed_name=embedder.model_id)
    other = measure(request.text, request.spans, rewrite("Buy oat milk and call the dentist."),
                    embed=embedder.embed, embed_name=embedder.model_id)
    s_same, s_other = same.value("similarity"), other.value("similarity")
    assert s_same is not None and s_other is not None
    assert s_same > 0.99 and s_other < 0.5
    method = next(c.method for c in same.components if c.name == "similarity")
    assert embedder.model_id in method


def test_similarity_not_measured_is_said(compressor: Compressor) -> None:
    request = compressor.request("Some short text with 3 facts.")
    m = measure(request.text, request.spans, rewrite(request.text))
    assert m.value("similarity") is None
    assert "embedding similarity not measured" in judge(m).risk_factors


def test_similarity_is_clipped_for_any_embedder(compressor: Compressor) -> None:
    def opposite(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)[: len(texts)]

    request = compressor.request("Some text.")
    m = measure(request.text, request.spans, rewrite("other"), embed=opposite)
    assert m.value("similarity") == 0.0


def test_brainstorming_tolerates_a_lost_span(compressor: Compressor,
                                             embedder: MiniLMOnnxEmbedder) -> None:
    text = HAND["hand-research-summary"]
    request = compressor.request(text)
    keep = [s for s in text.split("\n\n") if "38 ms" not in s]
    m = measure(text, request.spans, extractive(text, keep), embed=embedder.embed)
    verdicts = judge(m)
    assert m.lost
    assert "brainstorming" in {v.purpose for v in verdicts.safe_for}
    assert "financial" in {v.purpose for v in verdicts.not_safe_for}


def test_code_purpose_needs_identifiers(compressor: Compressor) -> None:
    text = HAND["hand-code-review"]
    request = compressor.request(text)
    keep = [p for p in text.split("\n\n") if "MAX_BATCH" not in p]
    unsafe = {v.purpose: v.reason for v in judge(
        measure(text, request.spans, extractive(text, keep))).not_safe_for}
    assert "MAX_BATCH" in unsafe["code"]
