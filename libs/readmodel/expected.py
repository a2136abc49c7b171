"""What the read models must hold for one memory, folded in plain Python from its events.

An independent statement of the projection's meaning (:mod:`libs.readmodel.projections` says the
same thing as SQL): verification folds a memory's events here and compares the result with its
``memories``, ``memory_links``, ``memory_branches`` and ``command_results`` rows, so a row edited
by hand or a projection bug is named with the memory and the field. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from libs.dag import DEFAULT_BRANCH
from libs.events import (
    Event,
    MemoryBranched,
    MemoryCommitted,
    MemoryCommittedData,
    MemoryCompressed,
    MemoryCreated,
    MemoryForgotten,
    MemoryLinked,
    MemoryMerged,
    MemoryMetadataChanged,
    MemoryReverted,
    MemoryRevised,
    MemoryTagged,
    storable,
    storable_json,
)
from libs.readmodel.projections import thread_place

__all__ = ["ExpectedMemory", "fold_memory"]


def _json(value: object) -> Any:
    """What a json/jsonb column gives back for ``value`` (its storable canonical JSON)."""
    return msgspec.json.decode(storable_json(value))


def _c_sorted(values: Iterable[str]) -> list[str]:
    return sorted(set(values), key=lambda text: text.encode())


@dataclass
class ExpectedMemory:
    """The rows one memory's events project (columns as the tables name them)."""

    row: dict[str, Any] = field(default_factory=dict)
    links: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    branches: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)
    compressions: dict[str, dict[str, Any]] = field(default_factory=dict)


def _touch(state: ExpectedMemory, event: Event, seq: int) -> None:
    state.row.update(revision=seq, updated_at=event.at, updated_by=_json(event.actor))


def _created(state: ExpectedMemory, event: MemoryCreated, seq: int) -> None:
    d = event.data
    actor = _json(event.actor)
    state.row.update(
        ns=event.ns, memory_id=event.aggregate_id, kind=d.kind, content=storable(d.content),
        content_hash=d.content_hash, head_version_id=d.version_id, version_count=1,
        tags=_c_sorted(d.tags), metadata=_json(d.metadata),
        source=None if d.provenance.source is None else storable(d.provenance.source),
        agent_id=event.actor.agent_id, created_by=actor, updated_by=actor,
        created_command_id=event.command_id, created_at=event.at, updated_at=event.at,
        revision=seq, forgotten_at=None, forgotten_by=None, forgotten_reason=None,
        occurred_at=d.occurred_at)
    state.row["thread_id"], state.row["thread_position"] = thread_place(d.thread, seq)
    state.versions.add(d.version_id)
    state.branches[DEFAULT_BRANCH] = _branch(d.version_id, seq, event.at, actor)


def _branch(version: str, seq: int, at: datetime, actor: Any) -> dict[str, Any]:
    return {"head_version_id": version, "from_version_id": version, "created_seq": seq,
            "updated_seq": seq, "created_at": at, "updated_at": at, "updated_by": actor}


def _move(state: ExpectedMemory, branch: str, version: str, seq: int, event: Event) -> None:
    state.branches[branch].update(head_version_id=version, updated_seq=seq,
                                  updated_at=event.at, updated_by=_json(event.actor))


def _new_head(state: ExpectedMemory, content: str, digest: str, version: str,
              metadata: dict[str, Any]) -> None:
    state.row.update(content=storable(content), content_hash=digest, head_version_id=version)
    if metadata:  # an empty metadata on a new version keeps the memory's metadata
        state.row["metadata"] = _json(metadata)


def _revised(state: ExpectedMemory, event: MemoryRevised, seq: int) -> None:
    d = event.data
    _new_head(state, d.content, d.content_hash, d.version_id, dict(d.metadata))
    if d.occurred_at is not None:
        state.row["occurred_at"] = d.occurred_at
    state.versions.add(d.version_id)
    state.row["version_count"] += 1
    _touch(state, event, seq)
    _move(state, DEFAULT_BRANCH, d.version_id, seq, event)


