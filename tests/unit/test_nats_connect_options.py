"""Connect options: several servers in one URL (a cluster) and TLS against the broker's CA."""

from __future__ import annotations

import ssl
from pathlib import Path

from libs.runtime.config import load_config
from libs.runtime.nats_auth import BrokerIdentities
from libs.runtime.nats_client import nats_credentials, servers_of
from tests.support.cluster import write_certificates


def test_a_url_may_list_several_servers() -> None:
    assert servers_of("tls://a:4222, tls://b:4222,,tls://c:4222") == [
        "tls://a:4222", "tls://b:4222", "tls://c:4222"]
    assert servers_of("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_no_identity_and_no_ca_means_no_options(tmp_path: Path) -> None:
    assert nats_credentials(load_config(home=tmp_path)) == {}


def test_a_ca_file_gives_a_verifying_tls_context_beside_the_identity(tmp_path: Path) -> None:
    BrokerIdentities(tmp_path).ensure_services()
    ca = write_certificates(tmp_path / "tls")
    options = nats_credentials(load_config(home=tmp_path, nats_identity="projector",
                                           nats_tls_ca=ca))
    context = options.pop("tls")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert options == {"nkeys_seed": str(BrokerIdentities(tmp_path).seed_path("projector")),
                       "inbox_prefix": "_INBOX_projector"}
