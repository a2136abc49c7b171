"""Projections: one small pure function per event type, from an event to the SQL that applies it.

Nothing here does I/O. A projection checks the event's invariants and returns
:class:`Statement`\\ s; the batch applier runs them in the batch's transaction and compares each
statement's row count with what it expects, so an event that contradicts the read model (revising
a memory that does not exist, a parent that is not the head …) fails loudly and is dead-lettered
instead of being half-applied.

Set semantics (tags, metadata keys) are computed by Postgres from the current row, so a projection
needs no read of the state it changes. Tag order uses the ``C`` collation: byte order, the same
in every database whatever its locale, so replays compare equal.

The lexical search statistics (``lexical_docs``, ``lexical_ns_stats``, ``lexical_df``; migration
0002) need no statement here: a trigger on ``memories`` keeps them in step with every change of
``content`` or ``forgotten_at``, in the same transaction, whichever projection makes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, LiteralString

import numpy as np
import numpy.typing as npt

from libs.dag import DEFAULT_BRANCH
from libs.events import (
    AGGREGATE_MEMORY,
    Event,
    InvalidInput,
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
    ThreadRef,
    content_hash,
    event_subject,
    storable,
    storable_json,
    version_id,
)
from libs.readmodel.registry import (
    REGISTRY_AGGREGATES,
    REGISTRY_PROJECTIONS,
    project_registry,
)
from libs.readmodel.statement import Casts, Statement, insert_row

__all__ = [
    "Embedding",
    "InvariantViolation",
    "Statement",
    "check_subject",
    "content_of",
    "event_type",
    "is_projected",
    "project",
    "thread_place",
]


class InvariantViolation(InvalidInput):
    """The event cannot be applied to the read model: a poison event, never retried forever."""

    code = "invariant_violation"


@dataclass(frozen=True, slots=True)
class Embedding:
    """The vector of a content and the model that produced it (as an array, or in pgvector's
    text form for a bulk rebuild, which only passes it through)."""

    model: str
    vector: npt.NDArray[np.float32] | str


def content_of(event: Event) -> str | None:
    """The content an event introduces (to embed), or None for events that keep the content."""
    if isinstance(event, MemoryCreated | MemoryRevised):
        return event.data.content
    if isinstance(event, _BRANCH_VERSIONS) and event.data.branch == DEFAULT_BRANCH:
        return event.data.content  # the memory's content is that of "main"
    return None


def is_projected(event: Event) -> bool:
    """Whether the read models project this event type (other aggregates, e.g. the audit
    chain's checkpoints, share the stream and are passed over)."""
    return type(event) in _PROJECTIONS or type(event) in REGISTRY_PROJECTIONS


def check_subject(event: Event, subject: str) -> None:
    """The subject an event was stored under must be its own.

    Optimistic concurrency is per subject, so an event on a foreign subject would corrupt
    revisions; and a token the subject builder rejects is refused here too.
    """
    if is_projected(event) and event.aggregate != REGISTRY_AGGREGATES.get(
            type(event), AGGREGATE_MEMORY):
        raise InvariantViolation(f"unexpected aggregate {event.aggregate!r}")
    expected = event_subject(event.ns, event.aggregate, event.aggregate_id)
    if subject != expected:
        raise InvariantViolation(f"event stored under {subject!r}, expected {expected!r}")


def project(event: Event, seq: int, embedding: Embedding | None) -> list[Statement]:
    """Every statement applying ``event`` (stored at stream sequence ``seq``), in order.

    ``embedding`` is the vector of the event's content (see :func:`content_of`), if any.
    Only for events :func:`is_projected` accepts.
    """
    if type(event) in REGISTRY_PROJECTIONS:  # the reasoning layer's tables (.registry)
        return project_registry(event, seq)
    specific = _PROJECTIONS[type(event)](event, seq, embedding)
    return [*specific, _event_row(event, seq), _command_result(event, seq)]


def _base(event: Event, seq: int) -> dict[str, Any]:
    """Parameters every statement may use."""
    return {
        "ns": event.ns,
        "memory_id": event.aggregate_id,
        "seq": seq,
        "at": event.at,
        "actor": storable_json(event.actor),
    }


def _check_content(memory_id: str, content: str, digest: str, metadata: Mapping[str, Any],
                   parents: list[str], claimed_version: str) -> None:
    """Content-addressed ids must match: the embedding cache and the version DAG rely on them."""
    if content_hash(content) != digest:
        raise InvariantViolation("content_hash does not match the content", memory_id=memory_id)
    if version_id(memory_id, digest, metadata, parents) != claimed_version:
        raise InvariantViolation(
            "version_id does not match the version's content, metadata and parents",
            memory_id=memory_id, version_id=claimed_version,
        )


_TOUCH: Final = "revision = %(seq)s, updated_at = %(at)s, updated_by = %(actor)s::jsonb"
_WHERE: Final = "WHERE ns = %(ns)s AND memory_id = %(memory_id)s"
_MISSING: Final = "memory {memory_id} does not exist in namespace {ns}"


_JSON_COLUMNS: Final[Casts] = frozenset({
    ("metadata", "json"), ("actor", "jsonb"), ("created_by", "jsonb"), ("updated_by", "jsonb"),
    ("data", "json"),
})
"""Columns whose parameters are JSON text."""

_VERSION_DEFAULTS: Final[Mapping[str, Any]] = {
    "origin": "revise", "branch": DEFAULT_BRANCH, "strategy": None, "base_version_id": None,
    "reverted_to": None,
}


def _insert_version(params: Mapping[str, Any], *, existing_ok: bool = False) -> Statement:
    # Ids are content-addressed: a commit may recreate a version another branch already has
    # (same content onto the same parent); that version row stays as first recorded.
    p = {**_VERSION_DEFAULTS, **params}
    return insert_row("memory_versions", {
        "ns": p["ns"], "memory_id": p["memory_id"], "version_id": p["version_id"],
        "parent_ids": p["parent_ids"], "content": p["content"],
        "content_hash": p["content_hash"], "metadata": p["metadata"], "reason": p["reason"],
        "actor": p["actor"], "command_id": p["command_id"], "event_id": p["event_id"],
        "seq": p["seq"], "created_at": p["at"], "origin": p["origin"], "branch": p["branch"],
        "strategy": p["strategy"], "base_version_id": p["base_version_id"],
        "reverted_to": p["reverted_to"],
    }, casts=_JSON_COLUMNS, conflict="ON CONFLICT DO NOTHING" if existing_ok else "")


def _vector(embedding: Embedding | None) -> dict[str, Any]:
    if embedding is None:
        return {"embedding": None, "embedding_model": None}
    return {"embedding": embedding.vector, "embedding_model": embedding.model}


def thread_place(thread: ThreadRef | None, seq: int) -> tuple[str | None, int | None]:
    """A memory's thread id and position as stored: the writer's position, else the creating
    event's sequence (the order turns were written in)."""
    if thread is None:
        return None, None
    return storable(thread.id), seq if thread.position is None else thread.position


def _thread(thread: ThreadRef | None, seq: int) -> dict[str, Any]:
    thread_id, position = thread_place(thread, seq)
    return {"thread_id": thread_id, "thread_position": position}


_OCCURRED: Final = "occurred_at = coalesce(%(occurred_at)s, occurred_at), "


def _created(event: MemoryCreated, seq: int, embedding: Embedding | None) -> list[Statement]:
    data = event.data
    if data.memory_id != event.aggregate_id:
        raise InvariantViolation("data.memory_id differs from the aggregate id",
                                 memory_id=data.memory_id, aggregate_id=event.aggregate_id)
    _check_content(data.memory_id, data.content, data.content_hash, data.metadata, [],
                   data.version_id)
    params = {
        **_base(event, seq), **_vector(embedding),
        "kind": data.kind, "content": storable(data.content), "content_hash": data.content_hash,
        "version_id": data.version_id, "tags": sorted(set(data.tags)),
        "metadata": storable_json(data.metadata),
        "source": None if data.provenance.source is None else storable(data.provenance.source),
        "agent_id": event.actor.agent_id, "command_id": event.command_id,
        "event_id": event.id, "parent_ids": [], "reason": None,
        "occurred_at": data.occurred_at, **_thread(data.thread, seq),
    }
    insert_memory = insert_row("memories", {
        "ns": params["ns"], "memory_id": params["memory_id"], "kind": params["kind"],
        "content": params["content"], "content_hash": params["content_hash"],
        "head_version_id": params["version_id"], "version_count": 1, "tags": params["tags"],
        "metadata": params["metadata"], "source": params["source"],
        "agent_id": params["agent_id"], "created_by": params["actor"],
        "updated_by": params["actor"], "created_command_id": params["command_id"],
        "created_at": params["at"], "updated_at": params["at"], "revision": seq,
        "embedding": params["embedding"], "embedding_model": params["embedding_model"],
        "occurred_at": params["occurred_at"], "thread_id": params["thread_id"],
        "thread_position": params["thread_position"],
    }, casts=_JSON_COLUMNS, conflict="ON CONFLICT (ns, memory_id) DO NOTHING", expect_rows=1,
        error="memory {memory_id} already exists in namespace {ns}")
    main = _insert_branch(params, DEFAULT_BRANCH, params["version_id"])
    return [insert_memory, _insert_version({**params, "origin": "create"}), main]


def _revised(event: MemoryRevised, seq: int, embedding: Embedding | None) -> list[Statement]:
    data = event.data
    parents = [data.parent_version_id]
    _check_content(event.aggregate_id, data.content, data.content_hash, data.metadata, parents,
                   data.version_id)
    params = {
        **_base(event, seq), **_vector(embedding),
        "content": storable(data.content), "content_hash": data.content_hash,
        "version_id": data.version_id, "parent": data.parent_version_id, "parent_ids": parents,
        "metadata": storable_json(data.metadata),
        "reason": None if data.reason is None else storable(data.reason),
        "command_id": event.command_id, "event_id": event.id, "occurred_at": data.occurred_at,
    }
    # The WHERE on the head makes a revision of anything but the current head a violation.
    update = Statement(
        "UPDATE memories SET content = %(content)s, content_hash = %(content_hash)s,"
        " head_version_id = %(version_id)s, version_count = version_count + 1,"
        " metadata = CASE WHEN %(metadata)s = '{}' THEN metadata ELSE %(metadata)s::json END,"
        " embedding = %(embedding)s, embedding_model = %(embedding_model)s, " + _OCCURRED
        + _TOUCH + " " + _WHERE + " AND head_version_id = %(parent)s",
        params, expect_rows=1,
        error="memory {memory_id} does not exist in namespace {ns} or its head is not {parent}",
    )
    return [update, _insert_version(params), _move_branch({**params, "branch": DEFAULT_BRANCH})]


def _tagged(event: MemoryTagged, seq: int, _: Embedding | None) -> list[Statement]:
    params = {**_base(event, seq), "added": list(event.data.added),
              "removed": list(event.data.removed)}
    # (tags - removed) | added, deduplicated and sorted bytewise.
    update = Statement(
        "UPDATE memories SET tags = ARRAY(SELECT t FROM (SELECT unnest(tags) AS t"
        " EXCEPT SELECT unnest(%(removed)s::text[]) UNION SELECT unnest(%(added)s::text[])) s"
        ' ORDER BY t COLLATE "C"), ' + _TOUCH + " " + _WHERE,
        params, expect_rows=1, error=_MISSING,
    )
    return [update]


def _metadata_changed(
    event: MemoryMetadataChanged, seq: int, _: Embedding | None
) -> list[Statement]:
    # Set, then unset: a key in both ends up unset (as the gateway's fold decides it).
    params = {**_base(event, seq), "set": storable_json(event.data.set),
              "unset": list(event.data.unset)}
    update = Statement(
        "UPDATE memories SET"
        " metadata = metadata_merge(metadata, %(set)s::json, %(unset)s::text[]), "
        + _TOUCH + " " + _WHERE,
        params, expect_rows=1, error=_MISSING,
    )
    return [update]


def _linked(event: MemoryLinked, seq: int, _: Embedding | None) -> list[Statement]:
    params = {**_base(event, seq), "target": event.data.target_memory_id,
              "relation": event.data.relation}
    touch = Statement("UPDATE memories SET " + _TOUCH + " " + _WHERE, params, expect_rows=1,
                      error=_MISSING)
    # A missing target violates the foreign key: an IntegrityError, hence a dead letter.
    link = Statement(
        "INSERT INTO memory_links (ns, memory_id, target_memory_id, relation, actor, seq,"
        " created_at) VALUES (%(ns)s, %(memory_id)s, %(target)s, %(relation)s,"
        " %(actor)s::jsonb, %(seq)s, %(at)s) ON CONFLICT DO NOTHING",
        params,
    )
    return [touch, link]


def _forgotten(event: MemoryForgotten, seq: int, _: Embedding | None) -> list[Statement]:
    params = {**_base(event, seq), "reason": storable(event.data.reason)}
    update = Statement(
        "UPDATE memories SET forgotten_at = %(at)s, forgotten_by = %(actor)s::jsonb,"
        " forgotten_reason = %(reason)s, " + _TOUCH + " " + _WHERE,
        params, expect_rows=1, error=_MISSING,
    )
    return [update]


# --- the version DAG -----------------------------------------------------------------------

_BRANCH_VERSIONS: Final = (MemoryCommitted, MemoryMerged, MemoryReverted)
_COUNT_VERSIONS: Final = (
    "version_count = (SELECT count(*) FROM memory_versions v"
    " WHERE v.ns = %(ns)s AND v.memory_id = %(memory_id)s)"
)


def _move_branch(params: Mapping[str, Any]) -> Statement:
    """Move ``branch`` from ``parent`` (its head, or the event contradicts the read model)."""
    return Statement(
        "UPDATE memory_branches SET head_version_id = %(version_id)s, updated_seq = %(seq)s,"
        " updated_at = %(at)s, updated_by = %(actor)s::jsonb " + _WHERE
        + " AND branch = %(branch)s AND head_version_id = %(parent)s",
        params, expect_rows=1,
        error="branch {branch} of memory {memory_id} does not exist or its head is not {parent}",
    )


def _branch_version(event: MemoryCommitted | MemoryMerged | MemoryReverted, seq: int,
                    embedding: Embedding | None, parents: list[str],
                    extra: Mapping[str, Any]) -> list[Statement]:
    """A version recorded on a branch whose head was ``parents[0]``; "main" moves the memory."""
    data = event.data
    _check_content(event.aggregate_id, data.content, data.content_hash, data.metadata, parents,
                   data.version_id)
    params = {
        **_base(event, seq), **_vector(embedding), **extra,
        "content": storable(data.content), "content_hash": data.content_hash,
        "version_id": data.version_id, "parent": parents[0], "parent_ids": parents,
        "metadata": storable_json(data.metadata), "reason": None,
        "command_id": event.command_id, "event_id": event.id, "branch": data.branch,
        "occurred_at": data.occurred_at if isinstance(data, MemoryCommittedData) else None,
    }
    if data.branch == DEFAULT_BRANCH:
        memory = Statement(
            "UPDATE memories SET content = %(content)s, content_hash = %(content_hash)s,"
            " head_version_id = %(version_id)s, " + _COUNT_VERSIONS + ","
            " metadata = CASE WHEN %(metadata)s = '{}' THEN metadata"
            " ELSE %(metadata)s::json END,"
            " embedding = %(embedding)s, embedding_model = %(embedding_model)s, " + _OCCURRED
            + _TOUCH + " " + _WHERE + " AND head_version_id = %(parent)s",
            params, expect_rows=1,
            error="memory {memory_id} does not exist in namespace {ns} or its head is not {parent}",
        )
    else:
        memory = Statement("UPDATE memories SET " + _COUNT_VERSIONS + ", " + _TOUCH + " " + _WHERE,
                           params, expect_rows=1, error=_MISSING)
    return [_insert_version(params, existing_ok=True), _move_branch(params), memory]


def _committed(event: MemoryCommitted, seq: int, embedding: Embedding | None) -> list[Statement]:
    return _branch_version(event, seq, embedding, [event.data.parent_version_id],
                           {"origin": "commit"})


def _merged(event: MemoryMerged, seq: int, embedding: Embedding | None) -> list[Statement]:
    data = event.data
    return _branch_version(event, seq, embedding, list(data.parent_ids), {
        "origin": "merge", "strategy": data.strategy, "base_version_id": data.base_version_id,
    })


def _reverted(event: MemoryReverted, seq: int, embedding: Embedding | None) -> list[Statement]:
    return _branch_version(event, seq, embedding, [event.data.parent_version_id],
                           {"origin": "revert", "reverted_to": event.data.reverted_to})


def _branched(event: MemoryBranched, seq: int, _: Embedding | None) -> list[Statement]:
    params = {**_base(event, seq), "branch": event.data.branch,
              "from": event.data.from_version_id}
    touch = Statement("UPDATE memories SET " + _TOUCH + " " + _WHERE, params, expect_rows=1,
                      error=_MISSING)
    # An unknown version violates the foreign key: an IntegrityError, hence a dead letter.
    branch = _insert_branch(params, event.data.branch, event.data.from_version_id,
                            conflict="ON CONFLICT DO NOTHING", expect_rows=1,
                            error="branch {branch} of memory {memory_id} already exists")
    return [touch, branch]


def _insert_branch(params: Mapping[str, Any], branch: str, head: str, *,
                   conflict: LiteralString = "", expect_rows: int | None = None,
                   error: str = "") -> Statement:
    """A new branch pointing at ``head`` (where it was created from, too)."""
    return insert_row("memory_branches", {
        "ns": params["ns"], "memory_id": params["memory_id"], "branch": branch,
        "head_version_id": head, "from_version_id": head, "created_seq": params["seq"],
        "updated_seq": params["seq"], "created_at": params["at"], "updated_at": params["at"],
        "updated_by": params["actor"],
    }, casts=_JSON_COLUMNS, conflict=conflict, expect_rows=expect_rows, error=error)


# --- compression (DESIGN.md section 4) ------------------------------------------------------


def _compressed(event: MemoryCompressed, seq: int, _: Embedding | None) -> list[Statement]:
    """A compression of one version: its row in ``memory_compressions``; the memory's revision
    moves (the event is on the memory's subject), nothing it serves changes."""
    receipt = event.data.receipt
    if receipt.memory_id != event.aggregate_id:
        raise InvariantViolation("receipt.memory_id differs from the aggregate id",
                                 memory_id=receipt.memory_id, aggregate_id=event.aggregate_id)
    if content_hash(event.data.content) != receipt.output_hash:
        raise InvariantViolation("the compressed content does not match the receipt's "
                                 "output_hash", receipt_id=receipt.receipt_id)
    params = {
        **_base(event, seq), "receipt_id": receipt.receipt_id, "version_id": receipt.version_id,
        "engine": receipt.engine, "engine_version": receipt.engine_version,
        "trigger": receipt.trigger, "tokenizer": receipt.tokenizer,
        "original_tokens": receipt.original_tokens,
        "compressed_tokens": receipt.compressed_tokens, "ratio": receipt.ratio,
        "quality_score": receipt.quality_score,
        "safe_for": sorted({v.purpose for v in receipt.safe_for}),
        "content": storable(event.data.content), "receipt": storable_json(receipt),
        "event_id": event.id,
    }
    touch = Statement("UPDATE memories SET revision = %(seq)s " + _WHERE, params,
                      expect_rows=1, error=_MISSING)
    # An unknown version violates the foreign key: an IntegrityError, hence a dead letter.
    row = Statement(
        "INSERT INTO memory_compressions (ns, memory_id, receipt_id, version_id, engine,"
        " engine_version, trigger, tokenizer, original_tokens, compressed_tokens, ratio,"
        " quality_score, safe_for, content, receipt, event_id, seq, created_at) VALUES (%(ns)s,"
        " %(memory_id)s, %(receipt_id)s, %(version_id)s, %(engine)s, %(engine_version)s,"
        " %(trigger)s, %(tokenizer)s, %(original_tokens)s, %(compressed_tokens)s, %(ratio)s,"
        " %(quality_score)s, %(safe_for)s, %(content)s, %(receipt)s::json, %(event_id)s,"
        " %(seq)s, %(at)s) ON CONFLICT (ns, memory_id, receipt_id) DO NOTHING",
        params,
    )
    return [touch, row]


def event_type(event: Event) -> str:
    """The ``type`` tag of an event, e.g. ``MemoryCreated``."""
    return _tag_of(type(event))


@functools.cache
def _tag_of(cls: type[Event]) -> str:
    # msgspec builds a new config object on every ``__struct_config__`` access.
    return str(cls.__struct_config__.tag)


def _event_row(event: Event, seq: int) -> Statement:
    return insert_row("memory_events", {
        "ns": event.ns, "memory_id": event.aggregate_id, "seq": seq, "event_id": event.id,
        "type": event_type(event), "schema": event.schema, "actor": storable_json(event.actor),
        "command_id": event.command_id, "correlation_id": storable(event.correlation_id),
        "at": event.at, "data": storable_json(event.data),
    }, casts=_JSON_COLUMNS)


def _command_result(event: Event, seq: int) -> Statement:
    version = (event.data.version_id
               if isinstance(event, (MemoryCreated, MemoryRevised, *_BRANCH_VERSIONS)) else None)
    # The first event of a command is its result; a later one (same command) keeps it.
    return insert_row("command_results", {
        "ns": event.ns, "command_id": event.command_id, "event_id": event.id,
        "event_type": event_type(event), "memory_id": event.aggregate_id,
        "version_id": version, "seq": seq, "command_digest": event.command_digest,
    }, conflict="ON CONFLICT (ns, command_id) DO NOTHING")


_Projection = Callable[[Any, int, Embedding | None], list[Statement]]

_PROJECTIONS: Final[dict[type, _Projection]] = {
    MemoryCreated: _created,
    MemoryRevised: _revised,
    MemoryTagged: _tagged,
    MemoryMetadataChanged: _metadata_changed,
    MemoryLinked: _linked,
    MemoryForgotten: _forgotten,
    MemoryBranched: _branched,
    MemoryCommitted: _committed,
    MemoryMerged: _merged,
    MemoryReverted: _reverted,
    MemoryCompressed: _compressed,
}

