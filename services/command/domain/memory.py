"""The memory aggregate: state as a fold over its events, and the rules that turn commands into
events. Pure — no I/O, no clock (the time arrives in the :class:`DecisionContext`).

``evolve`` has one small function per event type; ``decide_<command>`` validates a command
against the current state and returns the events to append (always exactly one today, but the
contract is a list so a command may grow into several events without changing callers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import msgspec

from libs.dag import DEFAULT_BRANCH
from libs.events import (
    AGGREGATE_MEMORY,
    Actor,
    CommandBase,
    CommandResult,
    Conflict,
    Event,
    EventBase,
    Forget,
    InvalidInput,
    Link,
    MemoryCommitted,
    MemoryCommittedData,
    MemoryCreated,
    MemoryCreatedData,
    MemoryForgotten,
    MemoryForgottenData,
    MemoryLinked,
    MemoryLinkedData,
    MemoryMerged,
    MemoryMetadataChanged,
    MemoryMetadataChangedData,
    MemoryReverted,
    MemoryRevised,
    MemoryRevisedData,
    MemoryTagged,
    MemoryTaggedData,
    MetadataValue,
    NotFound,
    PayloadTooLarge,
    Provenance,
    Remember,
    Revise,
    SetMetadata,
    Tag,
    ThreadRef,
    content_hash,
    derive_event_id,
    utc_instant,
    validate_id,
    version_id,
)
from libs.events.text import is_blank
from libs.eventstore.base import Fold
from services.command.domain.dag_state import DagState, advance_dag

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_METADATA_KEYS",
    "MAX_TAGS",
    "MEMORY_FOLD",
    "DecisionContext",
    "MemoryState",
    "creation_memory_id",
    "decide",
    "decide_forget",
    "decide_link",
    "decide_remember",
    "decide_revise",
    "decide_set_metadata",
    "decide_tag",
    "evolve",
    "fold",
    "moved_occurrence",
    "result_for",
    "target_of",
]

MAX_TAGS: Final = 64
"""Most tags one memory may carry."""
MAX_METADATA_KEYS: Final = 64
"""Most metadata keys one memory may carry."""
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_BYTES: Final = 16_384
"""Largest canonical JSON encoding of a memory's metadata."""

_JSON: Final = msgspec.json.Encoder(order="sorted")


