"""Commands agents send (over NATS request-reply or HTTP) and the replies they get.

Commands are requests to change state; the gateway validates them, decides, and appends events.
The wire form is JSON; unknown fields are rejected so typos fail loudly.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from libs.events.codec import decode_json
from libs.events.errors import UnknownCommand
from libs.events.fields import (
    Instant,
    KindName,
    MemoryId,
    RelationName,
    Seq,
    ShortText,
    TagName,
    ThreadId,
    ThreadPosition,
)
from libs.events.model import MetadataValue

__all__ = [
    "COMMANDS",
    "Branch",
    "CommandActor",
    "CommandBase",
    "CommandResult",
    "Commit",
    "Forget",
    "Link",
    "Merge",
    "Remember",
    "Revert",
    "Revise",
    "SetMetadata",
    "Tag",
    "decode_command",
]

BranchName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")]
VersionId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
MergeStrategy = Literal["ours", "theirs", "three_way"]


class CommandActor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The agent side of provenance; the principal comes from the transport, not the body."""

    agent_id: ShortText | None = None
    model: ShortText | None = None
    provider: ShortText | None = None


class CommandBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every command may carry.

    ``command_id`` (UUIDv7) makes retries safe; the gateway generates one when absent.
    ``correlation_id`` groups the work of one conversation or request; defaults to the command id.
    """

    command_id: str | None = None
    correlation_id: ShortText | None = None
    actor: CommandActor = CommandActor()


class Remember(CommandBase, frozen=True, kw_only=True):
    """Create a memory.

    ``occurred_at`` is when what it says happened (default: now, the recording time);
    ``thread`` names the conversation or session it is a turn of, ``thread_position`` its place
    there (default: the order the turns are recorded in).
    """

    content: str
    kind: KindName = "note"
    tags: tuple[TagName, ...] = ()
    metadata: dict[str, MetadataValue] = {}
    source: ShortText | None = None
    occurred_at: Instant | None = None
    thread: ThreadId | None = None
    thread_position: ThreadPosition | None = None


class Revise(CommandBase, frozen=True, kw_only=True):
    """Replace a memory's content with a new version whose parent is the current head."""

    memory_id: MemoryId
    content: str
    expected_version: Seq | None = None
    metadata: dict[str, MetadataValue] | None = None
    reason: ShortText | None = None
    occurred_at: Instant | None = None
    """A new time of occurrence (absent: the memory keeps its own)."""


class Tag(CommandBase, frozen=True, kw_only=True):
    """Add and/or remove tags."""

    memory_id: MemoryId
    add: tuple[TagName, ...] = ()
    remove: tuple[TagName, ...] = ()
    expected_version: Seq | None = None


class SetMetadata(CommandBase, frozen=True, kw_only=True):
    """Set and/or unset metadata keys."""

    memory_id: MemoryId
    set: dict[str, MetadataValue] = {}
    unset: tuple[str, ...] = ()
    expected_version: Seq | None = None


class Link(CommandBase, frozen=True, kw_only=True):
    """Point a memory at another memory of the same namespace with a named relation."""

    memory_id: MemoryId
    target_memory_id: MemoryId
    relation: RelationName = "related"
    expected_version: Seq | None = None


class Forget(CommandBase, frozen=True, kw_only=True):
    """Stop serving a memory; its history stays in the stream."""

    memory_id: MemoryId
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    expected_version: Seq | None = None


class Branch(CommandBase, frozen=True, kw_only=True):
    """Create branch ``branch`` at ``from_version`` (default: the head of ``main``)."""

    memory_id: MemoryId
    branch: BranchName
    from_version: VersionId | None = None
    expected_version: Seq | None = None


class Commit(CommandBase, frozen=True, kw_only=True):
    """A new version on ``branch`` whose parent is its head; ``expected_head`` guards the head."""

    memory_id: MemoryId
    branch: BranchName
    content: str
    metadata: dict[str, MetadataValue] | None = None
    expected_head: VersionId | None = None
    occurred_at: Instant | None = None
    """A new time of occurrence (absent: the memory keeps its own); only a commit onto ``main``
    may carry one, as only it moves the memory."""


class Merge(CommandBase, frozen=True, kw_only=True):
    """Merge into branch ``into`` the head of branch ``from_branch`` or the versions
    ``from_versions``; the head of ``into`` is the first parent (``ours``)."""

    memory_id: MemoryId
    into: BranchName
    from_branch: BranchName | None = msgspec.field(default=None, name="from")
    from_versions: tuple[VersionId, ...] = ()
    strategy: MergeStrategy = "three_way"
    expected_head: VersionId | None = None


class Revert(CommandBase, frozen=True, kw_only=True):
    """A new version on ``branch`` (default ``main``) with the content of ``to_version``."""

    memory_id: MemoryId
    branch: BranchName = "main"
    to_version: VersionId
    expected_head: VersionId | None = None


COMMANDS: Final[dict[str, type[CommandBase]]] = {
    "remember": Remember,
    "revise": Revise,
    "tag": Tag,
    "set_metadata": SetMetadata,
    "link": Link,
    "forget": Forget,
    "branch": Branch,
    "commit": Commit,
    "merge": Merge,
    "revert": Revert,
}
"""Command name (last subject token, HTTP path segment) to its struct."""


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a successful command answers.

    ``seq`` is the event's stream sequence (pass it as ``after_seq`` for read-your-writes);
    ``revision`` is the memory's new version for optimistic concurrency (``expected_version``).
    ``duplicate`` is true when this answers a repeated ``command_id`` and nothing was appended.
    """

    command_id: str
    event_id: str
    event_type: str
    memory_id: MemoryId
    version_id: str | None
    seq: int
    revision: int
    duplicate: bool = False


def decode_command(name: str, body: bytes) -> CommandBase:
    """Decode and validate a command body for command ``name``."""
    cls = COMMANDS.get(name)
    if cls is None:
        raise UnknownCommand(f"unknown command {name!r}", known=sorted(COMMANDS))
    return decode_json(body, cls, f"{name} command")
