"""The HTTP entrypoint: one route per route of the operation catalog, plus health, readiness,
metrics, the OpenAPI document and its interactive docs.

Each route decodes its request once into the operation's struct (:mod:`.params`), asks the
:class:`PrincipalResolver` who is calling, and hands both to the :class:`Gateway`. Every error is
``{"error": {code, message, detail}}`` with the status of its error class, mapped once here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import msgspec
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from libs.events import (
    COMMANDS,
    OPERATIONS,
    InvalidInput,
    MnemosError,
    NotFound,
    Operation,
    UnknownCommand,
    path_fields,
)
from libs.events import Route as CatalogRoute
from libs.events.catalogue import CATALOGUE_PATH
from libs.eventstore.jetstream import broker_failure
from libs.runtime.logging import get_logger
from services.command.application.gateway import Gateway
from services.command.application.principals import PrincipalResolver
from services.command.entrypoints.openapi import GENERIC_COMMAND_PATH, openapi_document
from services.command.entrypoints.params import from_body, from_query, read_body

__all__ = ["create_app"]

log = get_logger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
Endpoint = Callable[[Request], Awaitable[Response]]
_ENCODER: Final = msgspec.json.Encoder()
TITLE: Final = "Mnemos gateway"
DESCRIPTION: Final = "Commands and queries of Mnemos, a memory OS for AI agents."
EVENT_SCHEMA_PATH: Final = "/schema/events.json"
"""The event catalogue (JSON Schema, ``libs/events/schema/events.json``)."""


def _json(value: object, status: int = 200) -> Response:
    return Response(_ENCODER.encode(value), status_code=status, media_type="application/json")


def _error(exc: MnemosError, headers: dict[str, str] | None = None) -> Response:
    response = _json({"error": exc.to_dict()}, exc.http_status)
    if headers:
        response.headers.update(headers)
    return response


class _Routes:
    """Builds the endpoint of every catalog route over one gateway and principal resolver."""

    def __init__(self, gateway: Gateway, principals: PrincipalResolver, limit: int) -> None:
        self.gateway, self.principals, self.limit = gateway, principals, limit

    async def request_of(self, op: Operation, route: CatalogRoute, request: Request) -> Any:
        path = {name: request.path_params[name] for name in path_fields(route.path)}
        if route.method == "GET":
            return from_query(op.request, request.query_params, path)
        if request.query_params:
            raise InvalidInput("POST routes take a JSON body, not query parameters")
        body = await read_body(request.stream(), request.headers.get("content-length"),
                               self.limit)
        return from_body(op.request, body, path)

    def endpoint(self, op: Operation, route: CatalogRoute) -> Endpoint:
        async def serve(request: Request) -> Response:
            ns = request.path_params.get("ns")
            principal = await self.principals.from_http(request.headers, op, ns)
            typed = await self.request_of(op, route, request)
            if op.streams and getattr(typed, "progress", False):
                stream = self.gateway.stream(principal, op, ns, typed)
                first = await anext(stream)  # a failure before any line is a plain error
                return StreamingResponse(self._ndjson(op, first, stream),
                                         media_type="application/x-ndjson")
            reply = await self.gateway.dispatch(principal, op, ns, typed)
            status = route.status
            if op.kind == "command" and getattr(reply, "duplicate", False):
                status = 200  # a repeat created nothing
            return _json(reply, status)

        serve.__name__ = f"{op.name}_endpoint"
        return serve

    @staticmethod
    async def _ndjson(op: Operation, first: tuple[bool, Any],
                      rest: AsyncIterator[tuple[bool, Any]]) -> AsyncIterator[bytes]:
        """One JSON object a line: ``{"progress": ...}`` lines, then the reply (``report`` for a
        verification) or, once lines have gone out, ``{"error": ...}``."""
        key = "report" if op.name == "audit_verify" else "result"
        final, message = first
        yield _ENCODER.encode({key if final else "progress": message}) + b"\n"
        try:
            async for final, message in rest:
                yield _ENCODER.encode({key if final else "progress": message}) + b"\n"
        except MnemosError as exc:
            yield _ENCODER.encode({"error": exc.to_dict()}) + b"\n"

    async def generic_command(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in COMMANDS:
            raise UnknownCommand(f"unknown command {name!r}", known=sorted(COMMANDS))
        op = OPERATIONS[name]
        return await self.endpoint(op, op.routes[0])(request)


def _by_method(endpoints: dict[str, Endpoint]) -> Endpoint:
    if len(endpoints) == 1:
        return next(iter(endpoints.values()))

    async def serve(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return serve


def create_app(gateway: Gateway, principals: PrincipalResolver, max_request_bytes: int,
               readiness: Readiness) -> Starlette:
    """The gateway's ASGI application."""
    routes_of = _Routes(gateway, principals, max_request_bytes)
    document = openapi_document(TITLE, "1", DESCRIPTION)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in OPERATIONS.values():
        for route in op.routes:
            by_path.setdefault(route.path, {})[route.method] = routes_of.endpoint(op, route)
    # one Starlette route per path, so a 405 names every method the document lists for it
    routes: list[BaseRoute] = [Route(path, _by_method(endpoints), methods=list(endpoints),
                                     name=path)
                               for path, endpoints in by_path.items()]
    routes.append(Route(GENERIC_COMMAND_PATH, routes_of.generic_command, methods=["POST"]))
    routes += _operations_routes(readiness, document)
    return Starlette(routes=routes, exception_handlers={
        MnemosError: _mnemos_error, HTTPException: _http_error, Exception: _unexpected})


def _operations_routes(readiness: Readiness, document: dict[str, Any]) -> list[BaseRoute]:
    spec = json.dumps(document).encode()
    catalogue = CATALOGUE_PATH.read_bytes()

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    async def readyz(request: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values())
        return _json({"ready": ready, **checks}, 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def docs(request: Request) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} - docs")

    async def event_schema(request: Request) -> Response:
        # the committed catalogue, next to the OpenAPI document: for subscribers in any language
        return Response(catalogue, media_type="application/schema+json")

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
            Route(EVENT_SCHEMA_PATH, event_schema, methods=["GET"])]


async def _mnemos_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MnemosError)
    if exc.http_status >= 500:
        log.warning("http_request_failed", path=request.url.path, code=exc.code,
                    error=exc.message)
    return _error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})  # keeps e.g. Allow on a 405
    if exc.status_code == 404:
        return _error(NotFound(f"no route {request.url.path}"), headers)
    error = MnemosError(str(exc.detail))
    response = _json({"error": {**error.to_dict(), "code": "http_error"}}, exc.status_code)
    response.headers.update(headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    failure = broker_failure(exc, request.url.path)
    if failure is not None:  # a broker call not wrapped where it is made: still retry-safe
        log.warning("http_request_broker_failure", path=request.url.path, exc_info=exc)
        return _error(failure)
    log.error("http_request_crashed", path=request.url.path, exc_info=exc)
    return _error(MnemosError("internal error; see the gateway log"))