def _tagged(state: ExpectedMemory, event: MemoryTagged, seq: int) -> None:
    tags = (set(state.row["tags"]) - set(event.data.removed)) | set(event.data.added)
    state.row["tags"] = _c_sorted(tags)
    _touch(state, event, seq)


def _metadata_changed(state: ExpectedMemory, event: MemoryMetadataChanged, seq: int) -> None:
    merged = {**state.row["metadata"], **_json(event.data.set)}
    for key in event.data.unset:
        merged.pop(storable(key), None)
    state.row["metadata"] = merged
    _touch(state, event, seq)


def _linked(state: ExpectedMemory, event: MemoryLinked, seq: int) -> None:
    key = (event.data.target_memory_id, event.data.relation)
    state.links.setdefault(key, {"actor": _json(event.actor), "seq": seq,
                                 "created_at": event.at})
    _touch(state, event, seq)


def _forgotten(state: ExpectedMemory, event: MemoryForgotten, seq: int) -> None:
    state.row.update(forgotten_at=event.at, forgotten_by=_json(event.actor),
                     forgotten_reason=storable(event.data.reason))
    _touch(state, event, seq)


def _branched(state: ExpectedMemory, event: MemoryBranched, seq: int) -> None:
    version = event.data.from_version_id
    state.branches.setdefault(event.data.branch,
                              _branch(version, seq, event.at, _json(event.actor)))
    _touch(state, event, seq)


def _branch_version(state: ExpectedMemory, event: MemoryCommitted | MemoryMerged
                    | MemoryReverted, seq: int) -> None:
    d = event.data
    state.versions.add(d.version_id)
    _move(state, d.branch, d.version_id, seq, event)
    if d.branch == DEFAULT_BRANCH:
        _new_head(state, d.content, d.content_hash, d.version_id, dict(d.metadata))
        if isinstance(d, MemoryCommittedData) and d.occurred_at is not None:
            state.row["occurred_at"] = d.occurred_at
    state.row["version_count"] = len(state.versions)
    _touch(state, event, seq)


def _compressed(state: ExpectedMemory, event: MemoryCompressed, seq: int) -> None:
    # Only the sequence moves (the event is on the memory's subject); the first event of a
    # receipt id is the row (a re-run past the duplicate window adds no second one).
    receipt = event.data.receipt
    state.row["revision"] = seq
    state.compressions.setdefault(receipt.receipt_id, {
        "version_id": receipt.version_id, "engine": receipt.engine,
        "engine_version": receipt.engine_version, "trigger": receipt.trigger,
        "tokenizer": receipt.tokenizer, "original_tokens": receipt.original_tokens,
        "compressed_tokens": receipt.compressed_tokens, "ratio": receipt.ratio,
        "quality_score": receipt.quality_score,
        "safe_for": sorted({v.purpose for v in receipt.safe_for}),
        "content": storable(event.data.content), "receipt": _json(receipt),
        "event_id": event.id, "seq": seq, "created_at": event.at})


_STEPS: dict[type, Any] = {
    MemoryCreated: _created, MemoryRevised: _revised, MemoryTagged: _tagged,
    MemoryMetadataChanged: _metadata_changed, MemoryLinked: _linked,
    MemoryForgotten: _forgotten, MemoryBranched: _branched, MemoryCommitted: _branch_version,
    MemoryMerged: _branch_version, MemoryReverted: _branch_version,
    MemoryCompressed: _compressed,
}


def fold_memory(events: Iterable[tuple[Event, int]]) -> ExpectedMemory:
    """The expected rows after a memory's projected ``(event, seq)`` history, in stream order."""
    state = ExpectedMemory()
    for event, seq in events:
        step = _STEPS.get(type(event))
        if step is None:
            continue
        step(state, event, seq)
        if event.command_id not in state.results:
            version = getattr(event.data, "version_id", None)
            state.results[event.command_id] = {
                "event_id": event.id, "event_type": str(type(event).__struct_config__.tag),
                "memory_id": event.aggregate_id, "version_id": version, "seq": seq,
                "command_digest": event.command_digest}
    return state
