"""Secret files: 0600 from the first byte, private folders, refusal of symlinks and lax modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from libs.auth.secret_files import ensure_private_dir, read_secret, secret_path, write_secret
from libs.events.errors import InvalidInput


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_secret_path_layout(tmp_path: Path) -> None:
    assert secret_path(tmp_path, "nats", "gateway.nk") == tmp_path / "secrets/nats/gateway.nk"
    assert not (tmp_path / "secrets").exists()


def test_write_creates_private_folders_and_a_0600_file(tmp_path: Path) -> None:
    os.umask(0o000)  # the most permissive umask must not matter
    try:
        home = tmp_path / "home"
        path = write_secret(secret_path(home, "nats", "a.nk"), b"SUAx\x00\xff")
    finally:
        os.umask(0o022)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(home / "secrets") == 0o700
    assert read_secret(path) == b"SUAx\x00\xff"
    assert [p.name for p in path.parent.iterdir()] == ["a.nk"]  # no temporary left


def test_existing_parents_are_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    write_secret(secret_path(tmp_path, "x"), b"1")
    assert mode(tmp_path) == 0o755


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    path = secret_path(tmp_path, "k")
    write_secret(path, b"old")
    inode = os.stat(path).st_ino
    write_secret(path, b"new" * 100_000)
    assert read_secret(path) == b"new" * 100_000
    assert os.stat(path).st_ino != inode  # a new file renamed into place


def test_lax_folder_is_refused_not_fixed(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(InvalidInput, match="accessible to other users"):
        write_secret(folder / "k", b"x")
    assert mode(folder) == 0o755 and not (folder / "k").exists()


def test_symlinked_folder_or_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "secrets").symlink_to(real)
    with pytest.raises(InvalidInput, match="symlink"):
        ensure_private_dir(tmp_path / "secrets")
    target = tmp_path / "target"
    target.write_bytes(b"not a secret")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(InvalidInput):
        read_secret(link)


def test_reading_a_world_readable_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"x")
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="0600"):
        read_secret(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        read_secret(tmp_path / "missing")
