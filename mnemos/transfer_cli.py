"""``mnemos import FILE`` and ``mnemos export``: a namespace in and out as JSON Lines
(format and guarantees in :mod:`mnemos.transfer`)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Literal, cast

import typer
from tqdm import tqdm

from libs.auth.local_admin import local_key
from libs.events import InvalidInput, MnemosError, Unavailable
from libs.runtime.config import client_config
from libs.runtime.nats_client import connect_nats, nats_credentials
from mnemos.client import gateway_url
from mnemos.console import fail
from mnemos.transfer import Line, export_lines, import_lines, parse_line, wait_projected
from mnemos_sdk import AsyncMnemos, NatsTransport

__all__ = ["export_command", "import_command"]

NS_HELP = "Namespace (tenant)."


Transport = Literal["auto", "nats", "http"]


async def _client(ns: str, transport: Transport = "http") -> AsyncMnemos:
    """The gateway as the local operator: over NATS (the operator's broker identity) when a
    broker is known and ``transport`` allows it, else over HTTP."""
    config = client_config()
    key = local_key(config.home) or ""
    if transport != "http" and config.nats_url:
        nc = await connect_nats(config.nats_url, "mnemos-import", nats_credentials(config))
        return AsyncMnemos(NatsTransport(nc, key or None, "cli", owned=True), ns=ns,
                           timeout_s=60.0)
    if transport == "nats":
        raise Unavailable("no broker known: set MNEMOS_NATS_URL or start `mnemos up`")
    return AsyncMnemos.http(gateway_url(config), credential=key, principal="cli", ns=ns,
                            timeout_s=60.0)


def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines: exported "
                                "memories or plain {content, kind, tags, metadata, source, "
                                "actor, id, occurred_at} objects."),
    ns: str = typer.Option("default", "--ns", help=NS_HELP),
    inflight: int = typer.Option(64, min=1, max=1024, help="Memories written concurrently."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on "
                                  "stderr."),
    transport: str = typer.Option("auto", help="auto (NATS when a broker is known, else "
                                  "HTTP), nats or http."),
) -> None:
    """Import memories; re-running the same file changes nothing (deterministic command ids)."""
    try:
        lines = [parse_line(raw, n) for n, raw in
                 enumerate(file.read_bytes().splitlines(), 1) if raw.strip()]
        if transport not in ("auto", "nats", "http"):
            raise InvalidInput("--transport is auto, nats or http", value=transport)
        asyncio.run(_import(ns, lines, inflight, progress, cast(Transport, transport)))
    except MnemosError as exc:
        fail(exc)


async def _import(ns: str, lines: list[Line], inflight: int, progress: bool,
                  transport: Transport) -> None:
    bar = tqdm(total=len(lines), unit="mem", file=sys.stderr, disable=not progress,
               desc=f"import into {ns}")
    began = time.perf_counter()
    async with await _client(ns, transport) as client:
        report = await import_lines(client, ns, lines, inflight=inflight, on_memory=bar.update)
        bar.close()
        written = time.perf_counter() - began
        await wait_projected(client, ns, report)
    elapsed = time.perf_counter() - began
    sys.stdout.write(
        f"imported {report.memories} memories ({report.commands} commands, "
        f"{report.duplicates} already present) into {ns}: written in {written:.2f}s, "
        f"searchable after {elapsed:.2f}s = {report.memories / max(elapsed, 1e-9):,.0f} "
        "memories/s end to end\n")


def export_command(
    ns: str = typer.Option("default", "--ns", help=NS_HELP),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: "
                                       "stdout)."),
) -> None:
    """Export every served memory of a namespace with all its versions and provenance."""
    try:
        asyncio.run(_export(ns, output))
    except MnemosError as exc:
        fail(exc)


async def _export(ns: str, output: Path | None) -> None:
    sink = output.open("wb") if output is not None else sys.stdout.buffer
    count = 0
    try:
        async with await _client(ns) as client:
            async for line in export_lines(client, ns):
                sink.write(line)
                count += 1
    finally:
        if output is not None:
            sink.close()
    sys.stderr.write(f"exported {count} memories of {ns}\n")
