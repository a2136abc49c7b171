"""Extractive engine: keep whole units of the input, verbatim, in their order.

1. Cut the input into units by offset (``text.segment``), and sentences and list items into
   clauses (``text.clauses``); a clause holding a protected span is cut further
   (``text.fine_clauses``, never inside a span): the pieces that are kept or dropped.
2. Pieces holding a protected span are kept first (so a figure, a date or a negation is never
   dropped to save room), with fenced code, ``key: value`` lines and, given a query, the pieces
   relevant to it. The other parts of a span-holding clause compete for the budget like any
   other piece.
3. The remaining budget (``target_ratio`` of the input's tokens, minus what step 2 kept and the
   headings of its sections; a piece opening a new section costs its heading too) is
   filled by maximal marginal relevance: each round takes the piece with the best
   ``LAMBDA * salience - (1 - LAMBDA) * similarity to what is kept``, where salience is the
   TF-IDF cosine of the piece to the whole text (pieces as documents), plus the cosine to the query
   when there is one, plus a small lead bonus for the first piece. Pieces too similar to a kept
   one are dropped as redundant. A kept clause followed by a dropped one loses its trailing
   comma; what remains is still a verbatim range of the input.
4. A heading is kept when anything of its section is.

Inputs under :data:`MIN_TOKENS` tokens, or of a single unit, pass through unchanged (ratio 1) and
say so. Everything is deterministic: ties break on the earlier unit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Final

import msgspec

from services.compressor.engines.base import Candidate, CompressionRequest, Note, Source
from services.compressor.spans import Span
from services.compressor.text import (
    Piece,
    Unit,
    clauses,
    content_terms,
    dot,
    fine_clauses,
    join_units,
    normalized,
    segment,
    term_vector,
    trim_tail,
)
from services.compressor.tokenizer import TokenCounter

__all__ = ["LAMBDA", "MIN_TOKENS", "REDUNDANT", "ExtractiveEngine"]

MIN_TOKENS: Final = 48
"""Below this many tokens a compression cannot gain enough to be worth a receipt."""

LAMBDA: Final = 0.7
"""MMR trade-off between salience (1.0) and novelty (0.0)."""

REDUNDANT: Final = 0.8
"""A unit whose TF-IDF cosine to a kept unit reaches this is dropped as redundant."""

LEAD_BONUS: Final = 0.05
"""Salience added to the first unit: openings tend to state the subject."""

QUERY_WEIGHT: Final = 1.0
"""Weight of the query cosine in salience, when a query is given."""

QUERY_KEEP: Final = 0.2
"""A piece whose TF-IDF cosine to the query reaches this is kept on purpose, like a piece
holding a protected span: query-aware pruning must not drop what the task asks about."""

_ALWAYS_KEEP: Final = frozenset({"code", "key_value"})


class _Scored(msgspec.Struct):
    piece: Piece
    kind: str
    tokens: int
    vector: dict[str, float]
    salience: float
    protected: tuple[str, ...]
    relevance: float


def _protected_kinds(piece: Piece, spans: Sequence[Span]) -> tuple[str, ...]:
    kinds = {s.kind for s in spans if s.start < piece.end and s.end > piece.start}
    return tuple(sorted(kinds))


def _score(request: CompressionRequest, units: Sequence[Unit], pieces: Sequence[Piece],
           tokens: TokenCounter) -> list[_Scored]:
    text = request.text
    terms = [content_terms(text[p.start:p.end]) for p in pieces]
    df = Counter(term for piece_terms in terms for term in set(piece_terms))
    idf = {term: math.log(1.0 + len(pieces) / count) for term, count in df.items()}
    vectors = [normalized(term_vector(piece_terms, idf)) for piece_terms in terms]
    centroid = normalized(term_vector((t for piece_terms in terms for t in piece_terms), idf))
    query = normalized(term_vector(content_terms(request.query), idf)) if request.query else {}
    scored: list[_Scored] = []
    for index, (piece, vector) in enumerate(zip(pieces, vectors, strict=True)):
        relevance = dot(vector, query) if query else 0.0
        salience = (dot(vector, centroid) + (LEAD_BONUS if index == 0 else 0.0)
                    + QUERY_WEIGHT * relevance)
        scored.append(_Scored(piece, units[piece.unit].kind,
                              tokens.count(text[piece.start:piece.end]), vector, salience,
                              _protected_kinds(piece, request.spans), relevance))
    return scored


def _mandatory(scored: Sequence[_Scored]) -> dict[int, str]:
    """Index -> reason for pieces kept on purpose, whatever the budget."""
    keep: dict[int, str] = {}
    for index, item in enumerate(scored):
        if item.protected:
            keep[index] = "holds protected spans: " + ", ".join(item.protected)
        elif item.kind in _ALWAYS_KEEP:
            keep[index] = f"{item.kind.replace('_', ' ')} kept whole"
        elif item.relevance >= QUERY_KEEP:
            keep[index] = f"relevant to the query (cosine {item.relevance:.2f})"
    return keep


def _section_heads(scored: Sequence[_Scored]) -> list[int]:
    """For each piece, the index of the heading of its section (-1 when there is none)."""
    heads: list[int] = []
    current = -1
    for index, item in enumerate(scored):
        if item.kind == "heading":
            current = index
        heads.append(current)
    return heads


def _fill(scored: Sequence[_Scored], kept: dict[int, str], budget: int) -> dict[int, str]:
    """Add pieces by MMR until nothing fits; returns index -> reason for pieces dropped.

    A piece costs its tokens plus those of its section's heading when no piece of that section
    is kept yet (the heading is kept with it, see :func:`_headings`), so headings do not push
    the output over the budget. The similarity of each open piece to the kept set is updated
    as pieces are added, so a round costs one pass over the open pieces.
    """
    head_of = _section_heads(scored)
    charged = {head_of[i] for i in kept if head_of[i] >= 0 and scored[i].kind != "heading"}
    used = sum(scored[i].tokens for i in kept) + sum(scored[h].tokens for h in charged)

    def cost(i: int) -> int:
        head = head_of[i]
        return scored[i].tokens + (scored[head].tokens if head >= 0 and head not in charged
                                   else 0)

    dropped: dict[int, str] = {}
    open_ = [i for i in range(len(scored)) if i not in kept and scored[i].kind != "heading"]
    # Only pieces that fit what is left can be added; the others need no similarity at all.
    fits = [i for i in open_ if used + cost(i) <= budget]
    nearest = {i: max((dot(scored[i].vector, scored[k].vector) for k in kept), default=0.0)
               for i in fits}
    open_ = fits if fits else []
    unfit = [i for i in range(len(scored))
             if i not in kept and i not in nearest and scored[i].kind != "heading"]
    while open_:
        best, best_value = -1, -math.inf
        for i in list(open_):
            if nearest[i] >= REDUNDANT:
                dropped[i] = f"redundant (TF-IDF cosine {nearest[i]:.2f} to a kept piece)"
                open_.remove(i)
                continue
            if used + cost(i) > budget:
                continue
            value = LAMBDA * scored[i].salience - (1 - LAMBDA) * nearest[i]
            if value > best_value:
                best, best_value = i, value
        if best < 0:
            break
        kept[best] = f"salient (score {scored[best].salience:.3f})"
        used += cost(best)
        if head_of[best] >= 0:
            charged.add(head_of[best])
        open_.remove(best)
        for i in open_:
            nearest[i] = max(nearest[i], dot(scored[i].vector, scored[best].vector))
    ranked = sorted(range(len(scored)), key=lambda i: (-scored[i].salience, i))
    rank_of = {index: position + 1 for position, index in enumerate(ranked)}
    for i in sorted([*open_, *unfit]):
        dropped[i] = (f"over the token budget (salience {scored[i].salience:.3f}, "
                      f"rank {rank_of[i]} of {len(scored)})")
    return dropped


def _headings(scored: Sequence[_Scored], kept: dict[int, str], dropped: dict[int, str]) -> None:
    """Keep a heading whose section kept anything; drop the others."""
    heads = [i for i, item in enumerate(scored) if item.kind == "heading"]
    for position, head in enumerate(heads):
        end = heads[position + 1] if position + 1 < len(heads) else len(scored)
        if any(i in kept for i in range(head + 1, end)):
            kept[head] = "heading of a kept section"
        else:
            dropped[head] = "heading of a section with nothing kept"


def _output_pieces(text: str, scored: Sequence[_Scored], order: Sequence[int]) -> list[Piece]:
    """Kept pieces; one followed by a dropped clause of its unit loses its trailing comma."""
    out: list[Piece] = []
    for position, i in enumerate(order):
        piece = scored[i].piece
        following = i + 1 < len(scored) and scored[i + 1].piece.unit == piece.unit
        next_kept = position + 1 < len(order) and order[position + 1] == i + 1
        end = trim_tail(text, piece.start, piece.end) if following and not next_kept else piece.end
        out.append(Piece(piece.start, end, piece.unit))
    return out


class ExtractiveEngine:
    """TF-IDF + MMR sentence extraction that keeps every unit holding a protected span."""

    name: Final = "extractive"
    version: Final = "2"

    def compress(self, request: CompressionRequest, tokens: TokenCounter) -> Candidate:
        """Keep the salient units within ``target_ratio`` of the input's tokens (see module)."""
        units = segment(request.text, request.spans)
        if request.input_tokens < MIN_TOKENS or len(units) <= 1:
            return self._passthrough(request, len(units))
        pieces = [fine for piece in clauses(request.text, units, request.spans)
                  for fine in fine_clauses(request.text, piece, request.spans)]
        scored = _score(request, units, pieces, tokens)
        kept = _mandatory(scored)
        budget = math.floor(request.target_ratio * request.input_tokens)
        dropped = _fill(scored, kept, budget)
        _headings(scored, kept, dropped)
        order = sorted(kept)
        placed_pieces = _output_pieces(request.text, scored, order)
        output, placed = join_units(request.text, placed_pieces)
        sources = tuple(
            Source(out[0], out[1], ((piece.start, piece.end),))
            for piece, out in zip(placed_pieces, placed, strict=True)
        )
        return Candidate(
            engine=self.name, engine_version=self.version, kind="extractive", text=output,
            sources=sources,
            removed=tuple(Note(scored[i].piece.start, scored[i].piece.end, dropped[i])
                          for i in sorted(dropped)),
            preserved=tuple(Note(scored[i].piece.start, scored[i].piece.end, kept[i])
                            for i in order),
            notes=(f"{len(order)} of {len(pieces)} clauses kept ({len(units)} units); "
                   f"budget {budget} tokens",),
        )

    def _passthrough(self, request: CompressionRequest, unit_count: int) -> Candidate:
        why = (f"input too short to gain ({request.input_tokens} tokens < {MIN_TOKENS})"
               if request.input_tokens < MIN_TOKENS else "input is a single unit")
        end = len(request.text)
        return Candidate(
            engine=self.name, engine_version=self.version, kind="passthrough",
            text=request.text, sources=(Source(0, end, ((0, end),)),) if end else (),
            preserved=(Note(0, end, why),) if end else (),
            notes=(f"passed through: {why}; {unit_count} unit(s)",),
        )
