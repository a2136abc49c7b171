"""Text primitives shared by engines and measurement: validation, units by offset, terms.

A *unit* is the smallest piece an extractive engine keeps or drops: a sentence of a paragraph, a
heading, a list item (with its wrapped continuation lines), a ``key: value`` line, a table row or
a whole fenced code block. Hard-wrapped paragraphs (docstrings, emails) are joined before they are
cut into sentences; a sentence never ends inside a protected span (``3.14``, ``e.g.``,
``v1.2.3`` and URLs keep their dots).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import msgspec

from libs.events.errors import InvalidInput
from services.compressor.spans import Span

__all__ = [
    "STOPWORDS",
    "STRUCTURE_CLASSES",
    "Piece",
    "Unit",
    "clauses",
    "content_terms",
    "cosine",
    "dot",
    "fine_clauses",
    "join_units",
    "normalized",
    "segment",
    "structure_classes",
    "term_vector",
    "trim_tail",
    "validate_text",
]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_HEADING: Final = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+\S|[A-Z][^\n]{0,80}\n[ \t]*(?:=+|-+)[ \t]*$)")
_UNDERLINE: Final = re.compile(r"^[ \t]*(?:={3,}|-{3,})[ \t]*$")
_LIST_ITEM: Final = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)]|[a-z][.)])[ \t]+\S")
_TABLE_ROW: Final = re.compile(r"^[ \t]*\|")
_SENTENCE_END: Final = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[`*_]*[A-Z0-9])")
_ABBREVIATIONS: Final = frozenset({
    "e.g", "i.e", "mr", "mrs", "dr", "prof", "vs", "etc", "fig", "no", "cf", "al", "approx",
    "inc", "ltd", "co", "jr", "sr", "st", "dept", "est", "vol", "pp", "ch", "sec", "u.s",
})
_WORD: Final = re.compile(r"[A-Za-z][A-Za-z0-9_']*[A-Za-z0-9]|\d[\d.,]*\d|\d|[A-Za-z]")

_STOPWORD_TEXT: Final = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    either else etc even ever every few for from further get gets got had has have having he
    her here hers herself him himself his how however i if in into is it its itself just let
    like may me might more most much must my myself no nor not now of off often on once one
    only or other our ours ourselves out over own per quite rather same shall she should
    since so some such than that the their theirs them themselves then there these they this
    those though through thus to too under until up upon us use used uses using very via was
    we well were what when where whether which while who whom whose why will with within
    without would yet you your yours yourself yourselves
"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())
"""Function words that carry no content of their own (not salient, not scored)."""


class Unit(msgspec.Struct, frozen=True):
    """A piece of the input by offset; ``kind`` is sentence, heading, list_item, key_value,
    table_row or code."""

    start: int
    end: int
    kind: str


def validate_text(text: str, field: str = "text") -> str:
    """Return ``text`` if Postgres can store it (no U+0000, no lone surrogate), else raise."""
    if "\x00" in text:
        raise InvalidInput(f"{field} contains U+0000", field=field)
    if _SURROGATE.search(text):
        raise InvalidInput(f"{field} contains a lone surrogate", field=field)
    return text


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, without its newline."""
    out: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the ``.`` at ``dot`` ends an abbreviation such as ``e.g.`` or ``Dr.``."""
    begin = dot
    while begin > 0 and (text[begin - 1].isalpha() or text[begin - 1] == "."):
        begin -= 1
    word = text[begin:dot].lower()
    # A single capital is an initial (J. Smith); a single small letter is a unit (30 s.).
    return word in _ABBREVIATIONS or (len(word) == 1 and text[dot - 1].isupper())


def _sentences(text: str, start: int, end: int, atoms: Sequence[Span]) -> list[Unit]:
    """Cut a paragraph into sentences, never inside a protected span or after an abbreviation."""
    units: list[Unit] = []
    cursor = start
    for match in _SENTENCE_END.finditer(text, start, end):
        stop = match.end()
        if text[match.start()] == "." and _is_abbreviation(text, match.start()):
            continue
        if any(a.start < stop < a.end or a.start <= match.start() < a.end - 1 for a in atoms):
            continue
        s, e = _strip(text, cursor, stop)
        if e > s:
            units.append(Unit(s, e, "sentence"))
        cursor = stop
    s, e = _strip(text, cursor, end)
    if e > s:
        units.append(Unit(s, e, "sentence"))
    return units


def _line_kind(text: str, lines: Sequence[tuple[int, int]], index: int,
               key_value_starts: set[int]) -> str:
    start, end = lines[index]
    line = text[start:end]
    if not line.strip():
        return "blank"
    if _UNDERLINE.match(line):
        return "underline"
    if _HEADING.match(line) or (
        index + 1 < len(lines) and _UNDERLINE.match(text[slice(*lines[index + 1])])
        and len(line.strip()) <= 80
    ):
        return "heading"
    if _TABLE_ROW.match(line):
        return "table_row"
    if start in key_value_starts:
        return "key_value"
    if _LIST_ITEM.match(line):
        return "list_item"
    return "text"


def segment(text: str, spans: Sequence[Span]) -> tuple[Unit, ...]:
    """The units of ``text`` in order (see the module docstring); ``spans`` from find_spans."""
    blocks = [s for s in spans if s.kind == "code_block"]
    atoms = [s for s in spans if s.kind not in {"code_block", "key_value", "negation"}]
    kv_starts = {_strip(text, s.start, s.end)[0] for s in spans if s.kind == "key_value"}
    kv_line_starts = {text.rfind("\n", 0, s) + 1 for s in kv_starts}
    units: list[Unit] = []
    paragraph: list[int] = []  # [start, end] of the open paragraph or list item
    open_kind = ""

    def close() -> None:
        nonlocal paragraph, open_kind
        if paragraph:
            if open_kind == "text":
                units.extend(_sentences(text, paragraph[0], paragraph[1], atoms))
            else:
                s, e = _strip(text, paragraph[0], paragraph[1])
                units.append(Unit(s, e, open_kind))
        paragraph, open_kind = [], ""

    lines = _lines(text)
    emitted: set[int] = set()
    for index, (start, end) in enumerate(lines):
        block = next((b for b in blocks if b.start <= end and start < b.end), None)
        if block is not None:
            if block.start not in emitted:
                close()
                units.append(Unit(block.start, block.end, "code"))
                emitted.add(block.start)
            continue
        kind = _line_kind(text, lines, index, kv_line_starts)
        indented = start < end and text[start] in " \t"
        if kind == "text" and open_kind in {"text", "list_item"} and (
            open_kind == "text" or indented
        ):
            paragraph[1] = end  # a wrapped line continues the open paragraph or item
            continue
        close()
        if kind in {"blank", "underline"}:
            continue
        if kind in {"text", "list_item"}:
            paragraph, open_kind = [start, end], kind
            continue
        s, e = _strip(text, start, end)
        units.append(Unit(s, e, kind))
    close()
    return tuple(units)


STRUCTURE_CLASSES: Final = {"list_item": "list", "key_value": "list", "table_row": "list",
                             "heading": "heading", "code": "code"}
"""Line kinds that make up structure, grouped into the classes measurement compares."""


def structure_classes(text: str, spans: Sequence[Span]) -> frozenset[str]:
    """The structure classes (list, heading, code) present in ``text``, line by line.

    ``spans`` needs only the code and ``key_value`` spans (``spans.find_structure``).
    """
    found: set[str] = set()
    if any(s.kind == "code_block" for s in spans):
        found.add("code")
    kv_line_starts = {text.rfind("\n", 0, s.start) + 1 for s in spans if s.kind == "key_value"}
    blocks = [s for s in spans if s.kind == "code_block"]
    lines = _lines(text)
    for index, (start, end) in enumerate(lines):
        if any(b.start <= end and start < b.end for b in blocks):
            continue
        kind = _line_kind(text, lines, index, kv_line_starts)
        if kind in STRUCTURE_CLASSES:
            found.add(STRUCTURE_CLASSES[kind])
    return frozenset(found)


def join_units(text: str, units: Sequence[Unit | Piece]) -> tuple[str, list[tuple[int, int]]]:
    """Concatenate kept units in order; returns the output and each unit's (start, end) in it.

    Units that were on different lines of the input stay on different lines; units of one
    paragraph are joined by a space.
    """
    parts: list[str] = []
    placed: list[tuple[int, int]] = []
    cursor = 0
    previous: Unit | Piece | None = None
    for unit in units:
        if previous is not None:
            gap = text[previous.end:unit.start]
            sep = "\n\n" if gap.count("\n") >= 2 else "\n" if "\n" in gap else " "
            parts.append(sep)
            cursor += len(sep)
        piece = text[unit.start:unit.end]
        parts.append(piece)
        placed.append((cursor, cursor + len(piece)))
        cursor += len(piece)
        previous = unit
    return "".join(parts), placed


class Piece(msgspec.Struct, frozen=True):
    """A clause of a unit (or the whole unit): ``unit`` is the index of its unit."""

    start: int
    end: int
    unit: int


_CLAUSE_SPLIT: Final = re.compile(
    r"[,;]\s+|\s+[\u2013\u2014-]{1,2}\s+"
    r"|\s+(?=(?:which|because|so that|while|whereas|although|though|where|unless|including"
    r"|and|or|with|for|if|when|that|by|to|from|after|before|until)\s)"
)
_MIN_CLAUSE_WORDS: Final = 3
_CLAUSE_KINDS: Final = frozenset({"sentence", "list_item"})
_TRIM_TAIL: Final = " \t\n,;:\u2013\u2014-"


def clauses(text: str, units: Sequence[Unit], spans: Sequence[Span]) -> list[Piece]:
    """Cut sentences and list items into clauses (other units stay whole).

    A cut never falls inside a protected span; clauses under three words join the previous
    one, so no piece is a stray fragment like ``Thanks,``.
    """
    pieces: list[Piece] = []
    for index, unit in enumerate(units):
        if unit.kind not in _CLAUSE_KINDS:
            pieces.append(Piece(unit.start, unit.end, index))
            continue
        cuts = [unit.start]
        for match in _CLAUSE_SPLIT.finditer(text, unit.start, unit.end):
            cut = match.end() if match.group(0)[:1] in ",;" else match.start()
            if any(s.start < cut < s.end or s.start < match.start() < s.end for s in spans):
                continue
            if len(text[cuts[-1]:cut].split()) >= _MIN_CLAUSE_WORDS:
                cuts.append(cut)
        if len(cuts) > 1 and len(text[cuts[-1]:unit.end].split()) < _MIN_CLAUSE_WORDS:
            cuts.pop()
        for start, end in zip(cuts, [*cuts[1:], unit.end], strict=True):
            s, e = _strip(text, start, end)
            if e > s:
                pieces.append(Piece(s, e, index))
    return pieces


_FINE_SPLIT: Final = re.compile(
    r"\s+(?=\()|(?<=\))\s+|[:,;]\s+"
    r"|\s+(?=(?:and|or|with|for|to|from|by|that|which|when|if|after|before|in|on|at|as|into|onto|over|via|using|than|but|then|also|so|not|is|are|was"
    r"|were|has|have|had|can|will|would|should|must|may|returns?|gives?|takes?)\s)"
)
_MIN_FINE_WORDS: Final = 2
_FINE_KINDS: Final = frozenset({"code_block", "key_value"})


def fine_clauses(text: str, piece: Piece, spans: Sequence[Span]) -> list[Piece]:
    """Cut a clause holding protected spans further: at commas, conjunctions, prepositions (not
    ``of``, which binds its noun), auxiliary verbs, ``:`` and parentheses.

    Used for the clauses an engine must keep because of a span: the parts holding a span stay,
    the others may go. A cut never falls inside a protected span (a negation stays whole);
    code and ``key: value`` lines are never cut; a part of one word joins the
    previous one. Returns ``[piece]`` when there is nothing to cut.
    """
    inside = [s for s in spans if s.start < piece.end and s.end > piece.start]
    if not inside or any(s.kind in _FINE_KINDS for s in inside):
        return [piece]
    cuts = [piece.start]
    for match in _FINE_SPLIT.finditer(text, piece.start, piece.end):
        cut = match.end() if match.group(0)[:1] in ":,;" else match.start()
        if any(s.start < cut < s.end or s.start < match.start() < s.end for s in inside):
            continue
        if len(text[cuts[-1]:cut].split()) >= _MIN_FINE_WORDS:
            cuts.append(cut)
    if len(cuts) > 1 and len(text[cuts[-1]:piece.end].split()) < _MIN_FINE_WORDS:
        cuts.pop()
    out: list[Piece] = []
    for start, end in zip(cuts, [*cuts[1:], piece.end], strict=True):
        s, e = _strip(text, start, end)
        if e > s:
            out.append(Piece(s, e, piece.unit))
    return out or [piece]


def trim_tail(text: str, start: int, end: int) -> int:
    """End of ``text[start:end]`` without a trailing clause separator (``,`` ``;`` dash)."""
    while end > start and text[end - 1] in _TRIM_TAIL:
        end -= 1
    return end


@functools.lru_cache(maxsize=4096)
def content_terms(text: str) -> tuple[str, ...]:
    """Lowercased content words and numbers of ``text`` in order (stopwords and 1-2 letter
    words dropped; a plural ``s`` and a possessive ``'s`` folded). Cached: measurement asks for
    the terms of the same input once per candidate."""
    out: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower.endswith("'s"):
            lower = lower[:-2]
        lower = lower.strip("'")
        if lower in STOPWORDS or (len(lower) < 3 and not lower[:1].isdigit()):
            continue
        if len(lower) > 4 and lower.endswith("s") and not lower.endswith("ss"):
            lower = lower[:-1]
        out.append(lower)
    return tuple(out)


def term_vector(terms: Iterable[str], idf: Mapping[str, float]) -> dict[str, float]:
    """TF-IDF weights of ``terms`` (unknown terms get the largest idf)."""
    default = max(idf.values(), default=1.0)
    return {term: count * idf.get(term, default) for term, count in Counter(terms).items()}


def normalized(vector: Mapping[str, float]) -> dict[str, float]:
    """``vector`` scaled to unit length (empty stays empty): cosine becomes :func:`dot`."""
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {term: w / norm for term, w in vector.items()} if norm else {}


def dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Dot product of two sparse vectors."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(weight * large.get(term, 0.0) for term, weight in small.items())


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine similarity of two sparse vectors (0 when either is empty)."""
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    dot = sum(weight * large.get(term, 0.0) for term, weight in small.items())
    norm = math.sqrt(sum(w * w for w in a.values())) * math.sqrt(sum(w * w for w in b.values()))
    return dot / norm if norm else 0.0
