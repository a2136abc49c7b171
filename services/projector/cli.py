"""``mnemos replay``: the command-line face of :func:`services.projector.replay.replay`.

Wire it with ``app.command("replay")(replay_command)`` in :mod:`mnemos.cli`.
"""

from __future__ import annotations

import asyncio

import typer

from libs.runtime.config import client_config
from libs.runtime.logging import configure_logging
from services.projector.replay import replay

__all__ = ["replay_command"]


def replay_command(
    swap: bool = typer.Option(
        False, "--swap", help="Swap the rebuilt read models in when they verify."
    ),
    force: bool = typer.Option(
        False, "--force", help="Swap even when the digests differ (e.g. after a projection fix)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Rebuild the read models from the event stream into a fresh schema, verify, and swap."""
    config = client_config()
    configure_logging(config.log_format, config.log_level, service="replay")
    report = asyncio.run(replay(config, swap=swap, force=force, progress=progress))
    typer.echo(report.summary())
    if report.verified is False and not report.swapped:
        raise typer.Exit(1)
