"""Bulk export and import of a namespace as JSON Lines, one memory a line.

An exported line is a memory's whole history as the commands that re-create it, in stream
order (``remember``, ``revise``, ``tag``, ``set_metadata``, ``branch``, ``commit``, ``merge``,
``revert``), each with the agent side of its provenance (``actor``: agent, model, provider) and
the version it produced; its live links; and, for the reader only, what the source system
recorded (``recorded``: principal, time, seq), which an importing system records anew.
Importing replays the steps. Memory ids derive from the target namespace and version ids from
the memory, so the import renames both (references to earlier versions in ``branch``,
``revert`` and ``merge`` follow); exporting the imported namespace gives the same lines with
those ids renamed (``tests/e2e/test_transfer.py`` proves the round trip).

A line may also be a plain memory: ``{"content", "kind"?, "tags"?, "metadata"?, "source"?,
"actor"?, "id"?, "occurred_at"?, "thread"?, "thread_position"?}``; ``occurred_at`` (RFC 3339
with an offset) is when what it says happened, and a memory's two clocks and its place in a
thread travel with it both ways.

Re-running an import changes nothing: every step's ``command_id`` is derived from the target
namespace, the line's id and the step's index, so a repeat is answered as a duplicate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import blake3
import msgspec

from libs.events import InvalidInput, Unavailable
from mnemos_sdk import AsyncMnemos, RetryPolicy

__all__ = ["ImportReport", "Line", "Step", "export_lines", "import_lines", "parse_line",
           "step_command_id"]

_DEFAULT_MS: Final = 1_767_225_600_000
"""2026-01-01T00:00Z: the timestamp of derived command ids when a line has no time."""
_ID_DOMAIN: Final = b"mnemos.import.v1\x00"


class Link(msgspec.Struct, frozen=True):
    target: str
    relation: str


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    principal: str | None = None
    at: datetime | None = None
    seq: int | None = None


class Step(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    op: str
    body: dict[str, Any]
    actor: dict[str, Any] = {}
    version_id: str | None = None
    recorded: Recorded | None = None


class Line(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One exported memory."""

    id: str
    steps: list[Step]
    links: list[Link] = []


class _Plain(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    content: str
    kind: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    source: str | None = None
    actor: dict[str, Any] = {}
    id: str | None = None
    occurred_at: datetime | None = None
    thread: str | None = None
    thread_position: int | None = None


_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def parse_line(raw: bytes, number: int) -> Line:
    """One input line as an exported memory (a plain memory becomes a one-step one)."""
    try:
        value = msgspec.json.decode(raw)
        if isinstance(value, dict) and "steps" in value:
            return msgspec.convert(value, Line)
        plain = msgspec.convert(value, _Plain)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"line {number}: {exc}", line=number) from None
    body: dict[str, Any] = {"content": plain.content, "tags": plain.tags,
                            "metadata": dict(plain.metadata)}
    if plain.kind is not None:
        body["kind"] = plain.kind
    if plain.source is not None:
        body["source"] = plain.source
    if plain.occurred_at is not None:
        body["occurred_at"] = plain.occurred_at.isoformat()
    if plain.thread is not None:
        body["thread"] = plain.thread
    if plain.thread_position is not None:
        body["thread_position"] = plain.thread_position
    line_id = plain.id or blake3.blake3(_ENCODER.encode(body)).hexdigest()[:32]
    at = Recorded(at=plain.occurred_at) if plain.occurred_at else None
    return Line(id=line_id, steps=[Step(op="remember", body=body, actor=plain.actor,
                                        recorded=at)])


