"""The Mnemos MCP server (``mnemos mcp``): every tenant operation of the catalog as an MCP tool,
memories as resources ``mnemos://<ns>/memory/<id>``, over stdio or streamable HTTP.

It is a client of the gateway (through :class:`~mnemos_sdk.AsyncMnemos`), so every call goes
through the gateway's one authorization layer. The namespace is fixed when the server starts and
the principal is the credential's; neither is a tool argument an LLM could change. Over stdio
the credential is the server's own (``MNEMOS_API_KEY`` or the local admin key); over HTTP each
request's ``Authorization: Bearer`` header is forwarded, and a request without one is anonymous
(refused by a secured gateway).

Tools are generated from :data:`libs.events.OPERATIONS` (so operations added to the catalog
become tools by themselves): the input schema is the request struct's JSON Schema without
``actor`` (provenance is configured, not chosen by the model), the output schema the reply's,
and the annotations come from the row (``readOnlyHint``, ``destructiveHint``, ``idempotentHint``,
``openWorldHint``: false for the memory store itself, true for rows that reach LLM
providers). Operations of the reserved ``system`` namespace (keys, the audit chain) are not
tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import mcp_types as types
import msgspec
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.server import lifespan as _default_lifespan
from mcp.shared.exceptions import MCPError

from libs.events import (
    OPERATIONS,
    CommandActor,
    InvalidInput,
    MnemosError,
    Operation,
    convert_params,
)
from libs.events.commands import CommandBase
from libs.events.replies import CREDENTIAL_HEADER
from libs.events.tokens import validate_namespace
from mnemos_sdk import discovery
from mnemos_sdk.client import AsyncMnemos

__all__ = ["MEMORY_URI", "MnemosMcp", "main", "run", "tool_of", "tools"]

MEMORY_URI: Final = "mnemos://{ns}/memory/{memory_id}"
"""The URI template of a memory resource."""
_URI: Final = re.compile(r"^mnemos://([a-z0-9_-]{1,64})/memory/([A-Za-z0-9_-]{1,64})$")
_HIDDEN: Final = frozenset({"actor"})
_CLIENTS_PER_SERVER: Final = 64
_ENCODER: Final = msgspec.json.Encoder()

ClientFactory = Callable[[str | None], AsyncMnemos]
"""A client of the gateway for one credential (``None``: the server's own)."""


def _schema(cls: type[msgspec.Struct], hide: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The struct's JSON Schema with the struct itself at the root (MCP wants an object)."""
    raw = msgspec.json.schema(cls)
    defs: dict[str, Any] = raw.get("$defs", {})
    root = dict(defs[raw["$ref"].rsplit("/", 1)[-1]])
    if hide:
        root["properties"] = {k: v for k, v in root.get("properties", {}).items()
                              if k not in hide}
        root["required"] = [k for k in root.get("required", []) if k not in hide]
    if defs:
        root["$defs"] = defs
    return root


def tool_of(op: Operation) -> types.Tool:
    """The MCP tool of one operation."""
    return types.Tool(
        name=op.name,
        title=op.name.replace("_", " "),
        description=f"{op.summary} (namespace and caller are fixed by the server's credential)",
        input_schema=_schema(op.request, _HIDDEN),
        output_schema=_schema(op.reply),
        annotations=types.ToolAnnotations(
            title=op.name.replace("_", " "), read_only_hint=op.read_only,
            destructive_hint=op.destructive and not op.read_only,
            idempotent_hint=op.idempotent, open_world_hint=op.open_world),
    )


def tools() -> list[types.Tool]:
    """A tool per tenant operation of the catalog."""
    return [tool_of(op) for op in OPERATIONS.values() if op.namespace is None]


def _error_result(exc: MnemosError) -> types.CallToolResult:
    text = json.dumps({"error": exc.to_dict()}, default=str)
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


class MnemosMcp:
    """The MCP server of one namespace: tools, resources, and the gateway clients behind them."""

    def __init__(self, ns: str, clients: ClientFactory, *,
                 actor: CommandActor | None = None) -> None:
        self.ns = ns
        self.actor = actor or CommandActor(agent_id="mcp")
        self._factory = clients
        self._clients: OrderedDict[str | None, AsyncMnemos] = OrderedDict()
        self._closing: list[AsyncMnemos] = []
        self._tools = {tool.name: tool for tool in tools()}
        self.server: Server[Any] = Server(
            "mnemos", version="0.1.0", title="Mnemos memory",
            instructions=(f"Long-term memory of namespace {ns!r}: remember facts, search them "
                          "(search), read (get, history, log, diff), change them (revise, tag, "
                          "link, forget, branch, merge, revert)."),
            lifespan=_default_lifespan,
            on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource)

    # -- clients ----------------------------------------------------------------------------

    def _credential(self, ctx: Any) -> str | None:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        if headers is None:
            return None  # stdio: the server's own credential
        value = headers.get(CREDENTIAL_HEADER.lower()) or ""
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""

    def client_for(self, ctx: Any) -> AsyncMnemos:
        """The gateway client of the caller's credential (cached, least recently used out)."""
        credential = self._credential(ctx)
        found = self._clients.get(credential)
        if found is None:
            found = self._factory(credential)
            self._clients[credential] = found
            if len(self._clients) > _CLIENTS_PER_SERVER:
                _, evicted = self._clients.popitem(last=False)
                self._closing.append(evicted)
        self._clients.move_to_end(credential)
        return found

    async def close(self) -> None:
        """Close every gateway client."""
        for client in [*self._clients.values(), *self._closing]:
            await client.close()
        self._clients.clear()
        self._closing.clear()

    # -- tools ------------------------------------------------------------------------------

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(self._tools.values()))

    def _request(self, op: Operation, arguments: dict[str, Any]) -> msgspec.Struct:
        hidden = _HIDDEN & arguments.keys()
        if hidden:
            raise InvalidInput(f"{sorted(hidden)} is set by the server, not by a tool argument")
        request: msgspec.Struct = convert_params(arguments, op.request, op.name, strict=True)
        if isinstance(request, CommandBase):
            request = msgspec.structs.replace(request, actor=self.actor)
        return request

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams
                         ) -> types.CallToolResult:
        if params.name not in self._tools:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        op = OPERATIONS[params.name]
        try:
            request = self._request(op, dict(params.arguments or {}))
            reply = await self.client_for(ctx).call(op.name, request, ns=self.ns)
        except MnemosError as exc:
            return _error_result(exc)
        structured = msgspec.to_builtins(reply)
        return types.CallToolResult(content=[types.TextContent(text=_ENCODER.encode(
            structured).decode())], structured_content=structured)

    # -- resources --------------------------------------------------------------------------

    def uri(self, memory_id: str) -> str:
        """``mnemos://<ns>/memory/<id>``."""
        return MEMORY_URI.format(ns=self.ns, memory_id=memory_id)

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        cursor = getattr(params, "cursor", None) if params is not None else None
        try:
            page = await self.client_for(ctx).call("list", ns=self.ns, limit=50, cursor=cursor)
        except MnemosError as exc:
            raise MCPError(types.INTERNAL_ERROR, exc.message, exc.to_dict()) from None
        resources = [types.Resource(uri=self.uri(m.memory_id), name=m.memory_id,
                                    title=m.content[:80], mime_type="application/json",
                                    description=f"{m.kind} {', '.join(m.tags)}".strip())
                     for m in page.items]
        return types.ListResourcesResult(resources=resources, next_cursor=page.next_cursor)

    async def _list_templates(self, ctx: Any, params: Any
                              ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=MEMORY_URI, name="memory", mime_type="application/json",
            description="One memory with provenance and links")])

    async def _read_resource(self, ctx: Any, params: types.ReadResourceRequestParams
                             ) -> types.ReadResourceResult:
        match = _URI.match(str(params.uri))
        if match is None or match.group(1) != self.ns:
            raise MCPError(types.INVALID_PARAMS,
                           f"not a memory of namespace {self.ns!r}: {params.uri}")
        try:
            memory = await self.client_for(ctx).call("get", ns=self.ns,
                                                     memory_id=match.group(2))
        except MnemosError as exc:
            raise MCPError(types.INVALID_PARAMS if exc.http_status < 500
                           else types.INTERNAL_ERROR, exc.message, exc.to_dict()) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=str(params.uri), mime_type="application/json",
            text=_ENCODER.encode(memory).decode())])