@dataclass(frozen=True, slots=True)
class MemoryState:
    """What the rules need to know about one memory, folded from its events.

    ``last_seq`` is the stream sequence of the memory's latest event (0 = no events): the value
    optimistic concurrency compares. ``applied`` maps every command id that produced an event on
    this memory to that event's sequence, so a repeated command is recognised from the stream
    itself, even when the read models are behind and the duplicate window has passed;
    ``digests`` maps them to the causing command's digest, which tells a retry (same digest)
    from a command id reused for another command (a conflict). ``occurred_at`` is when what the
    memory says happened (set on creation, moved by a revision or a commit onto ``main``).
    """

    memory_id: str
    exists: bool = False
    forgotten: bool = False
    kind: str | None = None
    head_version_id: str | None = None
    content_hash: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    links: frozenset[tuple[str, str]] = frozenset()
    dag: DagState | None = None
    last_seq: int = 0
    applied: Mapping[str, int] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)
    occurred_at: datetime | None = None

    @property
    def live(self) -> bool:
        """Exists and is not forgotten: the only state in which it can be changed or linked to."""
        return self.exists and not self.forgotten


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Everything a decision needs besides state and command: identity, causation, time, limits."""

    ns: str
    command_id: str
    correlation_id: str
    actor: Actor
    at: datetime
    max_content_bytes: int
    command_digest: str | None = None


# --- evolve -----------------------------------------------------------------------------------


def _created(state: MemoryState, event: MemoryCreated) -> MemoryState:
    data = event.data
    return replace(
        state, exists=True, kind=data.kind, head_version_id=data.version_id,
        content_hash=data.content_hash, metadata=dict(data.metadata), tags=frozenset(data.tags),
        occurred_at=data.occurred_at,
    )


def _revised(state: MemoryState, event: MemoryRevised) -> MemoryState:
    data = event.data
    # Empty metadata on a revision keeps the memory's metadata (as the projector does).
    return replace(
        state, head_version_id=data.version_id, content_hash=data.content_hash,
        metadata=dict(data.metadata) if data.metadata else state.metadata,
        occurred_at=data.occurred_at or state.occurred_at,
    )


def _main_moved(state: MemoryState, event: MemoryCommitted | MemoryMerged | MemoryReverted
                ) -> MemoryState:
    # The memory's head, content and metadata are those of "main"; other branches leave them.
    data = event.data
    if data.branch != DEFAULT_BRANCH:
        return state
    occurred = data.occurred_at if isinstance(data, MemoryCommittedData) else None
    return replace(
        state, head_version_id=data.version_id, content_hash=data.content_hash,
        metadata=dict(data.metadata) if data.metadata else state.metadata,
        occurred_at=occurred or state.occurred_at,
    )


def _tagged(state: MemoryState, event: MemoryTagged) -> MemoryState:
    return replace(state, tags=(state.tags | set(event.data.added)) - set(event.data.removed))


def _metadata_changed(state: MemoryState, event: MemoryMetadataChanged) -> MemoryState:
    merged = {**state.metadata, **event.data.set}
    for key in event.data.unset:
        merged.pop(key, None)
    return replace(state, metadata=merged)


def _linked(state: MemoryState, event: MemoryLinked) -> MemoryState:
    edge = (event.data.target_memory_id, event.data.relation)
    return replace(state, links=state.links | {edge})


def _forgotten(state: MemoryState, event: MemoryForgotten) -> MemoryState:
    return replace(state, forgotten=True)


_EVOLVERS: Final[dict[type[EventBase], Callable[[MemoryState, Any], MemoryState]]] = {
    MemoryCreated: _created,
    MemoryRevised: _revised,
    MemoryTagged: _tagged,
    MemoryMetadataChanged: _metadata_changed,
    MemoryLinked: _linked,
    MemoryForgotten: _forgotten,
    MemoryCommitted: _main_moved,
    MemoryMerged: _main_moved,
    MemoryReverted: _main_moved,
}


def evolve(state: MemoryState, event: Event, seq: int) -> MemoryState:
    """The state after ``event``, stored at stream sequence ``seq``."""
    if event.aggregate_id != state.memory_id:
        raise ValueError(f"event for {event.aggregate_id} folded into {state.memory_id}")
    step = _EVOLVERS.get(type(event))
    # Events other services append to a memory (e.g. compression) do not change what these rules
    # check; they still move the memory's sequence, which optimistic concurrency compares.
    after = state if step is None else step(state, event)
    dag = advance_dag(state.dag, event, seq)
    if dag is not state.dag:
        after = replace(after, dag=dag)
    applied, digests = state.applied, state.digests
    if event.command_id not in applied:
        applied = {**applied, event.command_id: seq}
        if event.command_digest is not None:
            digests = {**digests, event.command_id: event.command_digest}
    return replace(after, last_seq=seq, applied=applied, digests=digests)


MEMORY_FOLD: Final[Fold[MemoryState]] = Fold(
    aggregate=AGGREGATE_MEMORY, initial=lambda memory_id: MemoryState(memory_id=memory_id),
    evolve=evolve, last_seq=lambda state: state.last_seq,
)
"""How the event store folds a memory (see :class:`libs.eventstore.Fold`)."""


def fold(memory_id: str, events: list[tuple[Event, int]]) -> MemoryState:
    """The state of ``memory_id`` after its ``(event, seq)`` history, in stream order."""
    state = MemoryState(memory_id=memory_id)
    for event, seq in events:
        state = evolve(state, event, seq)
    return state


# --- validation helpers -----------------------------------------------------------------------


def _no_change(what: str) -> InvalidInput:
    return InvalidInput(f"no change: {what}", reason="no_change")


def _check_content(content: str, limit: int) -> str:
    if is_blank(content):
        raise InvalidInput("content must not be empty", field="content")
    size = len(content.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(
            f"content is {size} bytes; the limit is {limit}", field="content", limit=limit,
        )
    return content


def _check_metadata(metadata: Mapping[str, MetadataValue]) -> dict[str, MetadataValue]:
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(f"at most {MAX_METADATA_KEYS} metadata keys", field="metadata")
    for key in metadata:
        if not key or len(key) > MAX_METADATA_KEY_CHARS or not key.isprintable():
            raise InvalidInput(
                f"metadata keys must be 1-{MAX_METADATA_KEY_CHARS} printable characters",
                field="metadata", key=key[:80],
            )
    if len(_JSON.encode(dict(metadata))) > MAX_METADATA_BYTES:
        raise PayloadTooLarge(f"metadata exceeds {MAX_METADATA_BYTES} bytes", field="metadata")
    return dict(metadata)


def _require_live(state: MemoryState) -> None:
    if not state.live:
        raise NotFound(f"memory {state.memory_id} not found", memory_id=state.memory_id)


def _envelope(ctx: DecisionContext, memory_id: str, index: int) -> dict[str, Any]:
    return {
        "id": derive_event_id(ctx.ns, ctx.command_id, index),
        "ns": ctx.ns,
        "aggregate": AGGREGATE_MEMORY,
        "aggregate_id": memory_id,
        "actor": ctx.actor,
        "command_id": ctx.command_id,
        "correlation_id": ctx.correlation_id,
        "at": ctx.at,
        "command_digest": ctx.command_digest,
    }


def creation_memory_id(ns: str, command_id: str) -> str:
    """The id of the memory a ``remember`` command creates: the id of its creating event.

    Deterministic, so a retried ``remember`` addresses the same subject and can never create a
    second memory, whatever the duplicate window or the read models say.
    """
    return derive_event_id(ns, command_id, 0)


# --- decide -----------------------------------------------------------------------------------


def decide_remember(state: MemoryState, command: Remember, ctx: DecisionContext) -> list[Event]:
    """Create the memory with its root version."""
    if state.exists:
        raise Conflict(f"memory {state.memory_id} already exists", memory_id=state.memory_id)
    content = _check_content(command.content, ctx.max_content_bytes)
    tags = sorted(set(command.tags))
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", field="tags")
    metadata = _check_metadata(command.metadata)
    if command.thread_position is not None and command.thread is None:
        raise InvalidInput("thread_position needs a thread", field="thread_position")
    digest = content_hash(content)
    thread = (None if command.thread is None
              else ThreadRef(id=command.thread, position=command.thread_position))
    occurred = ctx.at if command.occurred_at is None else utc_instant(command.occurred_at)
    data = MemoryCreatedData(
        memory_id=state.memory_id,
        version_id=version_id(state.memory_id, digest, metadata, ()),
        kind=command.kind, content=content, content_hash=digest, tags=tuple(tags),
        metadata=metadata, provenance=Provenance(source=command.source),
        occurred_at=occurred, thread=thread,
    )
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryCreated(schema=MemoryCreated.SCHEMA, data=data, **envelope)]


def decide_revise(state: MemoryState, command: Revise, ctx: DecisionContext) -> list[Event]:
    """A new head version whose single parent is the current head."""
    _require_live(state)
    assert state.head_version_id is not None
    content = _check_content(command.content, ctx.max_content_bytes)
    # Absent or empty metadata carries the current metadata into the new version; removing keys
    # is set_metadata's job (an empty object cannot both mean "keep" and "clear").
    metadata = _check_metadata(command.metadata) if command.metadata else dict(state.metadata)
    digest = content_hash(content)
    occurred = moved_occurrence(state, command.occurred_at)
    if (digest == state.content_hash and metadata == dict(state.metadata)
            and occurred is None):
        raise _no_change("content, metadata and occurred_at equal the current version")
    parent = state.head_version_id
    data = MemoryRevisedData(
        version_id=version_id(state.memory_id, digest, metadata, (parent,)),
        parent_version_id=parent, content=content, content_hash=digest, metadata=metadata,
        reason=command.reason, occurred_at=occurred,
    )
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryRevised(schema=MemoryRevised.SCHEMA, data=data, **envelope)]


def moved_occurrence(state: MemoryState, requested: datetime | None) -> datetime | None:
    """The new ``occurred_at`` a version records (UTC), or None when it keeps the memory's."""
    if requested is None:
        return None
    moved = utc_instant(requested)
    return None if moved == state.occurred_at else moved


