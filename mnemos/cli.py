"""The ``mnemos`` command: run the system, run one service, and talk to a running system."""

from __future__ import annotations

import asyncio
import sys

import typer

from libs.events.errors import MnemosError
from libs.runtime.config import client_config, load_config
from libs.runtime.logging import configure_logging
from mnemos.console import emit, fail, local_client
from mnemos.identities import identities_app
from mnemos.keys import keys_app
from mnemos.serve import SERVICES, run_service
from services.auditor.cli import app as audit_app
from services.projector.cli import replay_command

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(identities_app, name="identities")
app.command("replay")(replay_command)

NS_OPTION = typer.Option("default", "--ns", help="Namespace (tenant): 1-64 characters of "
                         "a-z, 0-9, _ and -.")


@app.callback()
def _root() -> None:
    """Mnemos: a memory operating system for AI agents."""
    config = load_config()
    configure_logging(config.log_format, config.log_level)


@app.command()
def up(demo: bool = typer.Option(False, "--demo", help="After start, write and search a few "
                                 "memories to show the system working.")) -> None:
    """Start NATS, Postgres and every service on this machine; Ctrl-C stops all."""
    from mnemos.up import run_up

    try:
        run_up(load_config(), demo)
    except MnemosError as exc:
        fail(exc)


@app.command()
def serve(service: str = typer.Argument(..., help=f"One of: {', '.join(SERVICES)}")) -> None:
    """Run one service in the foreground (NATS and Postgres must already be reachable)."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    run_service(service, load_config())


@app.command()
def remember(
    content: str = typer.Argument(..., help="What to remember."),
    ns: str = NS_OPTION,
    kind: str = typer.Option("note", help="Kind of memory (note, preference, fact, …)."),
    tag: list[str] = typer.Option([], "--tag", help="Tag (repeatable)."),
    source: str | None = typer.Option(None, help="Where the content came from."),
) -> None:
    """Store a memory; prints its id and stream sequence."""
    try:
        emit(local_client().remember(ns, content, kind=kind, tags=tag, source=source))
    except MnemosError as exc:
        fail(exc)


@app.command()
def recall(
    query: str = typer.Argument(..., help="What you are looking for, in plain words."),
    ns: str = NS_OPTION,
    k: int = typer.Option(5, help="How many results."),
    mode: str = typer.Option("hybrid", help="hybrid, dense or lexical."),
) -> None:
    """Search memories (hybrid: vectors + full text, fused)."""
    try:
        emit(local_client().search(ns, query, k=k, mode=mode))
    except MnemosError as exc:
        fail(exc)


@app.command()
def get(memory_id: str, ns: str = NS_OPTION) -> None:
    """Show one memory with its provenance."""
    try:
        emit(local_client().get(ns, memory_id))
    except MnemosError as exc:
        fail(exc)


@app.command()
def history(memory_id: str, ns: str = NS_OPTION) -> None:
    """Show a memory's versions and events."""
    try:
        emit(local_client().history(ns, memory_id))
    except MnemosError as exc:
        fail(exc)


@app.command()
def status() -> None:
    """Stream, consumers and projection checkpoints of the running system."""
    from mnemos.status import collect_status

    report = asyncio.run(collect_status(client_config()))
    sys.stdout.write(report.to_json() + "\n")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def receipts(memory_id: str, ns: str = NS_OPTION,
             version: str | None = typer.Option(None, "--version", help="Only this version.")
             ) -> None:
    """Show a memory's compressions and their receipts (`get` shows the original)."""
    try:
        emit(local_client().receipts(ns, memory_id, version))
    except MnemosError as exc:
        fail(exc)


@app.command()
def context(
    task: str = typer.Argument(..., help="The task the context is for, in plain words."),
    purpose: str = typer.Option("summary", help="factual_recall, financial, legal, "
                                "compliance, code, summary or brainstorming."),
    budget: int = typer.Option(2000, help="Token budget (cl100k_base tokens)."),
    ns: str = NS_OPTION,
    k: int = typer.Option(20, help="How many relevant memories to consider."),
    originals_only: bool = typer.Option(False, "--originals-only",
                                        help="Serve no compressed or pruned form."),
) -> None:
    """Assemble context for a task and purpose within a token budget (with receipts)."""
    try:
        emit(local_client().context(ns, task, purpose, budget, k=k,
                                    originals_only=originals_only))
    except MnemosError as exc:
        fail(exc)


def main() -> None:
    """Console-script entry point."""
    app()
