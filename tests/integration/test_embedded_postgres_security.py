"""The embedded Postgres: password authentication, private socket and files, clean stops.

Runs the real server. When the suite runs as root (CI does), the cluster belongs to the
``mnemos_pg`` system user in a dedicated tree; ``system_root`` points that tree into a fresh
folder here so nothing outside the test's own folders is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from libs.runtime.postgres_server import PG_SYSTEM_USER, PostgresServer

pytestmark = pytest.mark.integration

AS_ROOT = os.geteuid() == 0
NOBODY = 65534


@pytest.fixture(scope="module")
def system_root() -> Iterator[Path]:
    # A new 0755 folder under /var/tmp (0755 parents): reachable by mnemos_pg without
    # changing the mode of anything that already exists.
    base = Path(tempfile.mkdtemp(prefix="mnemos-pg-test-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        yield base / "system"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path, system_root: Path) -> Iterator[PostgresServer]:
    srv = PostgresServer(tmp_path / "home" / "postgres", fast_stop=True,
                         system_root=system_root)
    srv.start()
    try:
        yield srv
    finally:
        srv.destroy()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its new parent's reap is not)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_connections_need_the_password(server: PostgresServer) -> None:
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
        assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")
        rules = conn.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
        assert rules == [("local", "scram-sha-256")]
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # the copied binaries are whole
    without = server.url.split("&passfile=")[0]
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(without, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(without, password="wrong", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(without, password="", connect_timeout=5)
    assert "passfile=" in server.url and server.passfile.read_text().count(":") == 4
    assert server.passfile.read_text().split(":")[-1].strip() not in server.url


def test_secrets_data_and_socket_are_private(server: PostgresServer) -> None:
    assert mode(server.passfile) == 0o600 and mode(server.passfile.parent) == 0o700
    owner = os.lstat(server.pgdata).st_uid
    expected = PG_SYSTEM_USER if AS_ROOT else None
    if expected:
        import pwd

        assert pwd.getpwuid(owner).pw_name == expected
    for folder in (server.pgdata, server.socket_dir):
        assert mode(folder) == 0o700
        assert os.lstat(folder).st_uid == owner
    socket_file = server.socket_dir / ".s.PGSQL.5432"
    assert stat.S_ISSOCK(os.lstat(socket_file).st_mode)
    assert mode(socket_file) & 0o077 == 0


@pytest.mark.skipif(not AS_ROOT, reason="needs root to act as another local user")
def test_another_local_user_cannot_connect_or_read_the_secret(server: PostgresServer) -> None:
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(server.socket_dir / '.s.PGSQL.5432')!r})\n"
        "except PermissionError:\n"
        "    sys.exit(13)\n"
        "print('connected')\n"
    )
    result = subprocess.run(["/usr/bin/python3", "-c", probe], user=NOBODY, group=NOBODY,
                            extra_groups=[], capture_output=True, text=True, check=False)
    assert result.returncode == 13, (result.stdout, result.stderr)
    read = subprocess.run(["/usr/bin/python3", "-c", f"open({str(server.passfile)!r}).read()"],
                          user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                          check=False)
    assert read.returncode != 0 and b"PermissionError" in read.stderr
    # The server's own user cannot write the binaries root runs (pg_isready, initdb).
    binary = Path(server._bin("pg_isready"))
    assert os.lstat(binary).st_uid == 0 and mode(binary) & 0o022 == 0


def parents_modes(*paths: Path) -> dict[Path, int]:
    found: dict[Path, int] = {}
    for path in paths:
        for parent in [path, *path.parents]:
            if parent.exists():
                found[parent] = os.lstat(parent).st_mode
    return found


def test_no_existing_directory_changes_mode(tmp_path: Path, system_root: Path) -> None:
    from libs.runtime.postgres_server import _package_dir

    home = tmp_path / "home-modes"
    home.mkdir(mode=0o700)
    before = parents_modes(home, _package_dir() / "bin", system_root.parent)
    srv = PostgresServer(home / "postgres", fast_stop=True, system_root=system_root)
    srv.start()
    try:
        during = parents_modes(home, _package_dir() / "bin", system_root.parent)
    finally:
        srv.destroy()
    after = parents_modes(home, _package_dir() / "bin", system_root.parent)
    assert before == during == after


def test_stop_leaves_no_process_lock_or_socket(tmp_path: Path, system_root: Path) -> None:
    srv = PostgresServer(tmp_path / "home" / "postgres", fast_stop=True, system_root=system_root)
    srv.start()
    assert srv.process is not None
    pgid = srv.process.pid
    with psycopg.connect(srv.url_for("postgres"), autocommit=True) as conn:
        for i in range(20):  # the per-test databases that made teardown slow
            conn.execute(f'CREATE DATABASE "t_{i}"')
    helpers = srv.members() - {pgid}
    assert len(helpers) >= 3  # checkpointer, walwriter, ... (each in its own session)
    started = time.monotonic()
    srv.stop()
    took = time.monotonic() - started
    assert took < 15, took
    assert not any(alive(pid) for pid in helpers | {pgid})
    assert srv.members() == set()
    assert not (srv.pgdata / "postmaster.pid").exists()
    assert not srv.socket_dir.exists()
    srv.start()  # same URL, same data
    with psycopg.connect(srv.url_for("t_3")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    srv.destroy()
    assert not srv.pgdata.exists() and not srv.data_dir.exists()
    assert not srv.passfile.exists() and not srv.log_path.exists()
    if AS_ROOT:
        assert list((system_root / "clusters").iterdir()) == []


def test_a_crashed_postmaster_is_cleaned_up_and_restarts(tmp_path: Path,
                                                         system_root: Path) -> None:
    srv = PostgresServer(tmp_path / "home" / "postgres", fast_stop=True, system_root=system_root)
    srv.start()
    try:
        assert srv.process is not None
        pgid = srv.process.pid
        orphans = srv.members() - {pgid}
        assert orphans
        os.kill(pgid, signal.SIGKILL)  # only the postmaster: its children are orphaned
        srv.process.wait()
        srv.stop()
        assert not any(alive(pid) for pid in orphans)
        assert srv.members() == set()
        assert not (srv.pgdata / "postmaster.pid").exists() and not srv.socket_dir.exists()
        srv.start()
        with psycopg.connect(srv.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        srv.destroy()


def test_a_squatted_socket_directory_is_refused(tmp_path: Path, system_root: Path) -> None:
    srv = PostgresServer(tmp_path / "home" / "postgres", fast_stop=True, system_root=system_root)
    srv.socket_dir.parent.mkdir(parents=True, exist_ok=True)
    if AS_ROOT:
        srv.socket_dir.parent.chmod(0o777)  # the cluster folder itself, planted open
    else:
        srv.socket_dir.mkdir(mode=0o777)
        srv.socket_dir.chmod(0o777)
    try:
        with pytest.raises(PermissionError, match="refusing"):
            srv.start()
    finally:
        shutil.rmtree(srv.socket_dir.parent if AS_ROOT else srv.socket_dir, ignore_errors=True)
        srv.destroy()


@pytest.mark.skipif(not AS_ROOT, reason="the legacy layout only existed for root")
def test_a_legacy_trust_cluster_in_the_home_is_moved_and_locked(
        server: PostgresServer, system_root: Path) -> None:
    # What an older Mnemos left: a trust-authenticated cluster inside a (traversable) home.
    home = system_root.parent / "legacy-home"
    home.mkdir(mode=0o755)
    data = home / "postgres"
    data.mkdir(mode=0o700)
    import pwd

    user = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(data, user.pw_uid, user.pw_gid)
    subprocess.run([server._bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--no-sync"], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                   check=True, capture_output=True)
    legacy = PostgresServer(data, fast_stop=True, system_root=system_root)
    legacy.start()
    try:
        assert (data / "cluster.json").exists() and not (data / "PG_VERSION").exists()
        assert (legacy.pgdata / "PG_VERSION").exists()
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(legacy.url.split("&passfile=")[0], connect_timeout=5)
        with psycopg.connect(legacy.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        legacy.destroy()
