"""Units and clauses by offset, validation, terms: the pieces engines keep or drop."""

from __future__ import annotations

import pytest

from libs.events.errors import InvalidInput
from services.compressor.spans import find_spans, find_structure
from services.compressor.text import (
    clauses,
    content_terms,
    fine_clauses,
    join_units,
    segment,
    structure_classes,
    validate_text,
)

NOTES = """# Weekly sync

We met on 2026-03-02. Revenue was $1.2M, e.g. up 3.5% vs. Q4. Dr. Smith joined
late because of a train delay. The v1.2.3 release shipped.

- Alice will prepare
  the budget by Friday.
- Bob owns the migration.

owner: Alice
```python
x = 1

y = 2
```
| a | b |
Final words here! And more?"""


def units_of(text: str) -> list[tuple[str, str]]:
    return [(u.kind, text[u.start:u.end]) for u in segment(text, find_spans(text))]


def test_segment_kinds_and_offsets() -> None:
    assert units_of(NOTES) == [
        ("heading", "# Weekly sync"),
        ("sentence", "We met on 2026-03-02."),
        ("sentence", "Revenue was $1.2M, e.g. up 3.5% vs. Q4."),
        ("sentence", "Dr. Smith joined\nlate because of a train delay."),
        ("sentence", "The v1.2.3 release shipped."),
        ("list_item", "- Alice will prepare\n  the budget by Friday."),
        ("list_item", "- Bob owns the migration."),
        ("key_value", "owner: Alice"),
        ("code", "```python\nx = 1\n\ny = 2\n```"),
        ("table_row", "| a | b |"),
        ("sentence", "Final words here!"),
        ("sentence", "And more?"),
    ]


def test_rst_underlined_heading() -> None:
    text = "Installation\n============\n\nRun pip install. Then test."
    assert units_of(text)[0] == ("heading", "Installation")


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n"])
def test_empty_text_has_no_units(text: str) -> None:
    assert segment(text, find_spans(text)) == ()


def test_clauses_never_cut_inside_a_protected_span() -> None:
    text = "We met on March 3, 2025, which was late, and paid $1,250,000 to them quickly."
    spans = find_spans(text)
    pieces = clauses(text, segment(text, spans), spans)
    cut_points = {p.start for p in pieces[1:]}
    for span in spans:
        assert not any(span.start < cut < span.end for cut in cut_points)
    assert [text[p.start:p.end] for p in pieces] == [
        "We met on March 3, 2025,", "which was late,", "and paid $1,250,000",
        "to them quickly."]


def test_short_clauses_join_their_neighbour() -> None:
    text = "Thanks, all of you for coming to the review."
    spans = find_spans(text)
    pieces = clauses(text, segment(text, spans), spans)
    assert [text[p.start:p.end] for p in pieces] == [
        "Thanks, all of you", "for coming to the review."]


def test_fine_clauses_cut_span_holding_clauses_but_never_a_span() -> None:
    text = "The parser version 2.3.1 was released on 2024-05-01 in the main repository."
    spans = find_spans(text)
    (piece,) = clauses(text, segment(text, spans), spans)
    fine = fine_clauses(text, piece, spans)
    assert [text[p.start:p.end] for p in fine] == [
        "The parser version 2.3.1", "was released", "on 2024-05-01",
        "in the main repository."]
    for span in spans:  # every span sits whole in one part
        assert any(p.start <= span.start and span.end <= p.end for p in fine)


def test_fine_clauses_leave_negations_and_spanless_clauses_whole() -> None:
    text = "Nothing to see in this sentence at all."
    spans = find_spans(text)
    (piece,) = clauses(text, segment(text, spans), spans)
    assert fine_clauses(text, piece, spans) == [piece]  # no span: nothing to cut
    text = "The cache is not flushed on exit in version 1.2."
    spans = find_spans(text)
    negation = next(s for s in spans if s.kind == "negation")
    for p in (f for c in clauses(text, segment(text, spans), spans)
              for f in fine_clauses(text, c, spans)):
        assert not (p.start < negation.start < p.end < negation.end)
        assert not (negation.start < p.start < negation.end)


def test_join_keeps_lines_and_paragraphs() -> None:
    text = "One here.\nTwo there.\n\nThree after."
    units = segment(text, find_spans(text))
    out, placed = join_units(text, units)
    assert out == "One here.\nTwo there.\n\nThree after."  # line breaks are kept
    for unit, (a, b) in zip(units, placed, strict=True):
        assert out[a:b] == text[unit.start:unit.end]


def test_structure_classes() -> None:
    assert structure_classes(NOTES, find_structure(NOTES)) == {"list", "heading", "code"}
    assert structure_classes("Just prose.", find_structure("Just prose.")) == frozenset()


def test_validate_text_rejects_what_postgres_cannot_store() -> None:
    assert validate_text("fine ☕") == "fine ☕"
    with pytest.raises(InvalidInput):
        validate_text("a\x00b")
    with pytest.raises(InvalidInput):
        validate_text("lone \ud800 surrogate")


def test_content_terms_fold_and_filter() -> None:
    assert content_terms("The customers' Customer's budgets and the budget of 2026") == (
        "customer", "customer", "budget", "budget", "2026")
