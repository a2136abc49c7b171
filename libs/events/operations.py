"""The catalog of every command and query: one row per operation, read by every transport.

A row names the operation's request and reply structs, its HTTP routes, the scope it needs, the
service that answers it and how an agent should treat it (MCP annotations). The gateway
generates its HTTP routes, its NATS subjects (``mnemos.cmd.<ns>.<name>`` for commands,
``mnemos.qry.<ns>.<name>`` for queries) and the OpenAPI document from this table, and binds one
handler per row; clients (the SDK, MCP tools) are generated from it too. Adding an operation is
one struct, one handler and one row here.

HTTP paths: ``{ns}`` is the namespace; other ``{name}`` segments are fields of the request,
filled from the path (a body may not disagree). GET routes take the remaining fields from the
query string under their wire names, POST routes from a JSON body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import msgspec

from libs.events.audit import AuditStatus, AuditStatusRequest, AuditVerifyRequest, VerifyReport
from libs.events.commands import COMMANDS, CommandResult
from libs.events.context import AssembleContext, ContextView, GetReceipts, ReceiptsView
from libs.events.queries import (
    CountMemories,
    GetBranches,
    GetCommonAncestor,
    GetDiff,
    GetHistory,
    GetLog,
    GetMemory,
    GetThread,
    GetVersion,
    ListMemories,
    Search,
)
from libs.events.reasoning import (
    Consult,
    ConsultResult,
    ListModels,
    ModelsView,
    RouteQuery,
    RouteView,
    SyncRegistry,
    SyncReport,
)
from libs.events.security import (
    CreateKey,
    KeyCreated,
    KeyList,
    KeyRevoked,
    ListKeys,
    RevokeKey,
    Scope,
)
from libs.events.views import (
    AncestorView,
    BranchesView,
    DagVersionView,
    DiffView,
    HistoryView,
    LogView,
    MemoryCount,
    MemoryPage,
    MemoryView,
    SearchResults,
    ThreadView,
)

__all__ = [
    "OPERATIONS",
    "Kind",
    "Operation",
    "Route",
    "operation",
    "path_fields",
]

Kind = Literal["command", "query"]
Method = Literal["GET", "POST"]

_PATH_FIELD: Final = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route of an operation; ``status`` is the success status."""

    method: Method
    path: str
    status: int = 200


@dataclass(frozen=True, slots=True)
class Operation:
    """One command or query of the contract.

    ``owner`` is the service that answers it (``gateway`` for the read models and commands; the
    gateway forwards the others over ``mnemos.svc.<owner>.<name>``). ``namespace`` fixes the
    namespace of operations outside tenants' (the audit chain lives in ``system``).
    ``read_only``, ``destructive``, ``idempotent`` and ``open_world`` are what an agent may
    assume (MCP tool annotations); ``streams`` marks replies preceded by progress messages.
    """

    name: str
    kind: Kind
    request: type[msgspec.Struct]
    reply: type[msgspec.Struct]
    summary: str
    routes: tuple[Route, ...]
    scope: Scope
    owner: str = "gateway"
    namespace: str | None = None
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = True
    streams: bool = False
    open_world: bool = False
    """Reaches outside Mnemos (e.g. LLM providers): the MCP ``openWorldHint``."""

    @property
    def subject_prefix(self) -> str:
        """``mnemos.cmd`` or ``mnemos.qry``: where agents send this operation."""
        return "mnemos.cmd" if self.kind == "command" else "mnemos.qry"


def path_fields(path: str) -> tuple[str, ...]:
    """The request fields a route path fills (every ``{name}`` but ``{ns}``)."""
    return tuple(name for name in _PATH_FIELD.findall(path) if name != "ns")


_MEMORY: Final = "/v1/{ns}/memories/{memory_id}"


def _command(name: str, summary: str, alias: str | None, *, destructive: bool = False,
             idempotent: bool = True, created: bool = False) -> Operation:
    routes = [Route("POST", f"/v1/{{ns}}/commands/{name}", 201 if created else 200)]
    if alias is not None:
        routes.append(Route("POST", alias, 201 if created else 200))
    return Operation(name=name, kind="command", request=COMMANDS[name], reply=CommandResult,
                     summary=summary, routes=tuple(routes), scope=Scope.WRITE,
                     destructive=destructive, idempotent=idempotent)


def _query(name: str, request: type[msgspec.Struct], reply: type[msgspec.Struct], summary: str,
           *routes: Route) -> Operation:
    return Operation(name=name, kind="query", request=request, reply=reply, summary=summary,
                     routes=tuple(routes), scope=Scope.READ, read_only=True)


