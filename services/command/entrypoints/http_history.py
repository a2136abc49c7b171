"""HTTP routes of the version-DAG queries (the commands use the generic command routes).

``GET /v1/{ns}/memories/{memory_id}/log|branches|versions/{ref}|diff|common_ancestor`` answer the
structs of :mod:`services.command.dag_views`, exactly as the NATS queries of the same names do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec
from fastapi import FastAPI, Query
from fastapi.responses import Response

from libs.events import (
    AncestorView,
    BranchesView,
    DagVersionView,
    DiffView,
    GetBranches,
    GetCommonAncestor,
    GetDiff,
    GetLog,
    GetVersion,
    LogView,
)
from libs.events.codec import convert_params
from services.command.application.history import DagQueryService

__all__ = ["DAG_VIEW_TYPES", "install_dag_routes"]

DAG_VIEW_TYPES: Final[list[type[msgspec.Struct]]] = [
    LogView, BranchesView, DagVersionView, DiffView, AncestorView,
]
"""Answer types of these routes, for the OpenAPI components."""

Responses = Callable[[str], dict[int | str, dict[str, Any]]]

Seq = Annotated[int | None, Query(ge=0, description="Wait until projected up to this seq")]
Ref = Annotated[str, Query(description="A branch name (its head) or a version id")]


def _json(value: object) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


def _convert(cls: type[msgspec.Struct], values: dict[str, Any]) -> Any:
    return convert_params({k: v for k, v in values.items() if v is not None}, cls)


def install_dag_routes(app: FastAPI, service: DagQueryService, responses: Responses) -> None:
    """Add the DAG query routes to the gateway's app (``responses(name)``: OpenAPI answers)."""
    base = "/v1/{ns}/memories/{memory_id}"

    @app.get(f"{base}/log", tags=["history"], responses=responses("LogView"))
    async def log(ns: str, memory_id: str, ref: str = "main",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50, cursor: str | None = None,
                  after_seq: Seq = None) -> Response:
        """Versions reachable from ``ref`` (branch or version), newest first, paginated."""
        request = _convert(GetLog, {"memory_id": memory_id, "ref": ref, "limit": limit,
                                    "cursor": cursor, "after_seq": after_seq})
        return _json(await service.log(ns, request))

    @app.get(f"{base}/branches", tags=["history"], responses=responses("BranchesView"))
    async def branches(ns: str, memory_id: str, after_seq: Seq = None) -> Response:
        """Every branch with its head."""
        request = _convert(GetBranches, {"memory_id": memory_id, "after_seq": after_seq})
        return _json(await service.branches(ns, request))

    @app.get(f"{base}/versions/{{ref}}", tags=["history"], responses=responses("DagVersionView"))
    async def version(ns: str, memory_id: str, ref: str, after_seq: Seq = None) -> Response:
        """One version (by id, or a branch's head) with content and provenance."""
        request = _convert(GetVersion, {"memory_id": memory_id, "ref": ref,
                                        "after_seq": after_seq})
        return _json(await service.version(ns, request))

    @app.get(f"{base}/diff", tags=["history"], responses=responses("DiffView"))
    async def diff(ns: str, memory_id: str,
                   from_ref: Annotated[str, Query(alias="from")],
                   to_ref: Annotated[str, Query(alias="to")],
                   context: Annotated[int, Query(ge=0, le=100)] = 3,
                   after_seq: Seq = None) -> Response:
        """Line diff (typed hunks + unified text) from one ref to another."""
        request = _convert(GetDiff, {"memory_id": memory_id, "from_ref": from_ref,
                                     "to_ref": to_ref, "context": context,
                                     "after_seq": after_seq})
        return _json(await service.diff(ns, request))

    @app.get(f"{base}/common_ancestor", tags=["history"], responses=responses("AncestorView"))
    async def common_ancestor(ns: str, memory_id: str, a: Ref, b: Ref,
                              after_seq: Seq = None) -> Response:
        """The merge base of two refs and all their lowest common ancestors."""
        request = _convert(GetCommonAncestor, {"memory_id": memory_id, "a": a, "b": b,
                                               "after_seq": after_seq})
        return _json(await service.common_ancestor(ns, request))
