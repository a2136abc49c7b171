"""The HTTP entrypoint (FastAPI): commands, queries, health, readiness and metrics.

Command bodies are the same JSON as on NATS and go through the same handler; request and
response schemas in the OpenAPI document are generated from the msgspec structs of the contract.
Every error is ``{"error": {code, message, detail}}`` with the status of its error class.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.events import (
    COMMANDS,
    CommandResult,
    GetHistory,
    GetMemory,
    HistoryView,
    InvalidInput,
    ListMemories,
    MemoryPage,
    MemoryView,
    MnemosError,
    NotFound,
    PayloadTooLarge,
    Search,
    SearchMode,
    SearchResults,
)
from libs.events.codec import convert_params, decode_json
from libs.runtime.logging import get_logger
from services.command.application.commands import CommandService
from services.command.application.queries import QueryService, decode_request
from services.command.entrypoints.http_history import DAG_VIEW_TYPES, install_dag_routes

__all__ = ["PRINCIPAL_HEADER", "create_app"]

log = get_logger(__name__)

PRINCIPAL_HEADER: Final = "X-Mnemos-Principal"
"""Header naming the caller (set by an authenticating proxy); default ``anonymous``."""

ALIASES: Final = {"revise": "revise", "tag": "tag", "metadata": "set_metadata",
                  "link": "link", "forget": "forget", "branch": "branch", "commit": "commit",
                  "merge": "merge", "revert": "revert"}
"""``POST /v1/{ns}/memories/{id}/<alias>`` -> command name (memory_id comes from the path)."""

Readiness = Callable[[], Awaitable[dict[str, bool]]]


class ErrorBody(msgspec.Struct, frozen=True):
    """A typed error: stable ``code``, human ``message``, structured ``detail``."""

    code: str
    message: str
    detail: dict[str, Any]


class ErrorReply(msgspec.Struct, frozen=True):
    """Body of every non-2xx answer."""

    error: ErrorBody


def _json(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status,
                    media_type="application/json")


def _error(exc: MnemosError) -> Response:
    return _json({"error": exc.to_dict()}, exc.http_status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _with_memory_id(body: bytes, memory_id: str) -> bytes:
    """The command body with ``memory_id`` taken from the path (a different one is refused)."""
    obj = decode_json(body or b"{}", dict[str, Any], "command body")
    if not isinstance(obj, dict):
        raise InvalidInput("the body must be a JSON object")
    if obj.get("memory_id", memory_id) != memory_id:
        raise InvalidInput("memory_id in the body differs from the path", field="memory_id")
    obj["memory_id"] = memory_id
    return msgspec.json.encode(obj)


def _convert(cls: type[msgspec.Struct], values: dict[str, Any]) -> Any:
    return convert_params({k: v for k, v in values.items() if v is not None}, cls)


# --- OpenAPI ------------------------------------------------------------------------------------

_SCHEMA_TYPES: Final[list[Any]] = [
    *COMMANDS.values(), CommandResult, ErrorReply, MemoryView, MemoryPage, HistoryView,
    SearchResults, Search, *DAG_VIEW_TYPES,
]


def _components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _SCHEMA_TYPES, ref_template="#/components/schemas/{name}"
    )
    for name in ALIASES.values():
        body = copy.deepcopy(components[COMMANDS[name].__name__])
        body["properties"].pop("memory_id", None)
        body["required"] = [f for f in body.get("required", []) if f != "memory_id"]
        body["title"] = f"{COMMANDS[name].__name__}Body"
        components[body["title"]] = body
    return components


def _ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": _ref(name)}}


def _responses(ok: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {
        status: {"description": "OK", "content": _ref(ok)},
    }
    for code, text in (
        (400, "invalid input"), (404, "unknown memory or command"), (409, "conflict"),
        (413, "payload too large"), (503, "unavailable (retry)"),
    ):
        answers[code] = {"description": text, "content": _ref("ErrorReply")}
    return answers


# --- app ----------------------------------------------------------------------------------------


def create_app(commands: CommandService, queries: QueryService, max_request_bytes: int,
               readiness: Readiness) -> FastAPI:
    """The gateway's ASGI application."""
    app = FastAPI(title="Mnemos gateway", version="1", openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None,
                  description="Commands and queries of Mnemos, a memory OS for AI agents.")
    _install_error_handlers(app)
    _install_command_routes(app, commands, max_request_bytes)
    _install_query_routes(app, queries, max_request_bytes)
    install_dag_routes(app, queries.dag, _responses)
    _install_operations_routes(app, readiness)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            # FastAPI's 422 never reaches a client: validation errors are answered as 400.
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas.update(_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MnemosError)
    async def mnemos_error(request: Request, exc: MnemosError) -> Response:
        if exc.http_status >= 500:
            log.warning("http_request_failed", path=request.url.path, code=exc.code,
                        error=exc.message)
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg"))}
            for err in exc.errors()
        ]
        return _error(InvalidInput("invalid request parameters", errors=problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(NotFound(f"no route {request.url.path}"))
        err = MnemosError(str(exc.detail))
        return _json({"error": {**err.to_dict(), "code": "http_error"}}, exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("http_request_crashed", path=request.url.path, exc_info=exc)
        return _error(MnemosError("internal error; see the gateway log"))


def _install_command_routes(app: FastAPI, service: CommandService, limit: int) -> None:
    async def run(request: Request, ns: str, name: str, body: bytes) -> Response:
        result = await service.handle(ns, name, body, request.headers.get(PRINCIPAL_HEADER))
        created = result.event_type == "MemoryCreated" and not result.duplicate
        return _json(result, 201 if created else 200)

    @app.post("/v1/{ns}/commands/{name}", tags=["commands"], responses=_responses("CommandResult"),
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"oneOf": [{"$ref": f"#/components/schemas/{cls.__name__}"}
                                       for cls in COMMANDS.values()]}}}}})
    async def command(request: Request, ns: str, name: str) -> Response:
        """Any command by name (remember, revise, tag, set_metadata, link, forget)."""
        return await run(request, ns, name, await _read_body(request, limit))

    @app.post("/v1/{ns}/memories", tags=["commands"], status_code=201,
              responses=_responses("CommandResult", 201),
              openapi_extra=_body("Remember"))
    async def remember(request: Request, ns: str) -> Response:
        """Create a memory (``remember``); 201 with the command result."""
        return await run(request, ns, "remember", await _read_body(request, limit))

    def alias_route(alias: str, name: str) -> None:
        async def endpoint(request: Request, ns: str, memory_id: str) -> Response:
            body = _with_memory_id(await _read_body(request, limit), memory_id)
            return await run(request, ns, name, body)

        endpoint.__doc__ = f"The ``{name}`` command on the memory in the path."
        app.post(f"/v1/{{ns}}/memories/{{memory_id}}/{alias}", tags=["commands"],
                 name=f"{name}_memory", responses=_responses("CommandResult"),
                 openapi_extra=_body(f"{COMMANDS[name].__name__}Body"))(endpoint)

    for alias, name in ALIASES.items():
        alias_route(alias, name)


