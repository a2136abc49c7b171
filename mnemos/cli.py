"""The ``mnemos`` command: run the system, run one service, and talk to a running system."""

from __future__ import annotations

import asyncio
import sys

import typer

from libs.events.errors import MnemosError
from libs.runtime.config import client_config, load_config
from libs.runtime.logging import configure_logging
from mnemos.console import fail, use_json
from mnemos.dlq import dlq_app
from mnemos.identities import identities_app
from mnemos.keys import keys_app
from mnemos.mcp import mcp_command
from mnemos.registry_cli import consult_command, models_command, registry_app
from mnemos.serve import SERVICES, run_service
from mnemos.stop import stop_command
from mnemos.transfer_cli import export_command, import_command
from mnemos.verbs import register_verbs
from services.auditor.cli import app as audit_app
from services.projector.cli import replay_command

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(identities_app, name="identities")
app.add_typer(dlq_app, name="dlq")
app.command("replay")(replay_command)
app.add_typer(registry_app, name="registry")
app.command("models")(models_command)
app.command("consult")(consult_command)
app.command("mcp")(mcp_command)
app.command("stop")(stop_command)
app.command("import")(import_command)
app.command("export")(export_command)
register_verbs(app, taken=frozenset({"up", "serve", "status", "replay", "mcp", "stop", "import",
                                      "export", "audit", "keys", "identities", "dlq", "registry",
                                      "models", "consult"}))

@app.callback()
def _root(as_json: bool = typer.Option(False, "--json", help="Every verb prints its reply "
                                       "as JSON.")) -> None:
    """Mnemos: a memory operating system for AI agents."""
    use_json(as_json)
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
def status() -> None:
    """Stream, every consumer on it (third-party subscribers too) and its lag, projection
    checkpoints and lag, dead letters, the audit chain's head and last verification."""
    from mnemos.status import collect_status

    report = asyncio.run(collect_status(client_config()))
    sys.stdout.write(report.to_json() + "\n")
    if report.errors:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()
