"""Protected spans by offset: each kind on tricky text, overlaps, layers, determinism, edges."""

from __future__ import annotations

import itertools

import pytest

from services.compressor.spans import KIND_ORDER, Span, find_spans


def kinds(text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.text) for s in find_spans(text)]


def only(text: str, kind: str) -> list[str]:
    return [s.text for s in find_spans(text) if s.kind == kind]


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("Revenue was $1,250,000.50 and EUR 300k, or 45 dollars.", "amount",
         ["$1,250,000.50", "EUR 300k", "45 dollars"]),
        ("Margin 12.5% (up 3 percent); churn -0.4%.", "percentage",
         ["12.5%", "3 percent", "-0.4%"]),
        ("On 2026-03-01, 03/04/2025, March 3, 2025, 3rd of May and Q3 2026.", "date",
         ["2026-03-01", "03/04/2025", "March 3, 2025", "3rd of May", "Q3 2026"]),
        ("At 14:05 UTC, then 9:30am and 6 p.m. ok.", "time", ["14:05 UTC", "9:30am", "6 p.m."]),
        ("It took 45 ms, then 2.5 hours and 3 days.", "duration", ["45 ms", "2.5 hours", "3 days"]),
        ("See https://example.com/a_(b). And www.python.org.", "url",
         ["https://example.com/a_(b)", "www.python.org"]),
        ("Mail bob.smith+x@corp.example.io now.", "email", ["bob.smith+x@corp.example.io"]),
        ("Edit /etc/mnemos/app.toml, ./run.sh, ~/notes/a.md and config.yaml.", "path",
         ["/etc/mnemos/app.toml", "./run.sh", "~/notes/a.md", "config.yaml"]),
        ("Ship v1.2.3, 2.0.1-rc1, v2 and 1.0rc1.", "version",
         ["v1.2.3", "2.0.1-rc1", "v2", "1.0rc1"]),
        ("Commit 3f469b3 fixed it; deadbeef is a word.", "hash", ["3f469b3"]),
        ("id 123e4567-e89b-12d3-a456-426614174000.", "uuid",
         ["123e4567-e89b-12d3-a456-426614174000"]),
        ("Use get_user, userId, MiniLMOnnxEmbedder, MAX_TOKENS, os.path.join(), --no-deps.",
         "identifier",
         ["get_user", "userId", "MiniLMOnnxEmbedder", "MAX_TOKENS", "os.path.join()", "--no-deps"]),
    ],
)
def test_each_atom_kind(text: str, kind: str, expected: list[str]) -> None:
    assert only(text, kind) == expected


def test_offsets_are_exact_character_offsets_with_unicode() -> None:
    text = "Zoë paid €12 on 2026-01-02 — naïve café ☕ costs £3.50."
    for span in find_spans(text):
        assert text[span.start:span.end] == span.text
    assert only(text, "amount") == ["€12", "£3.50"]


def test_abbreviations_and_acronyms_are_not_identifiers() -> None:
    assert only("Use e.g. this, i.e. that, vs. API and HTTP.", "identifier") == []
    assert only("S3 and EC2 and IMAP4 are", "identifier") == ["S3", "EC2", "IMAP4"]


def test_url_keeps_balanced_parenthesis_and_drops_trailing_punctuation() -> None:
    assert only("(see https://en.wikipedia.org/wiki/Foo_(bar)).", "url") == [
        "https://en.wikipedia.org/wiki/Foo_(bar)"
    ]
    assert only("Go to https://x.io/a, then stop.", "url") == ["https://x.io/a"]


def test_negation_governs_its_clause_through_commas_until_a_contrast() -> None:
    text = ("In no event shall either party be liable for indirect, incidental or special "
            "damages. We will not ship on Friday, but we don't mind.")
    negations = only(text, "negation")
    assert negations == [
        "no event shall either party be liable for indirect, incidental or special damages",
        "not ship on Friday", "don't mind",
    ]


def test_negation_cues() -> None:
    text = "Never again. Without approval. Except Sundays. It isn't. No. 5 is a number. no-op."
    assert [s.text.split()[0] for s in find_spans(text) if s.kind == "negation"] == [
        "Never", "Without", "Except", "isn't"]


def test_key_value_lines_exclude_bullet_and_trailing_period() -> None:
    text = "- owner: Alice.\nbudget = 12000\nhttps://x.io: not kv\nThe reason is simple: we ship."
    assert only(text, "key_value") == ["owner: Alice", "budget = 12000"]


def test_atoms_inside_a_key_value_line_are_reported_too() -> None:
    text = "due: 2026-01-25"
    assert kinds(text) == [("key_value", "due: 2026-01-25"), ("date", "2026-01-25")]


def test_code_is_protected_whole_and_hides_its_contents() -> None:
    text = "Run:\n```python\nx = 5  # not 2026-01-01\n```\nand `get_user(42)` then 7."
    found = kinds(text)
    assert found == [
        ("code_block", "```python\nx = 5  # not 2026-01-01\n```"),
        ("inline_code", "`get_user(42)`"),
        ("number", "7"),
    ]


def test_unterminated_fence_runs_to_the_end() -> None:
    text = "Intro\n```\nx = 1\ny = 2"
    assert only(text, "code_block") == ["```\nx = 1\ny = 2"]


def test_overlaps_within_a_layer_longest_wins_then_kind_order() -> None:
    # "2026-03-01T10:00:00Z" is one date, not a date plus a time plus numbers.
    assert kinds("at 2026-03-01T10:00:00Z.") == [("date", "2026-03-01T10:00:00Z")]
    # A version beats a number of the same text by kind order only when equal; here it is longer.
    assert kinds("v1.2.3") == [("version", "v1.2.3")]
    atoms = [s for s in find_spans("Pay $5,000 on 2026-01-02 at 10:00 UTC for 3 days")
             if s.kind not in {"negation", "key_value"}]
    for a, b in itertools.pairwise(atoms):
        assert a.end <= b.start  # no overlap among atoms


def test_result_is_sorted_and_deterministic() -> None:
    text = "owner: Alice\nWe will not pay $500 after 2026-02-01 without `approve()` by bob@x.io."
    first = find_spans(text)
    assert first == find_spans(text)
    keys = [(s.start, -s.end, KIND_ORDER[s.kind]) for s in first]
    assert keys == sorted(keys)


@pytest.mark.parametrize("text", ["", " ", "\n\n", "\x00", "\ud800", "a" * 10])
def test_edge_inputs_give_no_spans(text: str) -> None:
    assert find_spans(text) == ()


def test_huge_input_is_linear_enough() -> None:
    text = "Revenue was $1,200 on 2026-01-02 and we did not ship v1.2.3. " * 5000  # ~310 KB
    spans = find_spans(text)
    assert len([s for s in spans if s.kind == "amount"]) == 5000
    assert all(text[s.start:s.end] == s.text for s in spans[:50])


def test_extreme_numbers() -> None:
    text = "Values 1e308, -0, 0x1F, 18446744073709551616 and 1,000,000,000,000."
    assert only(text, "number") == ["1e308", "-0", "0x1F", "18446744073709551616",
                                    "1,000,000,000,000"]


def test_span_is_hashable_value() -> None:
    assert Span("number", 0, 1, "1") == Span("number", 0, 1, "1")
    assert len({Span("number", 0, 1, "1"), Span("number", 0, 1, "1")}) == 1
