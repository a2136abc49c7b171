"""Retrieval's pure parts (issue 12): query terms, score fusion, thread context, recency."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from libs.readmodel.context import Neighbours, recency_factor, spread_to_neighbours
from libs.readmodel.fusion import normalised, reciprocal_rank_fusion, score_fusion
from libs.readmodel.query_terms import MAX_TERM_CHARS, query_terms
from libs.readmodel.search import SearchSettings

WEIGHTS = SearchSettings().weights


def test_hyphenated_words_give_the_joined_word_and_the_parts() -> None:
    terms = query_terms("How does she de-stress?")
    assert {"de", "stress"} <= set(terms.words)
    assert "destress" in terms.compounds


def test_adjacent_words_are_also_joined() -> None:
    terms = query_terms("Where did they go on a road trip")
    assert "roadtrip" in terms.compounds
    assert "road" in terms.words and "trip" in terms.words
    assert not set(terms.compounds) & set(terms.words)


def test_the_last_word_is_a_prefix_when_long_enough() -> None:
    assert query_terms("what got broke").prefix == "broke"
    assert query_terms("what is in the car").prefix is None  # too short to expand
    assert query_terms("?!").prefix is None


def test_a_leading_speaker_label_is_not_a_query_word() -> None:
    terms = query_terms("Joanna: what are your hobbies?")
    assert "joanna" not in terms.words
    assert "hobbies" in terms.words
    assert "joanna" in query_terms("What are Joanna's hobbies?").words


def test_terms_are_bounded_and_operator_free() -> None:
    terms = query_terms("x" * 500 + " a|b & c:* 'd' !e (f)")
    assert all(len(t) <= MAX_TERM_CHARS for t in (*terms.words, *terms.compounds))
    assert all(t.isalnum() for t in (*terms.words, *terms.compounds))
    assert query_terms("\x00 \ud800 ").empty


def test_normalisation_is_min_max_and_flat_for_equal_scores() -> None:
    assert normalised([("a", 10.0), ("b", 5.0), ("c", 0.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert normalised([("a", 3.0), ("b", 3.0)]) == {"a": 1.0, "b": 1.0}
    assert normalised([("a", float("nan"))]) == {"a": 1.0}
    assert normalised([]) == {}


def _side(rng: random.Random, ids: list[str], top: str | None, spread: float
          ) -> list[tuple[str, float]]:
    """A ranking of ``ids`` with a long flat tail and, optionally, a clear winner."""
    scores = sorted((rng.uniform(0.3, 0.3 + spread) for _ in ids), reverse=True)
    ranking = list(zip(ids, scores, strict=True))
    if top is not None:
        ranking.insert(0, (top, 0.3 + 3 * spread))
    return ranking


def test_a_first_rank_on_one_side_beats_noise_ranked_in_the_middle_by_both() -> None:
    rng = random.Random(7)
    noise = [f"n{i}" for i in range(99)]
    lexical = _side(rng, noise, "answer", 0.5)  # BM25: the answer far above the rest
    dense = _side(rng, list(reversed(noise)), None, 0.3)  # dense: the answer not found
    fused = score_fusion({"lexical": lexical, "dense": dense}, WEIGHTS)
    middle = noise[45]
    position = {hit.doc_id: i for i, hit in enumerate(fused)}
    assert position["answer"] < position[middle]
    # RRF k=60 puts the middle-of-both noise above a first rank on one side: the case.
    rrf = reciprocal_rank_fusion({"lexical": [d for d, _ in lexical],
                                  "dense": [d for d, _ in dense]})
    rrf_position = {hit.doc_id: i for i, hit in enumerate(rrf)}
    assert rrf_position[middle] < rrf_position["answer"]


def test_fusion_top_k_is_a_prefix_whatever_k() -> None:
    rng = random.Random(3)
    ids = [f"d{i}" for i in range(150)]
    lexical = [(d, rng.random() * 10) for d in rng.sample(ids, 100)]
    dense = [(d, rng.random()) for d in rng.sample(ids, 100)]
    lexical.sort(key=lambda x: -x[1])
    dense.sort(key=lambda x: -x[1])
    full = score_fusion({"lexical": lexical, "dense": dense}, WEIGHTS)
    for k in (1, 5, 10, 50):
        assert score_fusion({"lexical": lexical, "dense": dense}, WEIGHTS, limit=k) == full[:k]


def test_one_sided_fusion_scores_in_unit_range_and_keeps_raw_scores() -> None:
    fused = score_fusion({"lexical": [("a", 7.5), ("b", 2.5)]}, WEIGHTS)
    assert [(h.doc_id, h.score) for h in fused] == [("a", 1.0), ("b", 0.0)]
    assert fused[0].scores == {"lexical": 7.5} and fused[0].ranks == {"lexical": 1}


def test_the_next_turn_gets_a_share_of_a_hit_s_score() -> None:
    scores = {"question": 1.0, "other": 0.45}
    around = {"question": Neighbours(before="greeting", after="answer")}
    spread = spread_to_neighbours(scores, ["question", "other"], around, after_share=0.5,
                                  before_share=0.1)
    assert spread["answer"] == pytest.approx(0.5)  # a neighbour nobody retrieved joins
    assert spread["greeting"] == pytest.approx(0.1)
    assert spread["answer"] > spread["other"]
    assert spread["question"] == 1.0 and spread["other"] == 0.45
    # Outside the pool nothing is lent; shares come from the scores before spreading.
    assert spread_to_neighbours(scores, [], around, after_share=0.5, before_share=0.1) == scores


def test_recency_factor_halves_the_boost_per_half_life() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    fresh = recency_factor(now, now, weight=0.3, half_life_days=10)
    half = recency_factor(now - timedelta(days=10), now, weight=0.3, half_life_days=10)
    old = recency_factor(now - timedelta(days=10_000), now, weight=0.3, half_life_days=10)
    future = recency_factor(now + timedelta(days=5), now, weight=0.3, half_life_days=10)
    assert fresh == pytest.approx(1.0) and future == pytest.approx(1.0)
    assert half == pytest.approx(0.85)
    assert old == pytest.approx(0.7)