def step_command_id(ns: str, line_id: str, index: int, at: datetime | None) -> str:
    """A UUIDv7 fixed by (namespace, line, step): the same import twice is one import."""
    ms = int(at.timestamp() * 1000) if at is not None else _DEFAULT_MS
    digest = blake3.blake3(_ID_DOMAIN + f"{ns}\x00{line_id}\x00{index}".encode()).digest()
    value = (ms & (2**48 - 1)) << 80 | int.from_bytes(digest[:10], "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


# -- export ---------------------------------------------------------------------------------

def _actor(actor: dict[str, Any]) -> dict[str, Any]:
    return {k: actor[k] for k in ("agent_id", "model", "provider") if actor.get(k)}


def _step_of(event: dict[str, Any]) -> Step | None:
    data, kind = event["data"], event["type"]
    body: dict[str, Any]
    if kind == "MemoryCreated":
        body = {"content": data["content"], "kind": data["kind"],
                "tags": list(data.get("tags", [])), "metadata": data.get("metadata", {})}
        source = data.get("provenance", {}).get("source")
        if source is not None:
            body["source"] = source
        # Events older than the two clocks happened when they were recorded.
        body["occurred_at"] = data.get("occurred_at") or event["at"]
        thread = data.get("thread")
        if thread:
            body["thread"] = thread["id"]
            if thread.get("position") is not None:
                body["thread_position"] = thread["position"]
        op = "remember"
    elif kind == "MemoryRevised":
        op, body = "revise", {"content": data["content"], "metadata": data.get("metadata", {})}
        if data.get("reason") is not None:
            body["reason"] = data["reason"]
        if data.get("occurred_at") is not None:
            body["occurred_at"] = data["occurred_at"]
    elif kind == "MemoryTagged":
        op, body = "tag", {"add": list(data.get("added", [])),
                           "remove": list(data.get("removed", []))}
    elif kind == "MemoryMetadataChanged":
        op, body = "set_metadata", {"set": data.get("set", {}),
                                    "unset": list(data.get("unset", []))}
    elif kind == "MemoryBranched":
        op, body = "branch", {"branch": data["branch"], "from_version": data["from_version_id"]}
    elif kind == "MemoryCommitted":
        op, body = "commit", {"branch": data["branch"], "content": data["content"],
                              "metadata": data.get("metadata", {})}
        if data.get("occurred_at") is not None:
            body["occurred_at"] = data["occurred_at"]
    elif kind == "MemoryMerged":
        body = {"into": data["branch"], "strategy": data["strategy"]}
        if data.get("merged_branch"):
            body["from"] = data["merged_branch"]
        else:
            body["from_versions"] = list(data["parent_ids"][1:])
        op = "merge"
    elif kind == "MemoryReverted":
        op, body = "revert", {"branch": data["branch"], "to_version": data["reverted_to"]}
    else:
        return None  # links are exported from the view; other events re-create nothing
    return Step(op=op, body=body, actor=_actor(event["actor"]),
                version_id=data.get("version_id"),
                recorded=Recorded(principal=event["actor"].get("principal"), at=event["at"],
                                  seq=event["seq"]))


async def export_lines(client: AsyncMnemos, ns: str) -> AsyncIterator[bytes]:
    """Every served memory of ``ns`` as one JSON line, oldest first."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.list(ns=ns, limit=200, cursor=cursor)
        ids += [m.memory_id for m in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    for memory_id in reversed(ids):
        history = msgspec.to_builtins(await client.history(ns=ns, memory_id=memory_id))
        view = await client.get(ns=ns, memory_id=memory_id)
        steps = [s for s in map(_step_of, history["events"]) if s is not None]
        links = [Link(target=link.target_memory_id, relation=link.relation)
                 for link in view.links]
        yield _ENCODER.encode(Line(id=memory_id, steps=steps, links=links)) + b"\n"


# -- import ---------------------------------------------------------------------------------

@dataclass
class ImportReport:
    """What an import did."""

    memories: int = 0
    commands: int = 0
    duplicates: int = 0
    last_seq: int = 0
    ids: dict[str, str] = field(default_factory=dict)
    """Line id -> memory id in the target namespace."""


def _renamed(body: dict[str, Any], versions: dict[str, str]) -> dict[str, Any]:
    # version ids include the memory id: references to earlier versions follow the import
    out = dict(body)
    for key in ("from_version", "to_version"):
        if isinstance(out.get(key), str):
            out[key] = versions.get(out[key], out[key])
    if isinstance(out.get("from_versions"), list):
        out["from_versions"] = [versions.get(v, v) for v in out["from_versions"]]
    return out


async def _replay(client: AsyncMnemos, ns: str, line: Line, report: ImportReport) -> None:
    memory_id: str | None = None
    versions: dict[str, str] = {}
    for index, step in enumerate(line.steps):
        at = step.recorded.at if step.recorded else None
        body = {**_renamed(step.body, versions),
                "command_id": step_command_id(ns, line.id, index, at)}
        if step.actor:
            body["actor"] = step.actor
        if memory_id is not None:
            body["memory_id"] = memory_id
        elif step.op != "remember":
            raise InvalidInput(f"memory {line.id}: the first step must be remember",
                               line_id=line.id)
        result = await client.call(step.op, ns=ns, **body)
        memory_id = result.memory_id
        if step.version_id is not None and result.version_id is not None:
            versions[step.version_id] = result.version_id
        report.commands += 1
        report.duplicates += int(result.duplicate)
        report.last_seq = max(report.last_seq, result.seq)
    if memory_id is not None:
        report.ids[line.id] = memory_id
        report.memories += 1


async def _link(client: AsyncMnemos, ns: str, line: Line, report: ImportReport) -> None:
    source = report.ids[line.id]
    for index, link in enumerate(line.links):
        target = report.ids.get(link.target)
        if target is None:
            raise InvalidInput(f"memory {line.id} links to {link.target}, which is not in the "
                               "import", line_id=line.id, target=link.target)
        result = await client.call(
            "link", ns=ns, memory_id=source, target_memory_id=target, relation=link.relation,
            command_id=step_command_id(ns, line.id, 100_000 + index, None))
        report.commands += 1
        report.duplicates += int(result.duplicate)
        report.last_seq = max(report.last_seq, result.seq)


async def import_lines(client: AsyncMnemos, ns: str, lines: Iterable[Line], *,
                       inflight: int = 64, on_memory: Any = None) -> ImportReport:
    """Replay ``lines`` into ``ns`` (``inflight`` memories at a time), then their links."""
    report = ImportReport()
    gate = asyncio.Semaphore(inflight)
    todo = list(lines)

    async def one(line: Line) -> None:
        async with gate:
            await _replay(client, ns, line, report)
            if on_memory is not None:
                on_memory()

    await asyncio.gather(*(one(line) for line in todo))
    for line in todo:
        if line.links:
            await _link(client, ns, line, report)
    return report


async def wait_projected(client: AsyncMnemos, ns: str, report: ImportReport,
                         timeout_s: float = 3600.0) -> None:
    """Block until the read models include the import's last write (read-your-writes)."""
    if not report.ids:
        return
    any_id = next(iter(report.ids.values()))
    deadline = asyncio.get_running_loop().time() + timeout_s
    patient, client.retry = client.retry, RetryPolicy(attempts=1)  # the loop below retries
    try:
        while True:
            try:
                await client.get(ns=ns, memory_id=any_id, after_seq=report.last_seq)
                return
            except Unavailable:  # the gateway's bounded wait ran out: ask again at once
                if asyncio.get_running_loop().time() > deadline:
                    raise
    finally:
        client.retry = patient