_ROWS: Final[tuple[Operation, ...]] = (
    _command("remember", "Create a memory; 201 with the command result.", "/v1/{ns}/memories",
             idempotent=False, created=True),
    _command("revise", "A new version of the memory's content; history is kept.",
             f"{_MEMORY}/revise"),
    _command("tag", "Add and/or remove tags.", f"{_MEMORY}/tag"),
    _command("set_metadata", "Set and/or unset metadata keys.", f"{_MEMORY}/metadata"),
    _command("link", "Point the memory at another memory with a named relation.",
             f"{_MEMORY}/link"),
    _command("forget", "Stop serving the memory (its events stay in the stream for audit).",
             f"{_MEMORY}/forget", destructive=True),
    _command("branch", "Create a named branch at a version.", f"{_MEMORY}/branch"),
    _command("commit", "Commit a new version onto a branch.", f"{_MEMORY}/commit",
             idempotent=False),
    _command("merge", "Merge branches or versions into a branch (conflicts are answered, never "
             "dropped).", f"{_MEMORY}/merge", idempotent=False),
    _command("revert", "A new version whose content equals an older version's.",
             f"{_MEMORY}/revert", idempotent=False),
    _query("get", GetMemory, MemoryView,
           "One memory with provenance (creator, last updater, source, causing command) and "
           "links.", Route("GET", _MEMORY)),
    _query("list", ListMemories, MemoryPage,
           "Memories newest first, filtered by all given tags, kind, agent and creation time.",
           Route("GET", "/v1/{ns}/memories")),
    _query("count", CountMemories, MemoryCount,
           "How many live memories match the filters (the same filters as list).",
           Route("GET", "/v1/{ns}/count")),
    _query("history", GetHistory, HistoryView, "The memory's versions and events in stream order.",
           Route("GET", f"{_MEMORY}/history")),
    _query("search", Search, SearchResults,
           "Hybrid search: dense (pgvector HNSW) and lexical (BM25 over full text), fused.",
           Route("GET", "/v1/{ns}/search"), Route("POST", "/v1/{ns}/search")),
    _query("thread", GetThread, ThreadView,
           "A thread's memories (a conversation's turns) in order, paginated by position.",
           Route("GET", "/v1/{ns}/threads")),
    _query("log", GetLog, LogView,
           "Versions reachable from a ref (branch or version), newest first, paginated.",
           Route("GET", f"{_MEMORY}/log")),
    _query("branches", GetBranches, BranchesView, "Every branch with its head.",
           Route("GET", f"{_MEMORY}/branches")),
    _query("version", GetVersion, DagVersionView,
           "One version (by id, or a branch's head) with content and provenance.",
           Route("GET", f"{_MEMORY}/versions/{{ref}}")),
    _query("diff", GetDiff, DiffView, "Line diff (typed hunks and unified text) between refs.",
           Route("GET", f"{_MEMORY}/diff")),
    _query("common_ancestor", GetCommonAncestor, AncestorView,
           "The merge base of two refs and all their lowest common ancestors.",
           Route("GET", f"{_MEMORY}/common_ancestor")),
    Operation(name="create_key", kind="command", request=CreateKey, reply=KeyCreated,
              summary="Issue an API key with scopes on namespaces; the key is shown once.",
              routes=(Route("POST", "/v1/keys", 201),), scope=Scope.ADMIN, namespace="system",
              idempotent=False),
    Operation(name="revoke_key", kind="command", request=RevokeKey, reply=KeyRevoked,
              summary="Revoke an API key (effective on every gateway within seconds).",
              routes=(Route("POST", "/v1/keys/{key_id}/revoke"),), scope=Scope.ADMIN,
              namespace="system", destructive=True),
    Operation(name="list_keys", kind="query", request=ListKeys, reply=KeyList,
              summary="Every API key, without secrets.", routes=(Route("GET", "/v1/keys"),),
              scope=Scope.ADMIN, namespace="system", read_only=True),
    Operation(name="audit_status", kind="query", request=AuditStatusRequest, reply=AuditStatus,
              summary="Chain head, lag behind the stream, latest checkpoint, last verification.",
              routes=(Route("GET", "/v1/audit/status"),), scope=Scope.AUDIT, owner="auditor",
              namespace="system", read_only=True),
    Operation(name="audit_verify", kind="query", request=AuditVerifyRequest, reply=VerifyReport,
              summary="Recompute the hash chain from the stream and compare it with the stored "
              "chain and every read model; with progress=true, NDJSON progress lines first.",
              routes=(Route("GET", "/v1/audit/verify"),), scope=Scope.AUDIT, owner="auditor",
              namespace="system", read_only=True, streams=True),
    # compression (answered by the compressor service)
    Operation(name="receipts", kind="query", request=GetReceipts, reply=ReceiptsView,
              summary="The memory's compressions with their receipts, oldest first (the "
              "original is what get returns).", routes=(Route("GET", f"{_MEMORY}/receipts"),),
              scope=Scope.READ, owner="compressor", read_only=True),
    Operation(name="context", kind="query", request=AssembleContext, reply=ContextView,
              summary="Context for a task and purpose within a token budget: relevant memories, "
              "each in the cheapest form safe for the purpose, with receipts and what was left "
              "out.", routes=(Route("POST", "/v1/{ns}/context"),), scope=Scope.READ,
              owner="compressor", read_only=True),
    # the reasoning layer (design section 7)
    _query("models", ListModels, ModelsView,
           "The model registry (filters: provider, family, capability, liveness; key = one "
           "model's record with each field's source) and every provider's last sync.",
           Route("GET", "/v1/{ns}/models")),
    Operation(name="route", kind="query", request=RouteQuery, reply=RouteView,
              summary="Explain a routing decision: hard filters, then the profile's score; "
              "candidates best first (the failover order).",
              routes=(Route("GET", "/v1/{ns}/route"),),
              scope=Scope.READ, owner="registry_sync", read_only=True),
    Operation(name="consult", kind="command", request=Consult, reply=ConsultResult,
              summary="Ask several routed models of different families (with the namespace's "
              "memory context) and reach consensus by content; every step is an event.",
              routes=(Route("POST", "/v1/{ns}/consult"),), scope=Scope.WRITE,
              owner="registry_sync", idempotent=False, open_world=True),
    Operation(name="registry_sync", kind="command", request=SyncRegistry, reply=SyncReport,
              summary="Sync the providers and/or the leaderboard now (admin).",
              routes=(Route("POST", "/v1/registry/sync"),), scope=Scope.ADMIN,
              owner="registry_sync", namespace="system", idempotent=False),
)

OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType({op.name: op for op in _ROWS})
"""Every operation by name (the last token of its NATS subject)."""


def operation(name: str, kind: Kind) -> Operation | None:
    """The operation called ``name`` of this kind, if there is one."""
    found = OPERATIONS.get(name)
    return found if found is not None and found.kind == kind else None
