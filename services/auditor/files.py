"""The auditor's files: its Ed25519 key pair and, under ``<home>/audit/``, checkpoint files.

- the signing key, ``MNEMOS_AUDIT_KEY_FILE`` (default ``<home>/audit/auditor-ed25519.key``):
  private key, PKCS#8 PEM, mode 0600 in a 0700 directory, created on first start, never in the
  database;
- next to it, ``<name>.pub``: its public key, 64 hex digits (give this to whoever checks proofs);
- ``checkpoints/checkpoint-<seq>.json`` and ``checkpoints/latest.json``: signed checkpoints
  for an operator to ship elsewhere (the newest :data:`KEEP_FILES` are kept; every checkpoint
  also stays in Postgres and in the stream).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.events import InvalidInput
from libs.runtime.config import Config
from services.auditor.checkpoint import Checkpoint, public_key_hex

__all__ = [
    "KEEP_FILES",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "audit_dir",
    "checkpoint_dir",
    "load_or_create_key",
    "read_checkpoint_file",
    "read_public_key",
    "signing_key_path",
    "write_checkpoint_file",
]

PRIVATE_KEY_FILE: Final = "auditor-ed25519.key"
PUBLIC_KEY_FILE: Final = "auditor-ed25519.pub"
LATEST_FILE: Final = "latest.json"
KEEP_FILES: Final = 100
"""How many numbered checkpoint files stay on disk."""


def audit_dir(config: Config) -> Path:
    """``<home>/audit``."""
    return config.home.expanduser() / "audit"


def signing_key_path(config: Config) -> Path:
    """Where the auditor's private key lives."""
    if config.audit_key_file is not None:
        return config.audit_key_file.expanduser()
    return audit_dir(config) / PRIVATE_KEY_FILE


def _public_key_path(private: Path) -> Path:
    return private.with_name(f"{private.stem}.pub")


def checkpoint_dir(config: Config) -> Path:
    """``<home>/audit/checkpoints``."""
    return audit_dir(config) / "checkpoints"


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Load the auditor's private key from ``path``, creating it (0600) on first use.

    The key is written to a private temporary file and hard-linked into place, so two
    instances sharing a home agree on one key and never read a half-written file.
    """
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = directory / f".{path.name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    if path.stat().st_mode & 0o077:
        raise InvalidInput(f"{path} is readable by others; chmod 600 it", path=str(path))
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 private key")
    _write_atomic(_public_key_path(path), (public_key_hex(loaded) + "\n").encode())
    return loaded


def read_public_key(config: Config) -> str | None:
    """The local auditor's public key (hex), if one was created here."""
    path = _public_key_path(signing_key_path(config))
    return path.read_text().strip() if path.exists() else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_checkpoint_file(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint-<seq>.json`` and ``latest.json``; prune old numbered files."""
    directory.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.format(msgspec.json.encode(checkpoint), indent=2) + b"\n"
    path = directory / f"checkpoint-{checkpoint.seq:012d}.json"
    _write_atomic(path, data)
    _write_atomic(directory / LATEST_FILE, data)
    numbered = sorted(directory.glob("checkpoint-*.json"))
    for old in numbered[:-KEEP_FILES]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint_file(path: Path) -> Checkpoint:
    """Parse a checkpoint file; a malformed one is :class:`InvalidInput`."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"not a checkpoint file: {path}: {exc}") from None