def decide_tag(state: MemoryState, command: Tag, ctx: DecisionContext) -> list[Event]:
    """Add and remove tags; only the effective changes are recorded."""
    _require_live(state)
    add, remove = set(command.add), set(command.remove)
    if not add and not remove:
        raise InvalidInput("tag needs at least one tag to add or remove", field="add")
    if add & remove:
        raise InvalidInput("a tag cannot be both added and removed", tags=sorted(add & remove))
    added, removed = sorted(add - state.tags), sorted(remove & state.tags)
    if not added and not removed:
        raise _no_change("the tags are already as requested")
    if len((state.tags | set(added)) - set(removed)) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", field="add")
    data = MemoryTaggedData(added=tuple(added), removed=tuple(removed))
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryTagged(schema=MemoryTagged.SCHEMA, data=data, **envelope)]


def decide_set_metadata(
    state: MemoryState, command: SetMetadata, ctx: DecisionContext
) -> list[Event]:
    """Set and unset metadata keys; only keys whose value actually changes are recorded."""
    _require_live(state)
    if not command.set and not command.unset:
        raise InvalidInput("set_metadata needs keys to set or unset", field="set")
    overlap = set(command.set) & set(command.unset)
    if overlap:
        raise InvalidInput("a key cannot be both set and unset", keys=sorted(overlap))
    current = dict(state.metadata)
    # Compare types too: 1, 1.0 and True are equal in Python but distinct JSON values.
    changed = {
        k: v for k, v in command.set.items()
        if k not in current or (type(current[k]), current[k]) != (type(v), v)
    }
    unset = sorted(k for k in set(command.unset) if k in current)
    if not changed and not unset:
        raise _no_change("the metadata is already as requested")
    merged = {**current, **changed}
    for key in unset:
        merged.pop(key)
    _check_metadata(merged)
    data = MemoryMetadataChangedData(set=changed, unset=tuple(unset))
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryMetadataChanged(schema=MemoryMetadataChanged.SCHEMA, data=data, **envelope)]