async def serve_stdio(app: MnemosMcp) -> None:
    """Serve one MCP session on stdin/stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    try:
        async with stdio_server() as (read, write):
            await app.server.run(read, write, app.server.create_initialization_options())
    finally:
        await app.close()


async def serve_http(app: MnemosMcp, host: str, port: int, path: str = "/mcp") -> None:
    """Serve streamable HTTP on ``host:port`` at ``path`` until cancelled."""
    import uvicorn

    asgi = app.server.streamable_http_app(streamable_http_path=path, host=host)
    server = uvicorn.Server(uvicorn.Config(asgi, host=host, port=port, log_level="warning",
                                           lifespan="on"))
    try:
        await server.serve()
    finally:
        await app.close()


def run(ns: str, *, http: str | None = None, gateway: str | None = None,
        agent_id: str = "mcp", principal: str | None = None) -> None:
    """Serve namespace ``ns`` over stdio, or over streamable HTTP when ``http`` is HOST:PORT."""
    ns = validate_namespace(ns)
    url = gateway or discovery.find_http_url()
    own = discovery.find_credential()

    def client(credential: str | None) -> AsyncMnemos:
        # stdio (None): the server's own credential; HTTP: the caller's ("" = none given)
        chosen = own if credential is None else credential
        return AsyncMnemos.http(url, credential=chosen or "", principal=principal, ns=ns)

    app = MnemosMcp(ns, client, actor=CommandActor(agent_id=agent_id))
    if http is None:
        asyncio.run(serve_stdio(app))
        return
    host, _, port = http.rpartition(":")
    if not port.isdigit():
        raise InvalidInput("--http takes HOST:PORT", value=http)
    asyncio.run(serve_http(app, host or "127.0.0.1", int(port)))


def main() -> None:
    """``mnemos-mcp`` (the SDK distribution's console script; ``mnemos mcp`` is the same)."""
    parser = argparse.ArgumentParser(prog="mnemos-mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--ns", default=os.environ.get("MNEMOS_NS", "default"))
    parser.add_argument("--http", metavar="HOST:PORT")
    parser.add_argument("--gateway")
    parser.add_argument("--agent-id", default=os.environ.get("MNEMOS_AGENT_ID", "mcp"))
    parser.add_argument("--principal")
    args = parser.parse_args()
    try:
        run(args.ns, http=args.http, gateway=args.gateway, agent_id=args.agent_id,
            principal=args.principal)
    except MnemosError as exc:
        sys.stderr.write(f"error [{exc.code}]: {exc.message}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
