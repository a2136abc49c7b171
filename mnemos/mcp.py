"""``mnemos mcp``: the MCP server of one namespace, over stdio (default) or streamable HTTP."""

from __future__ import annotations

import os

import typer

from libs.events import MnemosError
from mnemos.console import fail

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
    from mnemos_sdk.mcp_server import run

    try:
        run(ns, http=http, gateway=gateway, agent_id=agent_id, principal=principal)
    except MnemosError as exc:
        fail(exc)