def decide_link(
    state: MemoryState, command: Link, ctx: DecisionContext, target: MemoryState
) -> list[Event]:
    """Point at another live memory of the same namespace (``target`` is its state)."""
    _require_live(state)
    if target.memory_id != command.target_memory_id:
        raise ValueError("target state does not belong to the command's target")
    if command.target_memory_id == state.memory_id:
        raise InvalidInput("a memory cannot link to itself", field="target_memory_id")
    if not target.live:
        raise NotFound(
            f"link target {target.memory_id} not found", memory_id=target.memory_id,
            field="target_memory_id",
        )
    if (target.memory_id, command.relation) in state.links:
        raise _no_change("the link already exists")
    data = MemoryLinkedData(target_memory_id=target.memory_id, relation=command.relation)
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryLinked(schema=MemoryLinked.SCHEMA, data=data, **envelope)]


def decide_forget(state: MemoryState, command: Forget, ctx: DecisionContext) -> list[Event]:
    """Stop serving the memory; its events stay in the stream."""
    _require_live(state)
    if is_blank(command.reason):
        raise InvalidInput("reason must not be empty", field="reason")
    data = MemoryForgottenData(reason=command.reason)
    envelope = _envelope(ctx, state.memory_id, 0)
    return [MemoryForgotten(schema=MemoryForgotten.SCHEMA, data=data, **envelope)]


def decide(
    state: MemoryState, command: CommandBase, ctx: DecisionContext,
    target: MemoryState | None = None,
) -> list[Event]:
    """Dispatch ``command`` to its rule. ``target`` is required for :class:`Link` only."""
    if isinstance(command, Remember):
        return decide_remember(state, command, ctx)
    if isinstance(command, Revise):
        return decide_revise(state, command, ctx)
    if isinstance(command, Tag):
        return decide_tag(state, command, ctx)
    if isinstance(command, SetMetadata):
        return decide_set_metadata(state, command, ctx)
    if isinstance(command, Link):
        if target is None:
            raise ValueError("link needs the target's state")
        return decide_link(state, command, ctx, target)
    if isinstance(command, Forget):
        return decide_forget(state, command, ctx)
    raise InvalidInput(f"no rule for {type(command).__name__}")


def target_of(command: CommandBase, ns: str, command_id: str) -> str:
    """The validated id of the memory ``command`` addresses (derived for ``remember``)."""
    if isinstance(command, Remember):
        return creation_memory_id(ns, command_id)
    memory_id: object = getattr(command, "memory_id", None)
    return validate_id(memory_id, "memory_id")


def result_for(event: Event, seq: int, duplicate: bool = False) -> CommandResult:
    """The answer to the command that caused ``event`` (stored at ``seq``).

    ``version_id`` is the version the event created (None for events that create no version);
    ``revision`` is the memory's sequence right after the event.
    """
    created_version = getattr(event.data, "version_id", None)
    return CommandResult(
        command_id=event.command_id, event_id=event.id,
        event_type=str(type(event).__struct_config__.tag),
        memory_id=event.aggregate_id, version_id=created_version, seq=seq, revision=seq,
        duplicate=duplicate,
    )
