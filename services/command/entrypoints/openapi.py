"""The OpenAPI document, generated from the operation catalog and the same structs the server
validates with: every parameter carries its pattern and bounds, every body its schema."""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

import msgspec

from libs.events import COMMANDS, OPERATIONS, ErrorReply, Operation, Route, path_fields
from services.command.entrypoints.params import field_kinds

__all__ = ["GENERIC_COMMAND_PATH", "openapi_document"]

GENERIC_COMMAND_PATH: Final = "/v1/{ns}/commands/{name}"
"""Any command by name (the per-command paths are listed too)."""

_NAMESPACE: Final = {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$",
                     "description": "Namespace (tenant)."}
_ERRORS: Final = ((400, "invalid input"), (401, "unauthenticated"), (403, "forbidden"),
                  (404, "unknown memory or command"), (409, "conflict"),
                  (413, "payload too large"), (500, "internal (or an event dead-lettered)"),
                  (503, "unavailable (retry)"))


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(op: Operation, route: Route) -> dict[str, Any]:
    answers: dict[str, Any] = {
        str(route.status): {"description": "OK", "content": _json(_ref(op.reply.__name__))}}
    if op.streams:
        answers[str(route.status)]["content"]["application/x-ndjson"] = {
            "schema": {"type": "string", "description": "with progress=true: one JSON object a "
                       "line, {\"progress\": ...} then {\"report\": ...}"}}
    for status, text in _ERRORS:
        answers[str(status)] = {"description": text, "content": _json(_ref("ErrorReply"))}
    return answers


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null."""
    choices = schema.get("anyOf")
    if choices is None:
        return schema
    kept = [c for c in choices if c.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _parameters(op: Operation, route: Route, component: dict[str, Any]) -> list[dict[str, Any]]:
    props: dict[str, Any] = component.get("properties", {})
    required = set(component.get("required", []))
    params: list[dict[str, Any]] = []
    if "{ns}" in route.path:
        params.append({"name": "ns", "in": "path", "required": True, "schema": _NAMESPACE})
    in_path = path_fields(route.path)
    for name in in_path:
        params.append({"name": name, "in": "path", "required": True,
                       "schema": _without_null(props[name])})
    if route.method == "GET":
        kinds = field_kinds(op.request)
        for name, schema in props.items():
            if name in in_path:
                continue
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                     "schema": _without_null(schema)}
            if kinds.get(name):
                param.update(style="form", explode=True)
            params.append(param)
    return params


def _body(op: Operation, route: Route, components: dict[str, Any]) -> dict[str, Any] | None:
    if route.method != "POST":
        return None
    name = op.request.__name__
    in_path = path_fields(route.path)
    if in_path:
        body = copy.deepcopy(components[name])
        for field in in_path:
            body.get("properties", {}).pop(field, None)
        body["required"] = [f for f in body.get("required", []) if f not in in_path]
        name = f"{name}Body"
        body["title"] = name
        components[name] = body
    return {"required": True, "content": _json(_ref(name))}


@functools.cache
def _components() -> dict[str, Any]:
    types: list[Any] = [ErrorReply]
    for op in OPERATIONS.values():
        types += [op.request, op.reply]
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    return components


def openapi_document(title: str, version: str, description: str) -> dict[str, Any]:
    """The whole document: one path item per route of the catalog, plus the operational ones."""
    components = copy.deepcopy(_components())
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS.values():
        for index, route in enumerate(op.routes):
            component = components[op.request.__name__]
            item: dict[str, Any] = {
                "operationId": op.name if index == 0 else f"{op.name}_{index}",
                "summary": op.summary, "tags": [op.kind + "s"],
                "parameters": _parameters(op, route, component),
                "responses": _responses(op, route),
                "x-mnemos-scope": str(op.scope),
            }
            body = _body(op, route, components)
            if body is not None:
                item["requestBody"] = body
            paths.setdefault(route.path, {})[route.method.lower()] = item
    paths[GENERIC_COMMAND_PATH] = {"post": {
        "operationId": "command", "tags": ["commands"],
        "summary": "Any command by name: " + ", ".join(COMMANDS) + ".",
        "parameters": [{"name": "ns", "in": "path", "required": True, "schema": _NAMESPACE},
                       {"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(COMMANDS)}}],
        "requestBody": {"required": True, "content": _json(
            {"oneOf": [_ref(cls.__name__) for cls in COMMANDS.values()]})},
        "responses": _responses(OPERATIONS["revise"], Route("POST", GENERIC_COMMAND_PATH)),
    }}
    for path, summary in (("/healthz", "Liveness: the process answers."),
                          ("/readyz", "Readiness: NATS connected, the database reachable and the "
                           "event stream not refusing appends for lack of storage."),
                          ("/metrics", "Prometheus metrics of this process.")):
        paths[path] = {"get": {"operationId": path.strip("/"), "summary": summary,
                               "tags": ["operations"],
                               "responses": {"200": {"description": "OK"},
                                             "503": {"description": "not ready"}}}}
    return {"openapi": "3.1.0", "info": {"title": title, "version": version,
                                         "description": description},
            "paths": paths, "components": {"schemas": components}}
