"""The ``mnemos`` command: run the system, run one service, and talk to a running system."""

from __future__ import annotations

import typer

from libs.runtime.config import load_config
from mnemos.serve import SERVICES, run_service

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _root() -> None:
    """Mnemos: a memory operating system for AI agents."""


@app.command()
def serve(service: str = typer.Argument(..., help=f"One of: {', '.join(SERVICES)}")) -> None:
    """Run one service in the foreground (NATS and Postgres must already be reachable)."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    run_service(service, load_config())


def main() -> None:
    """Console-script entry point."""
    app()
