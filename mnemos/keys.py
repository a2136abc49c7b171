"""``mnemos keys create|list|revoke``: API keys for agents and people, managed by an operator.

The calls go to the running gateway as the local admin (``MNEMOS_HOME/secrets/admin.key`` or
``MNEMOS_API_KEY``); issuing and revoking are events on the stream, so they are on the audit
chain. A new key's secret is printed once and never again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer

from libs.events.errors import InvalidInput, MnemosError
from mnemos.console import emit, fail, local_client

__all__ = ["keys_app", "parse_expiry"]

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_expiry(text: str, now: datetime | None = None) -> str:
    """``30d``, ``12h``, ``45m`` from now, or an ISO 8601 time with a zone, as RFC 3339."""
    now = now or datetime.now(UTC)
    unit = _UNITS.get(text[-1:])
    if unit is not None and text[:-1].isdigit():
        amount = int(text[:-1])
        if not 0 < amount <= 100_000:
            raise InvalidInput(f"expiry {text!r} out of range", expires=text)
        return (now + timedelta(**{unit: amount})).isoformat()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"expiry {text!r} is neither a duration (30d, 12h, 45m) nor an "
                           "ISO 8601 time", expires=text) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"expiry {text!r} has no time zone", expires=text)
    return moment.isoformat()


@keys_app.command("create")
def create(
    principal: str = typer.Argument(..., help="Who the key is for (an agent or a person)."),
    grant: list[str] = typer.Option(..., "--grant", help="<scope>:<namespace>, repeatable; "
                                    "scope read, write, admin or audit; namespace a name or a "
                                    "prefix pattern such as team-*."),
    kind: str = typer.Option("agent", help="agent, user or service."),
    expires: str | None = typer.Option(None, help="Expiry: 30d, 12h, 45m or an ISO 8601 time."),
) -> None:
    """Issue a key; its secret is printed once (store it now)."""
    try:
        expires_at = parse_expiry(expires) if expires is not None else None
        emit(local_client().create_key(principal, grant, kind=kind, expires_at=expires_at))
    except MnemosError as exc:
        fail(exc)


@keys_app.command("list")
def list_keys() -> None:
    """Every key with its prefix, principal, grants, expiry and whether it is revoked."""
    try:
        emit(local_client().list_keys())
    except MnemosError as exc:
        fail(exc)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (see `mnemos keys list`)."),
           reason: str = typer.Option(..., help="Why; recorded on the audit chain.")) -> None:
    """Revoke a key; every gateway refuses it within seconds."""
    try:
        emit(local_client().revoke_key(key_id, reason))
    except MnemosError as exc:
        fail(exc)
