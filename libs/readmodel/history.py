"""Reading the version DAG of memories (``memory_versions``, ``memory_branches``).

The rules of :mod:`libs.readmodel.memories` hold here too: every statement is scoped by
``ns = %(ns)s`` and nothing of a memory is served unless it is live in that namespace (unknown,
forgotten, diverged and other-namespace memories are all :class:`NotFound` or
:class:`DeadLettered`).
"""

from __future__ import annotations

from typing import Any, Final

from libs.events import NotFound
from libs.readmodel.memories import raise_if_dead_lettered
from libs.readmodel.pool import Conn

__all__ = [
    "branch_rows",
    "log_rows",
    "require_live",
    "resolve_ref",
    "version_nodes",
    "version_rows",
]

_VERSION_COLUMNS: Final = (
    "version_id, parent_ids, content, content_hash, metadata, origin, branch, strategy,"
    " base_version_id, reverted_to, actor, command_id, event_id, seq, created_at"
)


async def require_live(conn: Conn, ns: str, memory_id: str) -> None:
    """Return if the memory is served; raise :class:`NotFound` (or :class:`DeadLettered`)."""
    cur = await conn.execute(
        "SELECT 1 FROM memories WHERE ns = %(ns)s AND memory_id = %(id)s"
        " AND forgotten_at IS NULL AND diverged_seq IS NULL", {"ns": ns, "id": memory_id},
    )
    if await cur.fetchone() is None:
        await raise_if_dead_lettered(conn, ns, memory_id)
        raise NotFound(f"memory {memory_id} not found", memory_id=memory_id)


async def resolve_ref(conn: Conn, ns: str, memory_id: str, ref: str) -> str:
    """The version a ref names: a branch's head, else a version id of this memory."""
    params = {"ns": ns, "id": memory_id, "ref": ref}
    cur = await conn.execute(
        "SELECT head_version_id FROM memory_branches WHERE ns = %(ns)s AND memory_id = %(id)s"
        " AND branch = %(ref)s", params,
    )
    row = await cur.fetchone()
    if row is not None:
        return str(row["head_version_id"])
    cur = await conn.execute(
        "SELECT 1 FROM memory_versions WHERE ns = %(ns)s AND memory_id = %(id)s"
        " AND version_id = %(ref)s", params,
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no branch or version {ref} in memory {memory_id}", ref=ref)
    return ref


async def version_nodes(conn: Conn, ns: str, memory_id: str, after_seq: int
                        ) -> list[tuple[str, tuple[str, ...], int]]:
    """``(version_id, parent_ids, seq)`` of the memory's versions projected after ``after_seq``,
    in stream order (a cached graph catches up with these)."""
    cur = await conn.execute(
        "SELECT version_id, parent_ids, seq FROM memory_versions WHERE ns = %(ns)s"
        " AND memory_id = %(id)s AND seq > %(after)s ORDER BY seq",
        {"ns": ns, "id": memory_id, "after": after_seq},
    )
    return [(str(r["version_id"]), tuple(r["parent_ids"]), int(r["seq"]))
            for r in await cur.fetchall()]


async def log_rows(conn: Conn, ns: str, memory_id: str, ids: list[str]
                   ) -> dict[str, dict[str, Any]]:
    """The log columns of the versions ``ids``, by version id."""
    cur = await conn.execute(
        "SELECT version_id, parent_ids, seq, origin, branch, strategy, reverted_to,"
        " content_hash, actor, created_at FROM memory_versions WHERE ns = %(ns)s"
        " AND memory_id = %(id)s AND version_id = ANY(%(ids)s)",
        {"ns": ns, "id": memory_id, "ids": ids},
    )
    return {row["version_id"]: {**row, "parent_ids": list(row["parent_ids"])}
            for row in await cur.fetchall()}


async def branch_rows(conn: Conn, ns: str, memory_id: str) -> list[dict[str, Any]]:
    """Every branch of the memory with its head, by name (byte order)."""
    cur = await conn.execute(
        "SELECT branch, head_version_id, from_version_id, created_seq, updated_seq,"
        " updated_at FROM memory_branches WHERE ns = %(ns)s AND memory_id = %(id)s"
        ' ORDER BY branch COLLATE "C"', {"ns": ns, "id": memory_id},
    )
    return [dict(row) for row in await cur.fetchall()]


async def version_rows(conn: Conn, ns: str, memory_id: str, ids: list[str]
                       ) -> dict[str, dict[str, Any]]:
    """Whole versions (content and provenance) ``ids``, by version id."""
    cur = await conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM memory_versions WHERE ns = %(ns)s"
        " AND memory_id = %(id)s AND version_id = ANY(%(ids)s)",
        {"ns": ns, "id": memory_id, "ids": ids},
    )
    return {row["version_id"]: {**row, "parent_ids": list(row["parent_ids"])}
            for row in await cur.fetchall()}
