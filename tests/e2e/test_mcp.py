"""``mnemos mcp`` driven by the official MCP SDK's own client, over stdio and over streamable
HTTP, against a real gateway and projector: tools generated from the catalog with annotations
and structured output, memories as resources, the namespace fixed by the server and the
principal by the credential (a request without one is refused by a secured gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from libs.auth.key_store import API_KEY_FOLD, issue_key
from libs.auth.local_admin import ADMIN_GRANTS
from libs.events import OPERATIONS
from libs.eventstore import JetStreamEventStore
from libs.runtime.config import Config
from libs.runtime.nats_server import free_port
from mnemos_sdk import AsyncMnemos
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "team-a"
EXPECTED_TOOLS = {"remember", "search", "get", "revise", "forget", "history", "list", "link",
                  "tag", "branch", "commit", "merge", "revert", "log", "diff"}


def _url(config: Config) -> str:
    return f"http://{config.http_host}:{config.http_port}"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")}
    return {**env, "MNEMOS_HOME": str(tmp / "mcp-home"), "MNEMOS_LOG_LEVEL": "warning"}


def _command(config: Config, *more: str) -> list[str]:
    return ["-m", "mnemos", "mcp", "--ns", NS, "--gateway", _url(config), *more]


def _data(result: mcp_types.CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def _exercise(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert tools.keys() >= EXPECTED_TOOLS
    assert not {"create_key", "revoke_key", "list_keys", "audit_verify"} & tools.keys()
    assert tools.keys() == {op.name for op in OPERATIONS.values() if op.namespace is None}
    for name, tool in tools.items():
        op, hints = OPERATIONS[name], tool.annotations
        assert hints is not None and hints.open_world_hint is op.open_world
        assert hints.read_only_hint is op.read_only and hints.idempotent_hint is op.idempotent
        assert hints.destructive_hint is (op.destructive and not op.read_only)
        assert "actor" not in tool.input_schema["properties"]
        assert "ns" not in tool.input_schema["properties"]
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    assert tools["forget"].annotations.destructive_hint  # type: ignore[union-attr]
    assert tools["search"].annotations.read_only_hint  # type: ignore[union-attr]

    written = _data(await client.call_tool("remember", {
        "content": "The customer's renewal date is 2027-03-01", "kind": "fact",
        "tags": ["billing"]}))
    memory_id = written["memory_id"]
    hits = _data(await client.call_tool("search", {"q": "when does the customer renew"}))
    assert hits["hits"][0]["memory"]["memory_id"] == memory_id  # read-your-writes
    memory = _data(await client.call_tool("get", {"memory_id": memory_id}))
    assert memory["ns"] == NS and memory["created_by"]["agent_id"] == "mcp"
    _data(await client.call_tool("revise", {"memory_id": memory_id,
                                            "content": "Renewal: 2027-04-01"}))
    history = _data(await client.call_tool("history", {"memory_id": memory_id}))
    assert [e["type"] for e in history["events"]] == ["MemoryCreated", "MemoryRevised"]

    missing = await client.call_tool("get", {"memory_id": "01a2357e-0000-7000-8000-00000000000f"})
    assert missing.is_error and "not_found" in missing.content[0].text  # type: ignore[union-attr]
    for bad in ({"content": "x", "actor": {"agent_id": "someone-else"}}, {"content": "\x00"},
                {"content": "x", "ns": "team-b"}, {}):
        refused = await client.call_tool("remember", bad)
        assert refused.is_error, bad

    listed = (await client.list_resources()).resources
    uri = f"mnemos://{NS}/memory/{memory_id}"
    assert uri in {str(r.uri) for r in listed}
    read = await client.read_resource(uri)
    assert '"Renewal: 2027-04-01"' in read.contents[0].text  # type: ignore[union-attr]
    with pytest.raises(MCPError):
        await client.read_resource(f"mnemos://team-b/memory/{memory_id}")


async def test_mcp_over_stdio(config: Config, nats_js: Any, tmp_path: Path) -> None:
    async with running_gateway(config) as _:
        # the SDK distribution's entry point (`mnemos-mcp`); HTTP below runs `mnemos mcp`
        args = ["-m", "mnemos_sdk.mcp_server", *_command(config, "--principal", "mcp-user")[3:]]
        params = StdioServerParameters(command=sys.executable, args=args,
                                       env=_env(tmp_path), cwd=str(Path.cwd()))
        async with Client(params, read_timeout_seconds=30) as client:
            await _exercise(client)


@contextlib.asynccontextmanager
async def _http_server(config: Config, tmp: Path) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, *_command(config, "--http", f"127.0.0.1:{port}"), env=_env(tmp))
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                assert process.returncode is None, "mnemos mcp --http exited"
                with contextlib.suppress(httpx.TransportError):
                    await http.get(url)
                    break
                await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def test_mcp_over_http_forwards_each_callers_credential(config: Config, nats_js: Any,
                                                              tmp_path: Path) -> None:
    secured = config.model_copy(update={"auth": "on"})
    issued, _ = await issue_key(JetStreamEventStore(nats_js, API_KEY_FOLD), principal="root",
                                kind="user", grants=ADMIN_GRANTS, by="test")
    async with running_gateway(secured) as _, _http_server(secured, tmp_path) as url:
        authorized = create_mcp_http_client(headers={"Authorization": f"Bearer {issued.key}"})
        async with authorized, Client(streamable_http_client(url, http_client=authorized),
                                      read_timeout_seconds=30) as client:
            await _exercise(client)
        async with Client(url, read_timeout_seconds=30) as anonymous:
            refused = await anonymous.call_tool("search", {"q": "renewal"})
            assert refused.is_error
            assert "unauthenticated" in refused.content[0].text  # type: ignore[union-attr]
        # a key for another namespace reaches nothing of this server's namespace
        async with AsyncMnemos.http(_url(secured), credential=issued.key) as admin:
            other = await admin.create_key(principal="agent-b", grants=[
                {"scope": "write", "namespace": "team-b"},
                {"scope": "read", "namespace": "team-b"}])
        foreign = create_mcp_http_client(headers={"Authorization": f"Bearer {other.key}"})
        async with foreign, Client(streamable_http_client(url, http_client=foreign),
                                   read_timeout_seconds=30) as client:
            for tool, arguments in (("search", {"q": "renewal"}), ("remember", {"content": "x"})):
                refused = await client.call_tool(tool, arguments)
                assert refused.is_error and "forbidden" in refused.content[0].text  # type: ignore[union-attr]
