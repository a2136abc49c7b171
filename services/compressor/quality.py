"""Measurement of a candidate against its input, by the compressor, never by the engine.

Components (each carries its value in [0, 1] and the method that produced it):

- ``protected_recall`` (hard gate: must be 1): the share of protected spans that survived
  verbatim. For output whose claimed sources check out (every claimed output range equals the
  input range it names), a span survives when a verified range covers it: exact, per occurrence.
  For rewritten output, when its text occurs in the output at word boundaries.
- ``coverage``: the frequency-weighted share of the input's salient terms present in the output.
  Salient terms: the :data:`SALIENT_TOP` most frequent content words (ties by first occurrence),
  plus every capitalised word that does not open a sentence or line (names, entities).
- ``precision``: for verified extractive output, the share of claimed ranges that are verbatim
  input (1 by construction when the claims hold). For rewritten output, the share of output lines
  that are supported: no number, name or identifier absent from the input, and at least
  :data:`LINE_SUPPORT` of the line's content words found in the input. Any unsupported number,
  name or identifier fails the precision gate.
- ``structure``: the share of the input's structure classes (list-like lines, headings, code
  blocks) still present in the output.
- ``similarity``: cosine of input and output embeddings, clipped to [0, 1], from an injected
  ``embed`` callable; not measured when none is given.

Score: ``100 * sum(w_i * v_i) / sum(w_i)`` over the measured components, with the weights of
:data:`WEIGHTS`. The gates are separate from the score: a high score never excuses a lost span.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from libs.events.compression import DECIMALS, QualityComponent
from services.compressor.engines.base import Candidate
from services.compressor.spans import Span, find_spans, find_structure
from services.compressor.text import content_terms, segment, structure_classes

__all__ = [
    "LINE_SUPPORT",
    "SALIENT_TOP",
    "SCORE_FORMULA",
    "UNVERIFIED",
    "WEIGHTS",
    "Embed",
    "Measurement",
    "SpanResult",
    "measure",
]

Embed = Callable[[list[str]], npt.NDArray[np.float32]]
"""Texts to a (len(texts), dim) float32 array (e.g. ``MiniLMOnnxEmbedder.embed``)."""

WEIGHTS: Final = {
    "protected_recall": 0.35, "coverage": 0.25, "precision": 0.20, "structure": 0.05,
    "similarity": 0.15,
}
"""Weight of each component in the 0-100 score."""

SCORE_FORMULA: Final = (
    "100 * sum(w*v)/sum(w) over measured components; w: protected_recall 0.35, coverage 0.25, "
    "precision 0.20, structure 0.05, similarity 0.15"
)
"""The score formula, as written into every receipt."""

SALIENT_TOP: Final = 20
"""How many of the most frequent content words count as salient."""

LINE_SUPPORT: Final = 0.5
"""Share of a rewritten line's content words that must occur in the input."""

UNVERIFIED: Final = "<claimed verbatim sources that do not match the input>"
"""Listed as unsupported when an extractive candidate's claims fail verification."""

_CHECKED_KINDS: Final = frozenset({
    "number", "amount", "percentage", "duration", "date", "time", "version", "hash", "uuid",
    "identifier", "url", "email", "path",
})
_NAME: Final = re.compile(r"(?<=[\w,;)] )[A-Z][a-z]+\b")
"""A capitalised word inside a sentence (after a word and one space): a name or entity."""
_WORDS: Final = re.compile(r"\w+")


class SpanResult(msgspec.Struct, frozen=True):
    """A protected span of the input and whether it survived."""

    span: Span
    survived: bool


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """Everything measured about one candidate (feeds the receipt and the purpose rules)."""

    spans: tuple[SpanResult, ...]
    verified_extractive: bool
    unsupported: tuple[str, ...]
    lost_structure: tuple[str, ...]
    components: tuple[QualityComponent, ...]
    score: float
    absent: tuple[tuple[int, int, str], ...] = ()
    """For rewritten output: input units whose content the output does not hold (measured),
    as (start, end, why); what a rewrite removed, whatever the engine says."""

    def value(self, name: str) -> float | None:
        """The value of component ``name`` (None when not measured)."""
        return next((c.value for c in self.components if c.name == name), None)

    @property
    def lost(self) -> tuple[Span, ...]:
        """The protected spans that did not survive, in input order."""
        return tuple(r.span for r in self.spans if not r.survived)

    @property
    def gates_passed(self) -> bool:
        """Protected-span recall is 1 and no number, name or identifier was invented."""
        return not self.lost and not self.unsupported


