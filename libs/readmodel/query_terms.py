"""From a natural-language query to the words the lexical side looks up. Pure functions.

Only letters and digits survive, so no operator or quote from the caller reaches the tsquery
parser. Beyond the words themselves a query contributes:

- **compounds**: a hyphenated word also as one word and as its parts (``de-stress`` ->
  ``destress``, ``de``, ``stress``), and every pair of adjacent words joined (``road trip`` ->
  ``roadtrip``). Content is indexed the same way (migration 0010: a hyphenated word is also
  indexed joined), so either spelling finds the other; a joined pair no memory contains has
  document frequency 0 and costs nothing further.
- **a prefix**: the last word also matches the longer lexemes it starts (``broke`` finds
  ``broken``): the word an agent is still typing, or the noun a question ends on. Off by default
  in search (``MNEMOS_SEARCH_PREFIX_MATCHING``): it cost recall on the development set.
- **no speaker labels**: a leading ``Name:`` (a transcript's speaker label) is not a word of
  the question: matching it would rank every turn of that speaker, the shortest first.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_TERMS", "MAX_TERM_CHARS", "MIN_PREFIX_CHARS", "QueryTerms", "query_terms"]

MAX_TERMS: Final = 64
MAX_TERM_CHARS: Final = 64
MIN_PREFIX_CHARS: Final = 4
"""A shorter last word is not expanded (``car`` would match ``card``, ``care``, ``career``)."""

_WORD: Final = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_TOKEN: Final = re.compile(r"[^\W_]+")
_SPEAKER: Final = re.compile(r"^\s*[^\W\d_][\w .'-]{0,40}:\s+")


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """The words of a query (lower-cased, distinct, in order), the extra spellings it also
    matches, and the word whose longer forms it matches (``None``: no prefix matching)."""

    words: tuple[str, ...]
    compounds: tuple[str, ...]
    prefix: str | None

    @property
    def empty(self) -> bool:
        """Whether nothing is left to look up."""
        return not self.words

    def text(self) -> str:
        """Every word and compound as one text for the read model's tsvector function."""
        return " ".join((*self.words, *self.compounds))


def _add(target: list[str], term: str) -> None:
    term = term[:MAX_TERM_CHARS]
    if term and term not in target and len(target) < MAX_TERMS:
        target.append(term)


def query_terms(text: str, *, pairs: bool = True, prefix: bool = True) -> QueryTerms:
    """Split ``text`` into :class:`QueryTerms` (at most ``MAX_TERMS`` words and as many
    compounds, each at most ``MAX_TERM_CHARS`` characters). ``pairs`` and ``prefix`` switch the
    joined adjacent words and the prefix off (for measurement)."""
    lowered = _SPEAKER.sub("", text.lower(), count=1)
    words: list[str] = []
    compounds: list[str] = []
    tokens: list[str] = []
    for found in _WORD.findall(lowered):
        parts = _TOKEN.findall(found)
        for part in parts:
            _add(words, part)
        if len(parts) > 1:
            _add(compounds, "".join(parts))
        tokens.extend(parts)
    for left, right in itertools.pairwise(tokens) if pairs else ():
        _add(compounds, left + right)
    compounds = [term for term in compounds if term not in words]
    last = tokens[-1][:MAX_TERM_CHARS] if tokens else None
    expand = prefix and last is not None and len(last) >= MIN_PREFIX_CHARS
    return QueryTerms(words=tuple(words), compounds=tuple(compounds),
                      prefix=last if expand else None)
