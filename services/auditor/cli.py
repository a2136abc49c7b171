"""``mnemos audit …``: verify the chain, prove an event, show the chain's status.

Wired into the main CLI with ``app.add_typer(audit_app, name="audit")``. Endpoints come from
``MNEMOS_NATS_URL`` / ``MNEMOS_DATABASE_URL`` or, when unset, from the ``runtime.json`` that a
running ``mnemos up`` writes under ``MNEMOS_HOME``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec
import typer

from libs.events import MnemosError, Progress, VerifyReport
from libs.runtime.config import Config, client_config
from libs.runtime.logging import configure_logging

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The audit hash chain: verify it, prove an event, show its status.")


def _config() -> Config:
    config = client_config()
    configure_logging(config.log_format, config.log_level)
    return config


def _fail(exc: MnemosError) -> None:
    sys.stderr.write(f"error [{exc.code}]: {exc.message}\n")
    raise typer.Exit(2)


def _summary(report: VerifyReport) -> str:
    if report.first_break is not None:
        brk = report.first_break
        return f"BROKEN at seq {brk.seq}: {brk.kind}: {brk.detail}"
    if report.read_model_issue_count:
        first = report.read_model_issues[0]
        return (f"READ MODEL TAMPERED: {report.read_model_issue_count} row(s) differ from the "
                f"stream; first: {first.detail}")
    tail = f"; {report.pending:,} newer events not chained yet" if report.pending else ""
    return (f"OK: {report.verified:,} links verified ({report.mode}, seq {report.from_seq:,}"
            f"..{report.to_seq:,}) in {report.duration_s:.2f}s{tail}")


@app.command()
def verify(
    full: bool = typer.Option(False, "--full", help="Recompute from genesis instead of from "
                              "the last verified point."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", exists=True, dir_okay=False,
        help="A signed checkpoint file kept elsewhere: prove the chain still extends it "
             "(implies --full)."),
) -> None:
    """Recompute the chain from the stream and compare; exit 1 if anything differs."""
    from services.auditor.verify import verify as run_verify

    def on_progress(p: Progress) -> None:
        sys.stderr.write(f"verifying: seq {p.seq:,} of {p.total:,} "
                         f"({p.events_per_s:,.0f} events/s, {p.elapsed_s:.0f}s)\n")

    try:
        report = asyncio.run(run_verify(_config(), full=full, checkpoint_file=checkpoint,
                                        progress=on_progress))
    except MnemosError as exc:
        _fail(exc)
        return
    sys.stdout.write(json.dumps(msgspec.to_builtins(report), indent=2) + "\n")
    sys.stderr.write(_summary(report) + "\n")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def prove(
    event_id: str = typer.Argument(..., help="The event's id (its Nats-Msg-Id)."),
    nearest: bool = typer.Option(False, "--nearest", help="Prove up to the first checkpoint "
                                 "after the event (shortest proof) instead of the latest."),
    out: Path | None = typer.Option(None, "--out", help="Write the proof here, not stdout."),
) -> None:
    """Print a proof that the event is in the chain under a signed checkpoint (PROOF.md)."""
    from services.auditor.proof import write_proof

    try:
        if out is None:
            asyncio.run(write_proof(_config(), event_id, sys.stdout, latest=not nearest))
            return
        partial = out.with_name(out.name + ".partial")
        with partial.open("w") as handle:
            asyncio.run(write_proof(_config(), event_id, handle, latest=not nearest))
        partial.replace(out)
    except MnemosError as exc:
        _fail(exc)


@app.command()
def status() -> None:
    """Chain head, lag behind the stream, latest checkpoint, last verification, incidents."""
    from services.auditor.status import audit_status

    try:
        body = asyncio.run(audit_status(_config()))
    except MnemosError as exc:
        _fail(exc)
        return
    sys.stdout.write(json.dumps(body, indent=2, default=str) + "\n")
