"""MCP tool-call overhead over stdio: ``mnemos mcp`` (a subprocess driven by the official MCP
client) against the same query made directly with the SDK over HTTP, on a real system.

    python -m tests.bench.bench_mcp [--calls 300] [--memories 200]

Prints p50/p99 of each and the overhead (MCP p50 - direct p50). Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import Client, StdioServerParameters

from mnemos_sdk import AsyncMnemos
from tests.bench.harness import percentile, progress, report_line, running_system

NS = "bench-mcp"


async def _timed(calls: int, first: Callable[[int], Awaitable[Any]],
                 second: Callable[[int], Awaitable[Any]]) -> tuple[list[float], list[float]]:
    """Both ways in alternation, call for call, so load on the machine hits both alike."""
    for i in range(min(20, calls)):  # warm-up: connections, caches, lazy imports
        await first(i)
        await second(i)
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(calls):
        for way, one in enumerate((first, second)):
            began = time.perf_counter()
            await one(i)
            samples[way].append(time.perf_counter() - began)
    return samples


def _line(name: str, samples: list[float]) -> float:
    p50 = percentile(samples, 50) * 1000
    report_line(name, f"p50 {p50:.2f} ms  p99 {percentile(samples, 99) * 1000:.2f} ms")
    return p50


async def main_async(args: argparse.Namespace) -> None:
    with running_system() as system:
        system.start_service("projector")
        system.start_service("command")
        system.wait_gateway()
        url = f"http://127.0.0.1:{system.config.http_port}"
        report_line("machine", f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        direct = AsyncMnemos.http(url, credential="", principal="bench", ns=NS)
        ids = [(await direct.remember(content=f"bench memory {i} about topic {i % 17}")
                ).memory_id for i in range(args.memories)]
        await direct.search(q="topic 3")  # waits until everything is projected
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mnemos", "mcp", "--ns", NS, "--gateway", url, "--principal", "bench"],
            env={**system.env, "MNEMOS_API_KEY": ""})
        async with Client(params, read_timeout_seconds=60) as mcp:
            for name, direct_call, tool_call in (
                ("get", lambda i: direct.get(memory_id=ids[i % len(ids)]),
                 lambda i: mcp.call_tool("get", {"memory_id": ids[i % len(ids)]})),
                ("search", lambda i: direct.search(q=f"topic {i % 17}", k=5),
                 lambda i: mcp.call_tool("search", {"q": f"topic {i % 17}", "k": 5})),
            ):
                progress(f"{name}: direct SDK and MCP stdio alternating, {args.calls} each")
                direct_s, mcp_s = await _timed(args.calls, direct_call, tool_call)
                base = _line(f"{name} direct (SDK over HTTP)", direct_s)
                over = _line(f"{name} via MCP stdio tool call", mcp_s)
                report_line(f"{name} MCP overhead (p50 difference)", f"{over - base:.2f} ms")
        await direct.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--memories", type=int, default=200)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
