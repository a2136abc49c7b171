"""The LoCoMo development set (../shared/data/locomo-dev, see its README): conversations as
turns and questions, and the evidence-recall measurement. Pure loading and arithmetic."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_DIR",
    "Conversation",
    "Question",
    "Scores",
    "Turn",
    "load_conversations",
    "score",
]

DEFAULT_DIR: Final = Path(os.environ.get(
    "MNEMOS_LOCOMO_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "locomo-dev"))
_SESSION: Final = re.compile(r"^session_(\d+)$")
CATEGORIES: Final = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop",
                     5: "adversarial"}


@dataclass(frozen=True, slots=True)
class Turn:
    """One dialogue turn: a memory ``"<speaker>: <text>"`` in thread ``session-<n>``."""

    dia_id: str
    session: int
    position: int
    content: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Question:
    """One question: a search; a hit is a retrieved turn whose ``dia_id`` is in ``evidence``."""

    text: str
    evidence: frozenset[str]
    category: int


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation (one namespace)."""

    name: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]


def _session_time(text: str) -> datetime:
    # e.g. "1:56 pm on 8 May, 2023" (no zone given: read as UTC)
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def _conversation(name: str, raw: Mapping[str, Any]) -> Conversation:
    conv = raw.get("conversation", raw)
    turns: list[Turn] = []
    sessions = sorted(int(m.group(1)) for key in conv if (m := _SESSION.match(key)))
    for number in sessions:
        when = _session_time(conv[f"session_{number}_date_time"])
        for position, turn in enumerate(conv[f"session_{number}"]):
            turns.append(Turn(dia_id=turn["dia_id"], session=number, position=position,
                              content=f"{turn['speaker']}: {turn['text']}", occurred_at=when))
    questions = tuple(
        Question(text=qa["question"], evidence=frozenset(qa.get("evidence") or ()),
                 category=int(qa["category"]))
        for qa in raw["qa"]
    )
    return Conversation(name=name, turns=tuple(turns), questions=questions)


def load_conversations(directory: Path = DEFAULT_DIR) -> list[Conversation]:
    """Every ``<name>.json`` conversation of ``directory``, by name."""
    return [_conversation(path.stem, json.loads(path.read_text()))
            for path in sorted(directory.glob("*.json"))]


@dataclass
class Scores:
    """Evidence recall@k and hit@k, overall, without category 5, and per category."""

    recall: dict[str, list[float]]
    hit: dict[str, list[float]]

    def add(self, category: int, recall: float, hit: float) -> None:
        for key in ("all", f"c{category}", *(("no-c5",) if category != 5 else ())):
            self.recall.setdefault(key, []).append(recall)
            self.hit.setdefault(key, []).append(hit)

    def mean(self, key: str, which: str = "recall") -> float:
        values = (self.recall if which == "recall" else self.hit).get(key, [])
        return sum(values) / len(values) if values else float("nan")


def score(results: Iterable[tuple[Question, Sequence[str]]], k: int) -> Scores:
    """Evidence recall@k and hit@k of ranked ``dia_id`` lists, over questions with evidence."""
    scores = Scores(recall={}, hit={})
    for question, ranked in results:
        if not question.evidence:
            continue
        found = question.evidence & set(ranked[:k])
        scores.add(question.category, len(found) / len(question.evidence), float(bool(found)))
    return scores
