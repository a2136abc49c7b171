"""Facts engine: rewrite structured text into compact ``key: value`` lines.

Each line is built only from pieces of the input (a key and a value, both input ranges, joined by
``": "``), plus at most one label word for a pattern (``decision``, ``action``, ``event``,
``note``), so every line is traceable to its source offsets, recorded in the candidate.

Patterns, tried in this order on each unit of the input:

- a ``key: value`` / ``key = value`` line or list item -> the same line, without bullet or
  final period;
- a unit opening with a date or time (a log or timeline entry) -> ``<date/time>: <rest>``;
- a decision (``decided``, ``agreed``, ``approved``, ``chose``, ``resolved``) -> ``decision: ...``
  from the cue on;
- a person and an action (``Alice will ...``, ``Bob to ...``, ``owner Carol``) ->
  ``action (Alice): ...``;
- a setting (``the timeout is 30 s``, ``X was set to Y``) -> ``X: Y``;
- any other unit holding a protected span -> ``note: <unit>`` (kept whole, no fact is lost);
- other units are dropped, and named in ``removed``.

Fewer than :data:`MIN_FACTS` lines from the patterns above the last means the text is not
structured: the engine declines (no output) rather than produce a note dump.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from services.compressor.engines.base import (
    Candidate,
    CompressionRequest,
    NoOutput,
    Note,
    Source,
)
from services.compressor.spans import Span
from services.compressor.text import Unit, segment
from services.compressor.tokenizer import TokenCounter

__all__ = ["MIN_FACTS", "FactsEngine"]

MIN_FACTS: Final = 2
"""Structured lines (not ``note:``) needed before the engine offers a candidate."""

_KV: Final = re.compile(
    r"[ \t]*(?:[-*+•][ \t]+)?(?P<key>[^:=\n]{1,60}?)[ \t]*[:=][ \t]+(?P<value>\S.*)$"
)
_LEAD: Final = re.compile(r"(?:[-*+•]|\d{1,3}[.)])[ \t]+")
_DECISION: Final = re.compile(
    r"\b(?:decided|agreed|approved|chose|resolved|concluded|will go with)\b"
    r"(?:\s+(?:to|on|that))?\s+",
    re.IGNORECASE,
)
_ACTION: Final = re.compile(
    r"^(?P<who>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\s+(?:will|to|must|should|owns|needs to|is going to)"
    r"\s+(?P<what>.+)$"
)
_SETTING: Final = re.compile(
    r"^(?:the|our|a|an)?\s*(?P<key>[A-Za-z][\w-]*(?:\s[\w-]+){0,3}?)\s+"
    r"(?:is|are|was|were|equals|has been set to|was set to|is set to|set to|defaults to|remains)"
    r"\s+(?P<value>.+)$",
    re.IGNORECASE,
)
_TIME_KINDS: Final = frozenset({"date", "time"})
_TRAIL: Final = " \t.;,"
_DASHES: Final = frozenset({"-", "\u2013", "\u2014", ":"})


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in " \t":
        start += 1
    while end > start and text[end - 1] in _TRAIL:
        end -= 1
    return start, end


class _Line:
    """A line under construction: its parts are (literal) or (input start, input end)."""

    def __init__(self, label: str | None, key: tuple[int, int] | None,
                 value: tuple[int, int], *, verbatim: bool = False) -> None:
        self.label, self.key, self.value, self.verbatim = label, key, value, verbatim

    def render(self, text: str) -> str:
        if self.verbatim and self.key:  # already a key-value line: its separator is kept
            return text[self.key[0]:self.value[1]]
        key = text[self.key[0]:self.key[1]] if self.key else None
        head = f"{self.label} ({key})" if self.label and key else (self.label or key or "")
        return f"{head}: {text[self.value[0]:self.value[1]]}"

    def sources(self) -> tuple[tuple[int, int], ...]:
        if self.verbatim and self.key:
            return ((self.key[0], self.value[1]),)
        return ((self.key, self.value) if self.key else (self.value,))


def _kv(text: str, unit: Unit) -> _Line | None:
    if unit.kind not in {"key_value", "list_item"}:
        return None
    match = _KV.match(text, unit.start, unit.end)
    if match is None or "\n" in match.group("key"):
        return None
    key = _trim(text, *match.span("key"))
    # A key-value line is already compact: it is copied whole (bullet and final period aside),
    # so the line, its separator and any code in it survive verbatim.
    return _Line(None, key, _trim(text, match.start("value"), unit.end), verbatim=True)


def _body(text: str, unit: Unit) -> tuple[int, int]:
    """The unit without a list bullet or trailing punctuation."""
    lead = _LEAD.match(text, unit.start, unit.end)
    return _trim(text, lead.end() if lead else unit.start, unit.end)


def _timed(text: str, unit: Unit, spans: Sequence[Span]) -> _Line | None:
    start, end = _body(text, unit)
    first = next((s for s in spans if s.start >= start and s.kind in _TIME_KINDS), None)
    if first is None or first.start != start:
        return None
    last = first
    for span in spans:  # a date followed by a time: both make the key
        between = text[last.end:span.start] if span.start > last.end else "x"
        if span.kind in _TIME_KINDS and not between.strip(" ,T"):
            last = span
    rest = _trim(text, last.end, end)
    rest = (rest[0] + (1 if text[rest[0]:rest[0] + 1] in _DASHES else 0), rest[1])
    rest = _trim(text, *rest)
    if rest[1] <= rest[0]:
        return None
    return _Line(None, (first.start, last.end), rest)


def _pattern(text: str, unit: Unit) -> _Line | None:
    start, end = _body(text, unit)
    decision = _DECISION.search(text, start, end)
    if decision:
        value = _trim(text, decision.end(), end)
        return _Line("decision", None, value) if value[1] > value[0] else None
    body = text[start:end]
    action = _ACTION.match(body)
    if action:
        return _Line("action", (start + action.start("who"), start + action.end("who")),
                     (start + action.start("what"), end))
    setting = _SETTING.match(body)
    if setting and len(body) <= 160:
        return _Line(None, (start + setting.start("key"), start + setting.end("key")),
                     (start + setting.start("value"), end))
    return None


def _holds_span(unit: Unit, spans: Sequence[Span]) -> bool:
    return any(s.start < unit.end and s.end > unit.start for s in spans)


class FactsEngine:
    """Deterministic rewrite of structured text into ``key: value`` lines with sources."""

    name: Final = "facts"
    version: Final = "1"

    def compress(self, request: CompressionRequest, tokens: TokenCounter) -> Candidate:
        """``key: value`` lines for the facts of ``request.text`` (see module), or NoOutput."""
        del tokens  # the rewrite is decided by structure, not by a budget
        text, spans = request.text, request.spans
        lines: list[str] = []
        sources: list[Source] = []
        removed: list[Note] = []
        preserved: list[Note] = []
        structured = 0
        cursor = 0
        for unit in segment(text, spans):
            line = (_kv(text, unit) or _timed(text, unit, spans) or
                    (_pattern(text, unit) if unit.kind in {"sentence", "list_item"} else None))
            if line is not None:
                structured += 1
            elif unit.kind == "code" or _holds_span(unit, spans):
                line = _Line("note", None, _body(text, unit) if unit.kind != "code"
                             else (unit.start, unit.end))
                preserved.append(Note(unit.start, unit.end, "holds protected spans: a note"))
            else:
                removed.append(Note(unit.start, unit.end, "no fact pattern, no protected span"))
                continue
            rendered = line.render(text)
            if rendered in lines:
                removed.append(Note(unit.start, unit.end, "duplicate of an earlier fact line"))
                continue
            if lines:
                cursor += 1
            lines.append(rendered)
            sources.append(Source(cursor, cursor + len(rendered), line.sources()))
            cursor += len(rendered)
        if structured < MIN_FACTS:
            raise NoOutput(f"only {structured} structured fact(s); not structured text")
        return Candidate(
            engine=self.name, engine_version=self.version, kind="rewrite", text="\n".join(lines),
            sources=tuple(sources), removed=tuple(removed), preserved=tuple(preserved),
            notes=(f"{structured} structured line(s), {len(lines) - structured} note(s)",),
        )