Tags = Annotated[list[str] | None, Query(alias="tag", description="Required tag (repeatable)")]
Seq = Annotated[int | None, Query(ge=0, description="Wait until projected up to this seq")]


def _install_query_routes(app: FastAPI, service: QueryService, limit: int) -> None:
    @app.get("/v1/{ns}/memories/{memory_id}", tags=["queries"], responses=_responses("MemoryView"))
    async def get_memory(ns: str, memory_id: str, after_seq: Seq = None) -> Response:
        """One memory with provenance (creator, last updater, source, causing command) and links."""
        request = _convert(GetMemory, {"memory_id": memory_id, "after_seq": after_seq})
        return _json(await service.get(ns, request))

    @app.get("/v1/{ns}/memories", tags=["queries"], responses=_responses("MemoryPage"))
    async def list_memories(
        ns: str, tag: Tags = None, kind: str | None = None, agent: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
        after_seq: Seq = None,
    ) -> Response:
        """Memories newest first, filtered by all given tags, kind, agent and creation time."""
        request = _convert(ListMemories, {
            "tags": tag or [], "kind": kind, "agent_id": agent, "since": since, "until": until,
            "limit": limit, "cursor": cursor, "after_seq": after_seq,
        })
        return _json(await service.list_memories(ns, request))

    @app.get("/v1/{ns}/memories/{memory_id}/history", tags=["queries"],
             responses=_responses("HistoryView"))
    async def get_history(ns: str, memory_id: str, after_seq: Seq = None) -> Response:
        """The memory's versions and events in stream order."""
        request = _convert(GetHistory, {"memory_id": memory_id, "after_seq": after_seq})
        return _json(await service.history(ns, request))

    @app.get("/v1/{ns}/search", tags=["queries"], responses=_responses("SearchResults"))
    async def search_get(
        ns: str, q: str, k: Annotated[int, Query(ge=1, le=100)] = 10, mode: SearchMode = "hybrid",
        tag: Tags = None, kind: str | None = None, agent: str | None = None,
        since: datetime | None = None, until: datetime | None = None, after_seq: Seq = None,
    ) -> Response:
        """Hybrid search: dense (pgvector HNSW) + lexical (BM25 over FTS), fused by RRF."""
        request = _convert(Search, {
            "q": q, "k": k, "mode": mode, "tags": tag or [], "kind": kind, "agent_id": agent,
            "since": since, "until": until, "after_seq": after_seq,
        })
        return _json(await service.search(ns, request))

    @app.post("/v1/{ns}/search", tags=["queries"], responses=_responses("SearchResults"),
              openapi_extra=_body("Search"))
    async def search_post(request: Request, ns: str) -> Response:
        """The same search with a JSON body (fields of ``Search``)."""
        body = await _read_body(request, limit)
        return _json(await service.search(ns, decode_request(Search, body)))


def _install_operations_routes(app: FastAPI, readiness: Readiness) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"ok": True})

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """Readiness: NATS connected and the read-model database reachable."""
        checks = await readiness()
        ready = all(checks.values())
        return _json({"ready": ready, **checks}, 200 if ready else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
