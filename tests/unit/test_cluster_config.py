"""The cluster tests run the deploy/nats files with only host-specific values replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cluster import DEPLOY, NodePorts, render_node_config

PORTS = [NodePorts(14222 + i, 16222 + i, 18222 + i) for i in range(3)]


def _meaningful(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("index", [1, 2, 3])
def test_rendering_replaces_only_host_specific_values(index: int, tmp_path: Path) -> None:
    shipped = (DEPLOY / f"cluster-node{index}.conf").read_text()
    rendered = render_node_config(index, PORTS, tmp_path / "store", tmp_path / "tls")
    for production in ("0.0.0.0", "/var/lib/", "/etc/mnemos/", "mnemos-nats-1:6222", ":4222",
                       ":8222"):
        assert production not in rendered
    assert f"port: {PORTS[index - 1].client}" in rendered
    assert all(f"nats-route://127.0.0.1:{p.route}" in rendered for p in PORTS)
    # Everything that is not a host-specific value is the shipped file, line for line.
    changed = [(a, b) for a, b in zip(_meaningful(shipped), _meaningful(rendered), strict=True)
               if a != b]
    keys = sorted({a.split(":")[0].split(" ")[0] for a, _ in changed})
    assert keys == ["ca_file", "cert_file", "host", "http", "key_file", "nats-route", "port",
                    "store_dir"]

def test_the_fsync_policy_is_replaced_only_when_asked(tmp_path: Path) -> None:
    shipped = render_node_config(1, PORTS, tmp_path / "s", tmp_path / "t")
    relaxed = render_node_config(1, PORTS, tmp_path / "s", tmp_path / "t", sync_interval="2m")
    assert "sync_interval: always" in shipped and "sync_interval: 2m" in relaxed
