"""Broker isolation: one NATS identity per Mnemos service, least-privilege permissions.

**Choice: static nkey users in a generated configuration, reloaded on change** (rather than
NATS auth callout). Evaluated:

(a) *Static users with nkeys*, rendered into ``MNEMOS_HOME/nats/authorization.conf`` and
    picked up by ``nats-server`` on SIGHUP. The server stores only public keys; a client proves
    possession of its seed by signing a nonce, so no secret crosses the wire or sits in the
    server's config. A reload applies new permissions to live connections and closes those whose
    user was removed (tested). Nothing extra runs on the connection path: the broker authenticates
    even while every Mnemos process is down, which is exactly when the services must connect.
(b) *Auth callout*: the server forwards each CONNECT to a Mnemos service, which validates an API
    key and returns a signed user JWT with permissions. One credential for agents (their API
    key) and immediate per-key policy, but: a callout service that must be up before any
    client (itself included, through a bypass user) can connect, an account signing key to
    guard, NATS user-JWT encoding with no maintained Python library, and revocation that still
    needs a kick of live connections through the system account.

(a) is simpler, fails closed, and has no availability dependency; agents get a broker identity
(an nkey seed) next to their API key. The gateway still authenticates the API key carried in
every command or query: the broker bounds *where* an identity may publish, the gateway decides
*who* the principal is. (b) remains the path if broker identities must follow API keys one to
one; the permission builders below are what a callout would sign.

Permissions (deny wins over allow; everything not allowed is refused; no ``no_auth_user``, so an
unauthenticated client cannot connect):

- Every identity subscribes only to its own inbox prefix ``_INBOX_<name>.>`` (clients connect
  with ``inbox_prefix``): nobody can read replies or JetStream deliveries meant for another.
  Nobody may delete or purge a stream or its messages.
- Services: ``gateway`` publishes events (not the auditor's ``system.audit`` checkpoints),
  answers ``mnemos.cmd.>``/``mnemos.qry.>`` only in its queue groups, and replies through
  ``allow_responses``; ``projector`` reads its durable consumer and writes dead letters;
  ``auditor`` reads the stream and publishes checkpoints only; ``compressor`` reads and
  publishes memory events; ``registry_sync`` publishes ``system`` registry events and
  consultation events. Consumers of services that read the whole stream have free names.
- ``operator`` (CLI, ``mnemos up``): streams, consumers and reads of both streams, commands and
  queries everywhere, and records on the dead-letter stream (``mnemos dlq retry`` notes a
  repaired dead letter there); never events.
- Agents: publish ``mnemos.cmd.<ns>.>`` and ``mnemos.qry.<ns>.>`` for their namespaces only.
- Event subscribers: for each granted namespace one consumer named ``<name>__<ns>`` whose
  creation subject must carry the filter ``mnemos.evt.<ns>.>``. Since NATS 2.10 a consumer is
  created on ``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>`` and the server refuses a
  request whose configured filter differs from the one in the subject, so a publish permission
  on that subject bounds what the consumer can ever deliver. Pulls and acks are limited to
  those consumer names, so a subscriber cannot drain the projector's consumer.

Broker-level namespaces are explicit names: NATS wildcards cover whole tokens, so the prefix
patterns of API-key grants (``team-*``) cannot be expressed here. Residual risks, documented: an
identity may set a reply subject naming another's inbox (the reply goes there, and nats-py drops
an unknown inbox token); a subscriber's push consumer could name any deliver subject, but only
its own namespaces' events can flow there.

Files: seeds at ``MNEMOS_HOME/secrets/nats/<name>.nk`` (0600), the public registry at
``MNEMOS_HOME/nats/identities.json`` and the rendered ``MNEMOS_HOME/nats/authorization.conf``
(both 0600), included by the server configuration.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
from pathlib import Path
from typing import Final, Literal

import msgspec
import nkeys

from libs.auth.secret_files import read_secret, secret_path, write_secret
from libs.events.errors import InvalidInput, NotFound
from libs.events.stream import DEADLETTER_STREAM, EVENTS_STREAM
from libs.events.tokens import validate_namespace

__all__ = [
    "AUTHORIZATION_FILE",
    "OPERATOR",
    "SERVICES",
    "BrokerIdentities",
    "Identity",
    "IdentityKind",
    "Permissions",
    "inbox_prefix",
    "permissions_for",
    "reload_server",
    "render_authorization",
    "subscriber_consumer",
]

SERVICES: Final = ("gateway", "projector", "auditor", "compressor", "registry_sync")
"""The Mnemos services, each with its own broker identity."""

OPERATOR: Final = "operator"
"""The identity of the CLI and of ``mnemos up`` (stream declaration, status, replay)."""

AUTHORIZATION_FILE: Final = "authorization.conf"
"""Rendered permissions, in ``MNEMOS_HOME/nats/`` next to the server configuration."""

IdentityKind = Literal["service", "operator", "agent", "subscriber"]
"""What an identity is for; it decides the permission builder."""

_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
_API: Final = "$JS.API"
_FORBIDDEN_TO_ALL: Final = (
    f"{_API}.STREAM.DELETE.>", f"{_API}.STREAM.PURGE.>", f"{_API}.STREAM.MSG.DELETE.>",
    f"{_API}.STREAM.RESTORE.>", f"{_API}.ACCOUNT.PURGE.>", "$SYS.>",
)
"""Never allowed to anyone: the event stream is append-only."""


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """Publish and subscribe allow/deny lists of one identity (NATS subject syntax)."""

    publish: tuple[str, ...]
    publish_deny: tuple[str, ...] = _FORBIDDEN_TO_ALL
    subscribe: tuple[str, ...]
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """A broker identity: its name, kind, public nkey and (agents, subscribers) namespaces."""

    name: str
    kind: IdentityKind
    public_key: str
    namespaces: tuple[str, ...] = ()


def inbox_prefix(name: str) -> str:
    """The inbox prefix identity ``name`` must connect with (``_INBOX_<name>``)."""
    return f"_INBOX_{name}"


def subscriber_consumer(name: str, ns: str) -> str:
    """Consumer name of subscriber ``name`` on namespace ``ns``: ``<name>__<ns>``.

    Identity names contain no ``_``, so the first ``__`` splits the two unambiguously and
    two identities can never share a consumer.
    """
    return f"{name}__{validate_namespace(ns)}"


def _consumer(stream: str, consumer: str, filter_subject: str | None = None) -> list[str]:
    """Create (with this filter only, if given), inspect, delete, pull and ack ``consumer``."""
    create = f"{_API}.CONSUMER.CREATE.{stream}.{consumer}"
    creates = [f"{create}.{filter_subject}"] if filter_subject else [create, f"{create}.>"]
    return [*creates, f"{_API}.CONSUMER.INFO.{stream}.{consumer}",
            f"{_API}.CONSUMER.DELETE.{stream}.{consumer}",
            f"{_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}", f"$JS.ACK.{stream}.{consumer}.>"]


def _reads(stream: str) -> list[str]:
    return [f"{_API}.STREAM.INFO.{stream}", f"{_API}.DIRECT.GET.{stream}",
            f"{_API}.DIRECT.GET.{stream}.>", f"{_API}.STREAM.MSG.GET.{stream}"]


def _service_publish(name: str) -> list[str]:
    base = [f"{_API}.INFO", f"{_API}.STREAM.NAMES", *_reads(EVENTS_STREAM),
            f"mnemos.dlq.{name}.>"]
    own: dict[str, list[str]] = {
        # The gateway appends every command's events and forwards the operations other
        # services own (mnemos.svc.<service>.<operation>).
        "gateway": ["mnemos.evt.>", "mnemos.svc.>", f"{_API}.STREAM.CREATE.{EVENTS_STREAM}",
                    f"{_API}.STREAM.UPDATE.{EVENTS_STREAM}", *_reads(DEADLETTER_STREAM),
                    f"{_API}.STREAM.CREATE.{DEADLETTER_STREAM}",
                    f"{_API}.STREAM.UPDATE.{DEADLETTER_STREAM}"],
        "projector": _consumer(EVENTS_STREAM, "projector"),
        "auditor": ["mnemos.evt.system.audit.>", *_consumer(EVENTS_STREAM, "*")],
        "compressor": ["mnemos.evt.*.memory.*",
                       *_consumer(EVENTS_STREAM, "compressor")],
        "registry_sync": ["mnemos.evt.system.model.>", "mnemos.evt.system.provider.>",
                          "mnemos.evt.system.ranking.>",
                          "mnemos.evt.*.consultation.*", "mnemos.svc.compressor.>",
                          *_consumer(EVENTS_STREAM, "registry_sync")],
    }
    return base + own[name]


def _service(name: str) -> Permissions:
    subscribe = [f"{inbox_prefix(name)}.>"]
    deny = list(_FORBIDDEN_TO_ALL)
    if name == "gateway":
        # Queue-group-bound: a gateway instance shares requests, it cannot shadow-read them.
        # Key events: revocations take effect at once on every instance.
        subscribe += ["mnemos.cmd.> mnemos-command", "mnemos.qry.> mnemos-query",
                      "mnemos.evt.system.apikey.>"]
        deny.append("mnemos.evt.system.audit.>")
    else:
        # The operations this service owns, forwarded by the gateway (queue group: instances
        # share them).
        subscribe.append(f"mnemos.svc.{name}.> mnemos-svc-{name}")
    return Permissions(publish=tuple(_service_publish(name)), publish_deny=tuple(deny),
                       subscribe=tuple(subscribe), allow_responses=True)


def _operator() -> Permissions:
    publish = [f"{_API}.INFO", f"{_API}.STREAM.NAMES", f"{_API}.STREAM.LIST",
               "mnemos.cmd.>", "mnemos.qry.>", "mnemos.dlq.*.*"]
    for stream in (EVENTS_STREAM, DEADLETTER_STREAM):
        publish += [f"{_API}.STREAM.CREATE.{stream}", f"{_API}.STREAM.UPDATE.{stream}",
                    *_reads(stream), f"{_API}.CONSUMER.NAMES.{stream}",
                    f"{_API}.CONSUMER.LIST.{stream}", *_consumer(stream, "*")]
    return Permissions(publish=tuple(publish),
                       publish_deny=(*_FORBIDDEN_TO_ALL, "mnemos.evt.>"),
                       subscribe=(f"{inbox_prefix(OPERATOR)}.>",))


def _agent(name: str, namespaces: tuple[str, ...]) -> Permissions:
    publish = [s for ns in namespaces for s in (f"mnemos.cmd.{ns}.>", f"mnemos.qry.{ns}.>")]
    return Permissions(publish=tuple(publish),
                       publish_deny=(*_FORBIDDEN_TO_ALL, "mnemos.evt.>", "$JS.>"),
                       subscribe=(f"{inbox_prefix(name)}.>",),
                       subscribe_deny=("mnemos.>",))


def _subscriber(name: str, namespaces: tuple[str, ...]) -> Permissions:
    publish = [f"{_API}.INFO"]
    for ns in namespaces:
        publish += _consumer(EVENTS_STREAM, subscriber_consumer(name, ns), f"mnemos.evt.{ns}.>")
    return Permissions(publish=tuple(publish),
                       publish_deny=(*_FORBIDDEN_TO_ALL, "mnemos.evt.>", "mnemos.cmd.>"),
                       subscribe=(f"{inbox_prefix(name)}.>",),
                       subscribe_deny=("mnemos.>",))


def permissions_for(identity: Identity) -> Permissions:
    """The permissions of ``identity`` (see the module docstring for the rules)."""
    if identity.kind == "service":
        return _service(identity.name)
    if identity.kind == "operator":
        return _operator()
    if identity.kind == "agent":
        return _agent(identity.name, identity.namespaces)
    return _subscriber(identity.name, identity.namespaces)


def _list(key: str, values: tuple[str, ...], indent: str) -> list[str]:
    # JSON strings are valid NATS config strings; quoting keeps "$JS..." from being a variable.
    inner = [f"{indent}  {json.dumps(v)}," for v in values]
    return [f"{indent}{key}: [", *inner, f"{indent}]"]


def _render_user(identity: Identity) -> list[str]:
    perms = permissions_for(identity)
    ns = f" namespaces={','.join(identity.namespaces)}" if identity.namespaces else ""
    lines = [f"    # {identity.name} ({identity.kind}){ns}", "    {",
             f"      nkey: {json.dumps(identity.public_key)}", "      permissions: {",
             "        publish: {", *_list("allow", perms.publish, "          "),
             *_list("deny", perms.publish_deny, "          "), "        }",
             "        subscribe: {", *_list("allow", perms.subscribe, "          ")]
    if perms.subscribe_deny:
        lines += _list("deny", perms.subscribe_deny, "          ")
    lines.append("        }")
    if perms.allow_responses:
        lines.append("        allow_responses: true")
    return [*lines, "      }", "    },"]


def render_authorization(identities: list[Identity]) -> str:
    """The ``authorization`` block for ``identities`` (a complete file to ``include``)."""
    lines = ["# Generated by Mnemos (libs/runtime/nats_auth.py); do not edit: regenerated on",
             "# every identity change, then the server reloads it (SIGHUP).",
             "authorization {", "  users: ["]
    for identity in sorted(identities, key=lambda i: (i.kind, i.name)):
        lines += _render_user(identity)
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _validate_name(name: str, kind: IdentityKind) -> str:
    if kind == "service":
        if name not in SERVICES:
            raise InvalidInput(f"unknown service {name!r}", service=name)
    elif kind == "operator":
        if name != OPERATOR:
            raise InvalidInput("the operator identity is named 'operator'")
    elif not _NAME_RE.fullmatch(name) or name in SERVICES or name == OPERATOR:
        raise InvalidInput("identity names match [a-z0-9][a-z0-9-]{0,47} and are not a "
                           "service name", name=name[:80])
    return name


def _new_seed() -> tuple[bytes, str]:
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    public = pair.public_key.decode()
    pair.wipe()
    return bytes(seed), public


class BrokerIdentities:
    """The broker identities of one ``MNEMOS_HOME``: seeds, public registry, rendered config."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser()
        self.registry = self.home / "nats" / "identities.json"
        self.config = self.home / "nats" / AUTHORIZATION_FILE

    def seed_path(self, name: str) -> Path:
        """Where identity ``name``'s seed lives (``secrets/nats/<name>.nk``, 0600)."""
        return secret_path(self.home, "nats", f"{name}.nk")

    def identities(self) -> list[Identity]:
        """Every registered identity."""
        if not self.registry.exists():
            return []
        return list(msgspec.json.decode(read_secret(self.registry), type=list[Identity]))

    def _save(self, identities: list[Identity]) -> None:
        ordered = sorted(identities, key=lambda i: i.name)
        write_secret(self.registry, msgspec.json.format(msgspec.json.encode(ordered)))
        write_secret(self.config, render_authorization(ordered).encode())

    def add(self, name: str, kind: IdentityKind, namespaces: tuple[str, ...] = ()) -> Path:
        """Register ``name`` (a new seed if it has none); return its seed path.

        Re-adding an identity keeps its seed and replaces its namespaces.
        """
        _validate_name(name, kind)
        namespaces = tuple(sorted({validate_namespace(ns) for ns in namespaces}))
        if kind in ("agent", "subscriber") and not namespaces:
            raise InvalidInput(f"an {kind} identity needs at least one namespace")
        current = {i.name: i for i in self.identities()}
        previous = current.get(name)
        if previous is not None and previous.kind != kind:
            raise InvalidInput(f"{name!r} is already a {previous.kind} identity")
        path = self.seed_path(name)
        if previous is None or not path.exists():
            seed, public = _new_seed()
            write_secret(path, seed)
        else:
            public = previous.public_key
        current[name] = Identity(name=name, kind=kind, public_key=public, namespaces=namespaces)
        self._save(list(current.values()))
        return path

    def ensure_services(self) -> None:
        """Register every service and the operator (idempotent: existing seeds are kept)."""
        for name in SERVICES:
            self.add(name, "service")
        self.add(OPERATOR, "operator")

    def remove(self, name: str) -> None:
        """Drop identity ``name`` and its seed (after a reload its connections are closed)."""
        current = {i.name: i for i in self.identities()}
        if current.pop(name, None) is None:
            raise NotFound(f"no broker identity {name!r}", name=name[:80])
        self._save(list(current.values()))
        self.seed_path(name).unlink(missing_ok=True)

    def connect_options(self, name: str) -> dict[str, str]:
        """Keyword arguments of ``nats.connect`` for identity ``name``."""
        return {"nkeys_seed": str(self.seed_path(name)), "inbox_prefix": inbox_prefix(name)}


def reload_server(pid: int) -> None:
    """Ask a running nats-server to reload its configuration (new permissions apply at once)."""
    os.kill(pid, signal.SIGHUP)
