"""The local admin credential of a ``mnemos up`` home: created on first start, found by the
CLI, the demo and local clients by themselves.

``MNEMOS_HOME/secrets/admin.key`` (0600) holds one API key with ``admin`` and ``audit`` on every
namespace and on ``system``; only its hash is on the stream (``ApiKeyIssued``). Whoever can read
the file is the local administrator, exactly like whoever can read the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from libs.auth.key_store import KeyState, issue_key
from libs.auth.secret_files import read_secret, secret_path, write_secret
from libs.events import Grant, Scope
from libs.eventstore import EventStore

__all__ = ["ADMIN_GRANTS", "ADMIN_KEY_ENV", "admin_key_path", "ensure_admin_key", "local_key"]

ADMIN_KEY_ENV: Final = "MNEMOS_API_KEY"
"""A credential given explicitly (wins over the local admin file)."""

ADMIN_GRANTS: Final = (
    Grant(scope=Scope.ADMIN, namespace="*"), Grant(scope=Scope.AUDIT, namespace="*"),
    Grant(scope=Scope.ADMIN, namespace="system"), Grant(scope=Scope.AUDIT, namespace="system"),
)
"""Everything: every namespace, and the reserved ``system`` (keys, the audit chain)."""


def admin_key_path(home: Path) -> Path:
    """``MNEMOS_HOME/secrets/admin.key``."""
    return secret_path(home, "admin.key")


async def ensure_admin_key(home: Path, store: EventStore[KeyState]) -> tuple[Path, bool]:
    """The local admin key file, issuing the key first if there is none; ``(path, created)``."""
    path = admin_key_path(home)
    if path.exists():
        return path, False
    issued, _ = await issue_key(store, principal="local-admin", kind="user",
                                grants=ADMIN_GRANTS, by="mnemos-up")
    write_secret(path, issued.key.encode() + b"\n")
    return path, True


def local_key(home: Path) -> str | None:
    """The credential a local client uses: ``MNEMOS_API_KEY``, else the local admin file."""
    explicit = os.environ.get(ADMIN_KEY_ENV)
    if explicit:
        return explicit.strip()
    path = admin_key_path(home)
    if not path.exists():
        return None
    return read_secret(path).decode().strip()
