"""``mnemos models``, ``mnemos consult`` and ``mnemos registry sync``: the reasoning layer from
the command line, through the running gateway (JSON out, typed errors as the other commands)."""

from __future__ import annotations

import typer

from libs.events.errors import MnemosError
from mnemos.console import emit, fail, local_client

__all__ = ["consult_command", "models_command", "registry_app"]

registry_app = typer.Typer(no_args_is_help=True, help="The model registry (admin).")


def models_command(
    key: str | None = typer.Argument(None, help="One model (provider/model-id): its record "
                                     "with each field's source."),
    ns: str = typer.Option("default", "--ns", help="Namespace the reader may read."),
    provider: str | None = typer.Option(None, help="Only this provider's models."),
    family: str | None = typer.Option(None, help="Only this family (gpt, claude, …)."),
    capability: str | None = typer.Option(None, help="Only models with this capability."),
    liveness: str | None = typer.Option(None, help="active, suspect or retired."),
    limit: int = typer.Option(100, help="Page size (1-1000)."),
    after: str | None = typer.Option(None, help="Continue after this key (next_after)."),
) -> None:
    """List the model registry (liveness, sources, ranking) and each provider's last sync."""
    try:
        emit(local_client().models(ns, key=key, provider=provider, family=family,
                                   capability=capability, liveness=liveness, limit=limit,
                                   after=after))
    except MnemosError as exc:
        fail(exc)


def consult_command(
    prompt: str = typer.Argument(..., help="The question."),
    ns: str = typer.Option("default", "--ns", help="Namespace whose memories give context."),
    profile: str = typer.Option("balanced", help="cheap, balanced or best."),
    models: int = typer.Option(3, help="How many models of different families (1-5)."),
    no_context: bool = typer.Option(False, "--no-context", help="Send no memory context."),
    discrete: bool | None = typer.Option(None, "--discrete/--free",
                                         help="Force exact-answer voting, or semantic."),
    timeout_s: float = typer.Option(30.0, "--timeout", help="Per-call timeout in seconds."),
) -> None:
    """Ask several routed models; print the consensus (by content) or the abstention."""
    try:
        emit(local_client().consult(ns, prompt, profile=profile, models=models,
                                    context=not no_context, discrete=discrete,
                                    timeout_s=timeout_s))
    except MnemosError as exc:
        fail(exc)


@registry_app.command("sync")
def sync_command(target: str = typer.Option("all", help="providers, leaderboard or all.")
                 ) -> None:
    """Sync the providers and/or the leaderboard now; print what was published."""
    try:
        emit(local_client().registry_sync(target))
    except MnemosError as exc:
        fail(exc)
