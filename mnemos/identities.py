"""``mnemos identities add|list|remove``: broker identities for agents and event subscribers.

On a secured broker (``mnemos up`` with ``MNEMOS_AUTH=on``) every client proves an nkey; this
is how an operator gives one to an agent (publish commands and queries for its namespaces) or to
an event subscriber (read the events of its namespaces). Only the public key goes into the
broker's configuration; the seed is written 0600 under ``MNEMOS_HOME/secrets/nats/`` for the
operator to hand over. A running embedded broker is told to reload at once.
"""

from __future__ import annotations

import typer

from libs.events.errors import MnemosError
from libs.runtime.config import load_config
from libs.runtime.instance import read_runtime
from libs.runtime.nats_auth import BrokerIdentities, inbox_prefix, reload_server
from mnemos.console import emit, fail

__all__ = ["identities_app"]

identities_app = typer.Typer(no_args_is_help=True,
                             help="Broker identities (nkeys) for agents and event subscribers.")


def _reload() -> bool:
    home = load_config().home
    running = read_runtime(home)
    if running is None or running.nats_pid is None:
        return False
    try:
        reload_server(running.nats_pid)
    except ProcessLookupError:
        return False
    return True


@identities_app.command("add")
def add(name: str = typer.Argument(..., help="The identity's name: a-z, 0-9 and -, at most 48."),
        kind: str = typer.Option("agent", help="agent (commands and queries) or subscriber "
                                 "(read events)."),
        ns: list[str] = typer.Option(..., "--ns", help="A namespace it may use (repeatable).")
        ) -> None:
    """Create (or update the namespaces of) an identity; prints where its seed is."""
    try:
        if kind not in ("agent", "subscriber"):
            raise typer.BadParameter("kind must be agent or subscriber")
        identities = BrokerIdentities(load_config().home)
        seed = identities.add(name, kind, tuple(ns))  # type: ignore[arg-type]
        emit({"name": name, "kind": kind, "namespaces": sorted(set(ns)), "seed_file": str(seed),
              "inbox_prefix": inbox_prefix(name), "broker_reloaded": _reload()})
    except MnemosError as exc:
        fail(exc)


@identities_app.command("list")
def list_identities() -> None:
    """Every identity with its kind, namespaces and public key (never a seed)."""
    identities = BrokerIdentities(load_config().home).identities()
    emit({"identities": [{"name": i.name, "kind": i.kind, "namespaces": list(i.namespaces),
                          "public_key": i.public_key} for i in identities]})


@identities_app.command("remove")
def remove(name: str = typer.Argument(..., help="The identity to remove.")) -> None:
    """Remove an identity and its seed; after the reload its connections are closed."""
    try:
        BrokerIdentities(load_config().home).remove(name)
        emit({"removed": name, "broker_reloaded": _reload()})
    except MnemosError as exc:
        fail(exc)
