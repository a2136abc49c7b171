"""``mnemos replay``: the command-line face of :func:`services.projector.replay.replay`.

Wire it with ``app.command("replay")(replay_command)`` in :mod:`mnemos.cli`.
"""

from __future__ import annotations

import asyncio

import typer

from libs.events import MnemosError
from libs.runtime.config import client_config
from libs.runtime.logging import configure_logging
from services.projector.as_of import parse_as_of
from services.projector.replay import drop_old_schemas, replay

__all__ = ["replay_command"]


def replay_command(
    swap: bool = typer.Option(
        False, "--swap", help="Swap the rebuilt read models in when they verify."
    ),
    force: bool = typer.Option(
        False, "--force", help="Swap even when the digests differ (e.g. after a projection fix)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    cleanup: bool = typer.Option(
        False, "--cleanup", help="Rebuild nothing: drop the schemas earlier swaps kept "
        "(<schema>_old_<time>), all but the newest --keep."
    ),
    keep: int = typer.Option(0, "--keep", help="With --cleanup: how many old schemas to keep."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Rebuild and compare, then drop the rebuild; never swap."
    ),
    until_seq: int | None = typer.Option(
        None, "--until-seq", help="Rebuild the state as of this stream sequence into "
        "<schema>_asof_<seq> (kept to inspect; not compared, not swapped)."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Like --until-seq, at the last event the stream had stored by "
        "this ISO 8601 time (with offset, e.g. 2026-12-02T17:00:00Z)."
    ),
) -> None:
    """Rebuild the read models from the event stream into a fresh schema, verify, and swap.

    The rebuild loads in bulk (search indexes and lexical statistics are built once, after
    the load) while the live schema keeps serving; see the README's operations section.
    """
    config = client_config()
    configure_logging(config.log_format, config.log_level, service="replay")
    try:
        point = parse_as_of(until_seq, as_of)
        if cleanup:
            dropped = asyncio.run(drop_old_schemas(config, keep))
            typer.echo("\n".join(f"dropped {s}" for s in dropped) or "no old schemas to drop")
            return
        report = asyncio.run(replay(config, swap=swap, force=force, progress=progress,
                                    dry_run=dry_run, as_of=point))
    except MnemosError as exc:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.summary())
    if report.verified is False and not report.swapped:
        raise typer.Exit(1)
