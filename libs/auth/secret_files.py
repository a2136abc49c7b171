"""Secrets on disk: one documented place under ``MNEMOS_HOME``, files 0600 in a 0700 folder.

Layout (every path relative to ``MNEMOS_HOME``, default ``~/.mnemos``)::

    secrets/                     0700  owned by the user running Mnemos
      postgres.pgpass            0600  libpq passfile of the embedded Postgres superuser
      nats/<identity>.nk         0600  nkey seed of each broker identity (services, agents...)
      admin.key                  0600  the local admin API key (written by ``mnemos up``)
      auditor-signing.key        0600  the auditor's Ed25519 signing key (configurable path)
    nats/authorization.conf      0600  generated broker identities: public nkeys + permissions

Threat model: another local user must not read a secret, and no process may read one through a
symlink someone planted. Files are created with ``O_EXCL | O_NOFOLLOW`` at mode 0600 from the
start (never chmod'ed after the write), written to a temporary name and renamed into place, so a
reader sees the old content or the new, never a partial or briefly world-readable file. A secret
folder that exists with group/other access, or that is a symlink, is refused rather than fixed:
someone else may already have read what was in it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from libs.events.errors import InvalidInput

__all__ = [
    "SECRETS_DIR",
    "ensure_private_dir",
    "read_secret",
    "secret_path",
    "write_secret",
]

SECRETS_DIR: Final = "secrets"
"""Folder of every secret file, relative to ``MNEMOS_HOME``."""

_PRIVATE_DIR_MODE: Final = 0o700
_SECRET_MODE: Final = 0o600


def secret_path(home: Path, *parts: str) -> Path:
    """``MNEMOS_HOME/secrets/<parts...>`` (nothing is created)."""
    return home.expanduser() / SECRETS_DIR / Path(*parts)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders; refuse one others can enter.

    Existing parents are left exactly as they are: only folders this call creates get a mode.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        # Created concurrently: checked below like any existing folder.
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=_PRIVATE_DIR_MODE)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"{path} must be a real directory, not a symlink or a file")
    if info.st_uid != os.geteuid():
        raise InvalidInput(f"{path} is owned by uid {info.st_uid}, not by this user")
    if info.st_mode & 0o077:
        raise InvalidInput(
            f"{path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "its secrets may have been read: fix the mode and rotate them",
        )
    return path


def write_secret(path: Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` with mode 0600 (its folder made private first)."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _SECRET_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_secret(path: Path) -> bytes:
    """Read a secret file, refusing a symlink or a file others may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise InvalidInput(f"cannot read secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_mode & 0o077:
            raise InvalidInput(
                f"secret {path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 0600",
            )
        return handle.read()
