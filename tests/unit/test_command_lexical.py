"""Planning the candidate tiers of the lexical side, and BM25's idf. Pure functions."""

from __future__ import annotations

from libs.readmodel.lexical_plan import (
    CandidatePlan,
    bm25_idf,
    plan_candidates,
    tsquery_all,
    tsquery_any,
)


def test_rarest_terms_are_read_in_full_until_the_budget() -> None:
    plan = plan_candidates({"common": 900, "rare": 3, "mid": 40, "absent": 0}, limit=10,
                           budget=100, cap=7)
    assert plan == CandidatePlan(rare=("rare", "mid"), common=("common",), cap=7, fill=10)


def test_a_term_too_common_for_the_budget_leaves_only_capped_tiers() -> None:
    plan = plan_candidates({"a": 5000, "b": 4000}, limit=50, budget=1000)
    assert plan.rare == () and plan.common == ("b", "a") and not plan.empty


def test_ties_are_ordered_by_lexeme_and_absent_terms_make_an_empty_plan() -> None:
    assert plan_candidates({"z": 2, "a": 2}, limit=5, budget=3).rare == ("a",)
    assert plan_candidates({"x": 0}, limit=5).empty
    assert plan_candidates({}, limit=5).empty


def test_idf_favours_rare_terms_and_never_goes_negative() -> None:
    assert bm25_idf(1000, 1) > bm25_idf(1000, 10) > bm25_idf(1000, 900) > 0.0
    assert bm25_idf(10, 10) > 0.0


def test_tsquery_text_quotes_lexemes_verbatim() -> None:
    assert tsquery_any(("cat", "dog")) == "'cat' | 'dog'"
    assert tsquery_all(("it's", "a\\b")) == "'it''s' & 'a\\\\b'"
