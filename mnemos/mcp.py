"""``mnemos mcp``: the MCP server of one namespace, over stdio (default) or streamable HTTP."""

from __future__ import annotations

import asyncio
import os

import typer

from libs.events import CommandActor, MnemosError
from libs.events.tokens import validate_namespace
from mnemos.console import fail
from mnemos_sdk import AsyncMnemos, discovery

__all__ = ["mcp_command"]


def mcp_command(
    ns: str = typer.Option(os.environ.get("MNEMOS_NS", "default"), "--ns",
                           help="The namespace every tool works in (MNEMOS_NS)."),
    http: str | None = typer.Option(None, "--http", metavar="HOST:PORT",
                                    help="Serve streamable HTTP at http://HOST:PORT/mcp "
                                    "instead of stdio; each request's bearer credential is "
                                    "forwarded to the gateway."),
    gateway: str | None = typer.Option(None, "--gateway", help="Gateway URL (default: "
                                       "MNEMOS_GATEWAY_URL or the running `mnemos up`)."),
    agent_id: str = typer.Option(os.environ.get("MNEMOS_AGENT_ID", "mcp"), "--agent-id",
                                 help="Agent id recorded as provenance on every write."),
    principal: str | None = typer.Option(None, "--principal", help="Asserted principal for "
                                         "a gateway without authentication (MNEMOS_AUTH=off)."),
) -> None:
    """Serve Mnemos to LLM agents over the Model Context Protocol."""
    from mnemos_sdk.mcp_server import MnemosMcp, serve_http, serve_stdio

    try:
        ns = validate_namespace(ns)
    except MnemosError as exc:
        fail(exc)
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
        raise typer.BadParameter("--http takes HOST:PORT", param_hint="--http")
    asyncio.run(serve_http(app, host or "127.0.0.1", int(port)))
