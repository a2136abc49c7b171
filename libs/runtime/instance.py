"""One running ``mnemos up`` per home: its exclusive lock and the runtime file it publishes.

``mnemos up`` holds an exclusive ``flock`` on ``<home>/up.lock`` for its whole life, so a second
one on the same home refuses at once (naming the running instance) instead of opening the same
JetStream store and crash-looping; and only the holder writes or removes ``runtime.json``, the
file through which operator commands and local clients find the running system.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import msgspec

from libs.events.errors import Conflict

__all__ = ["LOCK_FILE", "RUNTIME_FILE", "InstanceLock", "RuntimeInfo", "read_runtime"]

RUNTIME_FILE: Final = "runtime.json"
"""Written under the home while ``mnemos up`` runs: where everything can be reached."""
LOCK_FILE: Final = "up.lock"
"""Held (flock, exclusive) by the running ``mnemos up`` of a home."""


class RuntimeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a running ``mnemos up`` publishes about itself."""

    nats_url: str
    database_url: str
    http_url: str
    home: str
    pid: int
    nats_pid: int | None = None
    """The embedded nats-server (told to reload when broker identities change)."""


def read_runtime(home: Path) -> RuntimeInfo | None:
    """The runtime file of the ``mnemos up`` running on ``home``, if one is (and it is sane)."""
    path = home.expanduser() / RUNTIME_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=RuntimeInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


class InstanceLock:
    """The exclusive lock of one home; raises :class:`Conflict` when another process holds it."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser()
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or fail with a message naming the running instance."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            running = read_runtime(self.home)
            where = (f" (pid {running.pid}, HTTP {running.http_url}, NATS {running.nats_url})"
                     if running else "")
            raise Conflict(
                f"Mnemos is already running on {self.home}{where}; stop it first (Ctrl-C in "
                "its terminal, or `mnemos stop`), or use another MNEMOS_HOME",
                home=str(self.home), pid=running.pid if running else None,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def publish(self, info: RuntimeInfo) -> None:
        """Write the runtime file (only the lock holder may)."""
        self._require()
        path = self.home / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(json.dumps(msgspec.to_builtins(info), indent=2).encode() + b"\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    def release(self) -> None:
        """Remove the runtime file and give the lock up (idempotent)."""
        if self._fd is None:
            return
        (self.home / RUNTIME_FILE).unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _require(self) -> None:
        if self._fd is None:
            raise RuntimeError("the instance lock is not held")

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state: Any = "held" if self._fd is not None else "free"
        return f"InstanceLock({self.home}, {state})"
