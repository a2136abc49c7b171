"""Grouping a batch's planned statements into runs that can be sent set-wise.

Under ingest a batch is mostly the same event type on different memories (hundreds of
``MemoryCreated``). Sending each event's statements one by one costs a driver round of Python per
statement; a run instead sends statement *i* of every event in it as one ``executemany``. That
reorders statements only between events of the same type on *different* memories, whose
statements touch disjoint rows (their own memory's) or commute (the lexical statistics counters),
so the committed state is the same as applying the events one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from libs.readmodel.projections import Statement

__all__ = ["Planned", "independent_runs"]


@dataclass(frozen=True, slots=True)
class Planned:
    """The statements that apply one event, with what decides whether events may share a run."""

    event_id: str
    event_type: str
    memory_id: str
    statements: list[Statement]

    @property
    def shape(self) -> tuple[str, tuple[str, ...]]:
        """Events of one shape run the same queries in the same order."""
        return self.event_type, tuple(s.query for s in self.statements)


def independent_runs(planned: Sequence[Planned]) -> Iterator[list[Planned]]:
    """Consecutive events of one shape on distinct memories, in stream order.

    A second event on a memory already in the current run starts a new run, so events on one
    memory are always applied in order.
    """
    run: list[Planned] = []
    memories: set[str] = set()
    shape: tuple[str, tuple[str, ...]] | None = None
    for item in planned:
        item_shape = item.shape
        if run and (item_shape != shape or item.memory_id in memories):
            yield run
            run, memories = [], set()
        if not run:
            shape = item_shape
        run.append(item)
        memories.add(item.memory_id)
    if run:
        yield run
