"""The auditor's signing key: its own 0600 file at a configurable path, never readable by others."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from libs.events import InvalidInput
from libs.runtime.config import load_config
from services.auditor.checkpoint import public_key_hex
from services.auditor.files import load_or_create_key, read_public_key, signing_key_path


def test_the_key_lives_where_configured_with_its_public_half_next_to_it(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "chain-signer.pem"
    config = load_config(home=tmp_path / "home", audit_key_file=target)
    assert signing_key_path(config) == target
    key = load_or_create_key(signing_key_path(config))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert read_public_key(config) == public_key_hex(key)
    assert (tmp_path / "keys" / "chain-signer.pub").exists()
    assert not (tmp_path / "home" / "audit").exists()  # nothing written under the home
    # a second start loads the same key
    assert public_key_hex(load_or_create_key(target)) == public_key_hex(key)


def test_the_default_is_under_the_home(tmp_path: Path) -> None:
    config = load_config(home=tmp_path)
    assert signing_key_path(config) == tmp_path / "audit" / "auditor-ed25519.key"


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signer.key"
    load_or_create_key(path)
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="readable by others"):
        load_or_create_key(path)
