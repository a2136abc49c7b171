"""Where a local client finds Mnemos and its credential, without the server's configuration.

The same rules as the ``mnemos`` command: ``MNEMOS_API_KEY`` wins, else the local admin key that
``mnemos up`` wrote at ``MNEMOS_HOME/secrets/admin.key``; ``MNEMOS_GATEWAY_URL`` /
``MNEMOS_NATS_URL`` win, else what the running ``mnemos up`` published in
``MNEMOS_HOME/runtime.json``, else the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

__all__ = ["DEFAULT_HTTP_URL", "DEFAULT_NATS_URL", "find_credential", "find_http_url",
           "find_nats_url", "home"]

DEFAULT_HTTP_URL: Final = "http://127.0.0.1:8080"
DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


class _Runtime(msgspec.Struct, frozen=True):
    nats_url: str
    http_url: str


def home() -> Path:
    """``MNEMOS_HOME``, else ``~/.mnemos``."""
    return Path(os.environ.get("MNEMOS_HOME") or "~/.mnemos").expanduser()


def _runtime() -> _Runtime | None:
    try:
        return msgspec.json.decode((home() / "runtime.json").read_bytes(), type=_Runtime)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def find_credential() -> str | None:
    """``MNEMOS_API_KEY``, else the local admin key file, else none (anonymous)."""
    explicit = os.environ.get("MNEMOS_API_KEY")
    if explicit:
        return explicit.strip()
    try:
        return (home() / "secrets" / "admin.key").read_text().strip() or None
    except OSError:
        return None


def find_http_url() -> str:
    """The gateway's HTTP URL."""
    explicit = os.environ.get("MNEMOS_GATEWAY_URL")
    if explicit:
        return explicit.rstrip("/")
    running = _runtime()
    return running.http_url if running is not None else DEFAULT_HTTP_URL


def find_nats_url() -> str:
    """The broker's URL."""
    explicit = os.environ.get("MNEMOS_NATS_URL")
    if explicit:
        return explicit
    running = _runtime()
    return running.nats_url if running is not None else DEFAULT_NATS_URL
