"""Broker identities and permissions, without a server: names, rules, files, rendering."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import msgspec
import pytest

from libs.events.errors import InvalidInput, NotFound
from libs.runtime.nats_auth import (
    OPERATOR,
    SERVICES,
    BrokerIdentities,
    Identity,
    permissions_for,
    render_authorization,
    subscriber_consumer,
)

DEPLOY = Path(__file__).parents[2] / "deploy" / "nats"


@pytest.fixture
def ids(tmp_path: Path) -> BrokerIdentities:
    store = BrokerIdentities(tmp_path / "home")
    store.ensure_services()
    return store


def test_services_and_operator_get_seeds_in_private_files(ids: BrokerIdentities) -> None:
    names = sorted(i.name for i in ids.identities())
    assert names == sorted([*SERVICES, OPERATOR])
    for name in names:
        path = ids.seed_path(name)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_bytes().startswith(b"SU")
    assert stat.S_IMODE(os.stat(ids.seed_path("gateway").parent).st_mode) == 0o700
    for public in (ids.registry, ids.config):
        assert stat.S_IMODE(os.stat(public).st_mode) == 0o600
    # The rendered config and the registry hold public keys only, never a seed.
    for name in names:
        seed = ids.seed_path(name).read_bytes().decode()
        assert seed not in ids.config.read_text() and seed not in ids.registry.read_text()


def test_ensure_services_is_idempotent_and_keeps_seeds(ids: BrokerIdentities) -> None:
    before = {n: ids.seed_path(n).read_bytes() for n in SERVICES}
    ids.ensure_services()
    assert before == {n: ids.seed_path(n).read_bytes() for n in SERVICES}


@pytest.mark.parametrize("name", ["", "Agent", "a_b", "-a", "a" * 49, "a.b", "a*", ">", "a b",
                                  "a\x00", "é", "gateway", "operator", "registry_sync"])
def test_agent_names_are_validated(ids: BrokerIdentities, name: str) -> None:
    with pytest.raises(InvalidInput):
        ids.add(name, "agent", ("team-a",))


@pytest.mark.parametrize("ns", ["*", ">", "a.b", "team-*", "", "A", "a\x00", "a" * 65])
def test_namespaces_cannot_inject_wildcards(ids: BrokerIdentities, ns: str) -> None:
    with pytest.raises(InvalidInput):
        ids.add("agent-x", "agent", (ns,))
    with pytest.raises(InvalidInput):
        ids.add("sub-x", "subscriber", ("ok", ns))


def test_identity_kind_rules(ids: BrokerIdentities) -> None:
    with pytest.raises(InvalidInput):
        ids.add("nobody", "service")
    with pytest.raises(InvalidInput):
        ids.add("root", "operator")
    with pytest.raises(InvalidInput):
        ids.add("agent-x", "agent", ())
    ids.add("agent-x", "agent", ("b", "a", "a"))
    assert next(i for i in ids.identities() if i.name == "agent-x").namespaces == ("a", "b")
    with pytest.raises(InvalidInput):
        ids.add("agent-x", "subscriber", ("a",))
    seed = ids.seed_path("agent-x").read_bytes()
    ids.add("agent-x", "agent", ("c",))
    assert ids.seed_path("agent-x").read_bytes() == seed
    ids.remove("agent-x")
    assert not ids.seed_path("agent-x").exists()
    with pytest.raises(NotFound):
        ids.remove("agent-x")


def test_subscriber_consumer_names_cannot_collide() -> None:
    assert subscriber_consumer("sub", "team-a") == "sub__team-a"
    # Identity names have no "_", so the first "__" always splits name and namespace.
    assert subscriber_consumer("a", "b__c") != subscriber_consumer("a-b", "c")
    with pytest.raises(InvalidInput):
        subscriber_consumer("sub", "a.b")


def _all(ids: BrokerIdentities) -> dict[str, Identity]:
    ids.add("agent-a", "agent", ("team-a", "shared"))
    ids.add("watch", "subscriber", ("team-a",))
    return {i.name: i for i in ids.identities()}


def test_only_services_may_publish_events(ids: BrokerIdentities) -> None:
    by_name = _all(ids)
    publishers = {name for name, i in by_name.items()
                  if any(s.startswith("mnemos.evt") for s in permissions_for(i).publish)}
    assert publishers == {"gateway", "auditor", "compressor", "registry_sync"}
    assert "mnemos.evt.system.audit.>" in permissions_for(by_name["gateway"]).publish_deny


def test_agent_permissions_are_its_namespaces_and_its_inbox(ids: BrokerIdentities) -> None:
    perms = permissions_for(_all(ids)["agent-a"])
    assert sorted(perms.publish) == sorted(["mnemos.cmd.team-a.>", "mnemos.qry.team-a.>",
                                            "mnemos.cmd.shared.>", "mnemos.qry.shared.>"])
    assert perms.subscribe == ("_INBOX_agent-a.>",)
    assert "mnemos.evt.>" in perms.publish_deny and "$JS.>" in perms.publish_deny
    assert not perms.allow_responses


def test_subscriber_consumers_are_bound_to_their_filter(ids: BrokerIdentities) -> None:
    perms = permissions_for(_all(ids)["watch"])
    creates = [s for s in perms.publish if ".CONSUMER.CREATE." in s]
    assert creates == ["$JS.API.CONSUMER.CREATE.MNEMOS_EVENTS.watch__team-a.mnemos.evt.team-a.>"]
    assert all("watch__team-a" in s for s in perms.publish if "CONSUMER" in s or "ACK" in s)
    assert perms.subscribe == ("_INBOX_watch.>",)


def test_every_identity_has_allow_lists_and_the_append_only_denials(
        ids: BrokerIdentities) -> None:
    # An empty allow list would mean "everything" to nats-server: never render one.
    for identity in _all(ids).values():
        perms = permissions_for(identity)
        assert perms.publish and perms.subscribe
        for forbidden in ("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
                          "$JS.API.STREAM.MSG.DELETE.>"):
            assert forbidden in perms.publish_deny
        inbox = f"_INBOX_{identity.name}.>"
        assert inbox in perms.subscribe
        assert not any(s.startswith(("_INBOX.", ">")) for s in perms.subscribe)


def test_only_the_gateway_answers_requests_and_only_in_queue_groups(
        ids: BrokerIdentities) -> None:
    by_name = _all(ids)
    for name, identity in by_name.items():
        perms = permissions_for(identity)
        takes = [s for s in perms.subscribe if s.startswith(("mnemos.cmd", "mnemos.qry"))]
        internal = [s for s in perms.subscribe if s.startswith("mnemos.svc")]
        if name == "gateway":
            assert takes == ["mnemos.cmd.> mnemos-command", "mnemos.qry.> mnemos-query"]
            assert internal == [] and perms.allow_responses
        elif identity.kind == "service":
            # A service answers only the operations forwarded to it, in its queue group.
            assert takes == [] and perms.allow_responses
            assert internal == [f"mnemos.svc.{name}.> mnemos-svc-{name}"]
        else:
            assert takes == [] and internal == [] and not perms.allow_responses


def test_rendering_quotes_every_subject(ids: BrokerIdentities) -> None:
    text = render_authorization(ids.identities())
    assert re.search(r"(?<!\")\$JS", text) is None  # an unquoted $JS would be a variable
    assert text.count("nkey:") == len(SERVICES) + 1


def test_deploy_example_matches_the_rules() -> None:
    """deploy/nats/authorization.example.conf is what the code renders (keys aside)."""
    example = (DEPLOY / "authorization.example.conf").read_text()
    body = example[example.index("# Generated by Mnemos"):]
    keys = re.findall(r'# (\S+) \((\w+)\)(?: namespaces=(\S+))?\n    \{\n      nkey: "(U\w+)"',
                      body)
    identities = [Identity(name=n, kind=k, public_key=key,
                           namespaces=tuple(ns.split(",")) if ns else ())
                  for n, k, ns, key in keys]
    assert {i.name for i in identities} >= {*SERVICES, OPERATOR}
    assert render_authorization(identities) == body


def test_cluster_nodes_include_the_identities_and_authenticate_routes() -> None:
    for n in (1, 2, 3):
        conf = (DEPLOY / f"cluster-node{n}.conf").read_text()
        assert 'include "authorization.conf"' in conf
        assert "verify: true" in conf
        assert "no_auth_user" not in conf.replace("There is no no_auth_user", "")


def test_registry_round_trips(ids: BrokerIdentities) -> None:
    decoded = msgspec.json.decode(ids.registry.read_bytes(), type=list[Identity])
    assert {i.name for i in decoded} == {*SERVICES, OPERATOR}
    assert all(i.public_key.startswith("U") and len(i.public_key) == 56 for i in decoded)