def _verified_ranges(text: str, candidate: Candidate) -> list[tuple[int, int]] | None:
    """Input ranges of a candidate whose every claimed range is verbatim input, else None.

    The claims must also cover the whole output but for the whitespace between ranges.
    """
    out = candidate.text
    covered, ranges, cursor = 0, [], 0
    for source in sorted(candidate.sources, key=lambda s: s.out_start):
        if len(source.sources) != 1 or source.out_start < cursor:
            return None
        start, end = source.sources[0]
        if not (0 <= start <= end <= len(text)) or source.out_end > len(out):
            return None
        if out[source.out_start:source.out_end] != text[start:end]:
            return None
        if out[cursor:source.out_start].strip():
            return None
        covered += source.out_end - source.out_start
        cursor = source.out_end
        ranges.append((start, end))
    if out[cursor:].strip() or (out and not covered):
        return None
    return ranges


def _occurs(needle: str, haystack: str) -> bool:
    """``needle`` occurs in ``haystack`` not glued to a word character on either side."""
    if not needle:
        return True
    check_left, check_right = _is_word(needle[0]), _is_word(needle[-1])
    at = haystack.find(needle)
    while at >= 0:
        end = at + len(needle)
        left_ok = not check_left or at == 0 or not _is_word(haystack[at - 1])
        right_ok = not check_right or end == len(haystack) or not _is_word(haystack[end])
        if left_ok and right_ok:
            return True
        at = haystack.find(needle, at + 1)
    return False


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _span_results(spans: Sequence[Span], output: str,
                  ranges: list[tuple[int, int]] | None) -> tuple[SpanResult, ...]:
    if ranges is not None:
        return tuple(SpanResult(s, any(a <= s.start and s.end <= b for a, b in ranges))
                     for s in spans)
    return tuple(SpanResult(s, _occurs(s.text, output)) for s in spans)


def _salient(text: str) -> Counter[str]:
    terms = content_terms(text)
    counts = Counter(terms)
    first = {t: i for i, t in reversed(list(enumerate(terms)))}
    top = sorted(counts, key=lambda t: (-counts[t], first[t]))[:SALIENT_TOP]
    names = {m.group(0).lower() for m in _NAME.finditer(text)}
    names = {n[:-1] if len(n) > 4 and n.endswith("s") and not n.endswith("ss") else n
             for n in names}
    return Counter({t: counts[t] for t in set(top) | (names & set(counts))})


def _coverage(text: str, output: str) -> QualityComponent:
    salient = _salient(text)
    method = (f"frequency-weighted share of the input's salient terms in the output (top "
              f"{SALIENT_TOP} content words + capitalised non-initial words, lowercased, "
              "plural folded)")
    if not salient:
        return QualityComponent(name="coverage", value=1.0, method=method + "; no salient term")
    present = set(content_terms(output))
    kept = sum(c for t, c in salient.items() if t in present)
    return QualityComponent(name="coverage", value=_r(kept / sum(salient.values())),
                            method=method)


def _normal_number(value: str) -> str:
    return value.replace(",", "").replace(" ", "")


def _unsupported(text: str, output: str) -> list[str]:
    """Numbers, names and identifiers of ``output`` that the input does not contain."""
    missing: list[str] = []
    flat_input = _normal_number(text)
    input_words = {w.lower() for w in _WORDS.findall(text)}
    for span in find_spans(output):
        if span.kind not in _CHECKED_KINDS:
            continue
        if span.text in text or _normal_number(span.text) in flat_input:
            continue
        missing.append(span.text)
    for match in _NAME.finditer(output):
        if match.group(0).lower() not in input_words:
            missing.append(match.group(0))
    return sorted(set(missing), key=missing.index)


