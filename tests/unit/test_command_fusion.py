"""Reciprocal rank fusion and query-term sanitising."""

from __future__ import annotations

import pytest

from libs.events import InvalidInput
from libs.readmodel.fusion import RRF_K, reciprocal_rank_fusion
from libs.readmodel.query_terms import query_terms
from services.command.application.principals import validate_principal


def test_rrf_rewards_documents_both_sides_agree_on() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "lexical": ["c", "d", "b"]})
    assert [hit.doc_id for hit in fused] == ["c", "b", "a", "d"]
    by_id = {hit.doc_id: hit for hit in fused}
    assert by_id["b"].score == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 3))
    assert by_id["c"].ranks == {"dense": 3, "lexical": 1}
    assert by_id["a"].ranks == {"dense": 1}
    # agreement beats a single first place
    assert by_id["c"].score > by_id["a"].score


def test_rrf_is_deterministic_and_limited() -> None:
    fused = reciprocal_rank_fusion({"x": ["b", "a"], "y": ["a", "b"]}, limit=1)
    assert len(fused) == 1 and fused[0].doc_id == "a"  # tie on score -> best rank -> id
    assert reciprocal_rank_fusion({}) == []
    assert reciprocal_rank_fusion({"x": ["a", "a"]})[0].ranks == {"x": 1}


def test_query_terms_strip_every_tsquery_operator() -> None:
    # Words are lower-cased letters and digits only (query_terms.py; compounds: test_retrieval).
    terms = query_terms("What's the user's fav-colour?! (blue | red) & !green:* 'x'")
    assert terms.words == ("what", "s", "the", "user", "fav", "colour", "blue", "red", "green",
                           "x")
    assert all(term.isalnum() for term in (*terms.words, *terms.compounds))
    assert query_terms("  ?!  ").empty
    assert len(query_terms(" ".join(f"w{i}" for i in range(500))).words) == 64


def test_principal_validation() -> None:
    assert validate_principal(None) == "anonymous"
    assert validate_principal("") == "anonymous"
    assert validate_principal("svc:planner") == "svc:planner"
    with pytest.raises(InvalidInput):
        validate_principal("evil\nheader")
    with pytest.raises(InvalidInput):
        validate_principal("x" * 300)
