"""What every ``mnemos`` verb that talks to a running system shares: a gateway client as the
local admin, JSON on stdout, and errors for people on stderr with exit code 2."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

from libs.auth.local_admin import local_key
from libs.events.errors import MnemosError
from libs.runtime.config import load_config
from mnemos.client import GatewayClient, describe_error, gateway_url
from mnemos_sdk import Mnemos

__all__ = ["emit", "fail", "local_client", "sdk_client", "use_json", "wants_json"]

_OUTPUT: dict[str, bool] = {"json": False}


def local_client() -> GatewayClient:
    """A client of the gateway this machine runs, with the local admin credential if any."""
    config = load_config()
    return GatewayClient(gateway_url(config), credential=local_key(config.home))


def emit(value: Any) -> None:
    """``value`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(exc: MnemosError) -> NoReturn:
    """``exc`` for people on stderr; exit code 2."""
    sys.stderr.write(describe_error(exc) + "\n")
    raise typer.Exit(2)


def sdk_client() -> Mnemos:
    """The SDK's blocking client of the gateway this machine runs, as the local admin."""
    config = load_config()
    return Mnemos.http(gateway_url(config), credential=local_key(config.home) or "",
                       principal="cli")


def use_json(on: bool) -> None:
    """``mnemos --json VERB``: every verb prints its reply as JSON."""
    _OUTPUT["json"] = on


def wants_json() -> bool:
    """Whether ``--json`` was given before the verb."""
    return _OUTPUT["json"]