def _rewrite_precision(text: str, output: str,
                       unsupported: Sequence[str]) -> QualityComponent:
    input_terms = set(content_terms(text))
    lines = [line for line in output.split("\n") if line.strip()]
    supported = 0
    for line in lines:
        terms = content_terms(line)
        share = sum(t in input_terms for t in terms) / len(terms) if terms else 1.0
        if share >= LINE_SUPPORT and not any(u in line for u in unsupported):
            supported += 1
    return QualityComponent(
        name="precision", value=_r(supported / len(lines)) if lines else 0.0,
        method=("share of output lines supported by the input (no number, name or identifier "
                f"absent from the input; >= {LINE_SUPPORT:g} of content words in the input)"),
    )


def _structure(text: str, in_spans: Sequence[Span], output: str) -> tuple[QualityComponent,
                                                                          tuple[str, ...]]:
    have = structure_classes(text, in_spans)
    method = "share of the input's structure classes (list-like lines, headings, code) in output"
    if not have:
        return QualityComponent(name="structure", value=1.0,
                                method=method + "; no structure in input"), ()
    kept = structure_classes(output, find_structure(output))
    lost = tuple(sorted(have - kept))
    return QualityComponent(name="structure", value=_r(len(have & kept) / len(have)),
                            method=method), lost


def _absent_units(text: str, spans: Sequence[Span],
                  output: str) -> tuple[tuple[int, int, str], ...]:
    """Units of ``text`` with under :data:`LINE_SUPPORT` of their content words in ``output``."""
    present = set(content_terms(output))
    absent: list[tuple[int, int, str]] = []
    for unit in segment(text, spans):
        terms = set(content_terms(text[unit.start:unit.end]))
        if not terms:
            continue
        found = len(terms & present)
        if found / len(terms) < LINE_SUPPORT:
            absent.append((unit.start, unit.end,
                           f"not in the output (measured: {found} of {len(terms)} content "
                           "words present)"))
    return tuple(absent)


def _similarity(text: str, output: str, embed: Embed | None,
                embed_name: str) -> QualityComponent:
    if embed is None:
        return QualityComponent(name="similarity", value=None,
                                method="not measured: no embedder configured")
    vectors = np.asarray(embed([text, output]), dtype=np.float32)
    a, b = vectors[0], vectors[1]
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    value = float(np.dot(a, b)) / norm if norm else 0.0
    return QualityComponent(name="similarity", value=_r(min(1.0, max(0.0, value))),
                            method=f"cosine of {embed_name} embeddings of input and output")


def _r(value: float) -> float:
    return round(value, DECIMALS)


def _score(components: Sequence[QualityComponent]) -> float:
    measured = [(WEIGHTS[c.name], c.value) for c in components if c.value is not None]
    total = sum(w for w, _ in measured)
    return round(100.0 * sum(w * v for w, v in measured) / total, 2) if total else 0.0


def measure(text: str, spans: Sequence[Span], candidate: Candidate, *,
            embed: Embed | None = None, embed_name: str = "embedder") -> Measurement:
    """Measure ``candidate`` against ``text`` (whose protected spans are ``spans``)."""
    output = candidate.text
    ranges = _verified_ranges(text, candidate) if candidate.kind != "rewrite" else None
    results = _span_results(spans, output, ranges)
    survived = sum(r.survived for r in results)
    recall_method = ("positional: a verified verbatim output range covers the span"
                     if ranges is not None else
                     "verbatim search: the span's text occurs in the output at word boundaries")
    recall = QualityComponent(
        name="protected_recall", value=_r(survived / len(results)) if results else 1.0,
        method=recall_method + ("" if results else "; no protected span in input"),
    )
    if ranges is not None:
        unsupported: list[str] = []
        precision = QualityComponent(
            name="precision", value=1.0,
            method="verbatim subset: every output range equals the input range it claims")
    else:
        unsupported = _unsupported(text, output)
        if candidate.kind != "rewrite":
            unsupported.insert(0, UNVERIFIED)
        precision = _rewrite_precision(text, output, unsupported)
    structure, lost_structure = _structure(text, spans, output)
    components = (recall, _coverage(text, output), precision, structure,
                  _similarity(text, output, embed, embed_name))
    return Measurement(
        spans=results, verified_extractive=ranges is not None, unsupported=tuple(unsupported),
        lost_structure=lost_structure, components=components, score=_score(components),
        absent=() if ranges is not None else _absent_units(text, spans, output),
    )
