"""The broker enforces isolation: a real nats-server with the generated identities.

Every refusal here is the server's, not a client library's: publishes that break a permission
are dropped by the broker (and reported as a permissions violation), so a request times out
and nothing reaches the stream or the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.events.stream import EVENTS_STREAM
from libs.runtime.child_process import ChildServer
from libs.runtime.config import load_config
from libs.runtime.nats_auth import BrokerIdentities, reload_server, subscriber_consumer
from libs.runtime.nats_client import ensure_streams
from libs.runtime.nats_server import free_port, nats_server_binary

pytestmark = pytest.mark.integration

SHORT = 0.6
"""Seconds to wait for an answer that a refused publish will never get."""


class SecuredNats(ChildServer):
    """nats-server with JetStream and the generated ``authorization.conf`` included."""

    def __init__(self, home: Path) -> None:
        super().__init__()
        self.dir = home / "nats"
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.dir / "nats-server.conf"
        conf.write_text("\n".join([
            "host: 127.0.0.1", f"port: {self.port}", "server_name: isolation_test",
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}', 'include "authorization.conf"',
        ]) + "\n")
        log = (self.dir / "nats-server.log").open("ab")
        self.process = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.dir / "nats-server.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise TimeoutError("nats-server did not start")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def identities(home: Path) -> BrokerIdentities:
    ids = BrokerIdentities(home)
    ids.ensure_services()
    ids.add("agent-a", "agent", ("team-a",))
    ids.add("agent-b", "agent", ("team-b",))
    ids.add("watcher", "subscriber", ("team-a",))
    return ids


@pytest.fixture
def server(identities: BrokerIdentities, home: Path) -> Iterator[SecuredNats]:
    srv = SecuredNats(home)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Conn:
    """A connection as one identity, recording the server's asynchronous errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.disconnected = asyncio.Event()
        self.nc: Client | None = None

    async def open(self, url: str, options: dict[str, Any]) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        async def on_disconnect() -> None:
            self.disconnected.set()

        self.nc = await nats.connect(url, error_cb=on_error, disconnected_cb=on_disconnect,
                                     allow_reconnect=False, connect_timeout=2, **options)
        return self.nc

    async def violation(self, fragment: str) -> None:
        """Wait until the server reported a permissions violation mentioning ``fragment``."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            # nats-py lower-cases the server's -ERR text.
            if any("permissions violation" in e.lower() and fragment.lower() in e.lower()
                   for e in self.errors):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no violation for {fragment!r}; errors: {self.errors}")


@pytest.fixture
async def connect(server: SecuredNats, identities: BrokerIdentities
                  ) -> AsyncIterator[Any]:
    opened: list[Conn] = []

    async def as_identity(name: str) -> tuple[Client, Conn]:
        conn = Conn()
        nc = await conn.open(server.url, identities.connect_options(name))
        opened.append(conn)
        return nc, conn

    yield as_identity
    for conn in opened:
        if conn.nc is not None and not conn.nc.is_closed:
            await conn.nc.close()


@pytest.fixture
async def streams(connect: Any, home: Path) -> None:
    operator, _ = await connect("operator")
    await ensure_streams(operator.jetstream(), load_config(home=home))


async def echo_gateway(connect: Any) -> Client:
    """The gateway identity answering commands and queries (in its queue groups)."""
    gw, _ = await connect("gateway")

    async def answer(msg: Any) -> None:
        await msg.respond(json.dumps({"ok": True, "subject": msg.subject}).encode())

    await gw.subscribe("mnemos.cmd.>", queue="mnemos-command", cb=answer)
    await gw.subscribe("mnemos.qry.>", queue="mnemos-query", cb=answer)
    await gw.flush()
    client: Client = gw
    return client


async def stream_messages(connect: Any, subject: str) -> int:
    operator, _ = await connect("operator")
    info = await operator.jetstream().stream_info(EVENTS_STREAM, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_unauthenticated_and_unknown_clients_are_refused(
        server: SecuredNats, tmp_path: Path) -> None:
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=2,
                           max_reconnect_attempts=0)
    stranger = BrokerIdentities(tmp_path / "other-home")
    stranger.add("intruder", "agent", ("team-a",))
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=2,
                           max_reconnect_attempts=0, **stranger.connect_options("intruder"))


async def test_agent_requests_its_own_namespace_only(connect: Any, streams: None) -> None:
    await echo_gateway(connect)
    agent, conn = await connect("agent-a")
    reply = await agent.request("mnemos.cmd.team-a.remember", b"{}", timeout=2)
    assert json.loads(reply.data)["subject"] == "mnemos.cmd.team-a.remember"
    reply = await agent.request("mnemos.qry.team-a.search", b"{}", timeout=2)
    assert json.loads(reply.data)["ok"]
    with pytest.raises(NatsTimeout):
        await agent.request("mnemos.cmd.team-b.remember", b"{}", timeout=SHORT)
    await conn.violation("mnemos.cmd.team-b.remember")


async def test_agent_cannot_forge_events(connect: Any, streams: None) -> None:
    agent, conn = await connect("agent-a")
    forged = b'{"type":"MemoryForgotten","ns":"team-a","data":{"reason":"forged"}}'
    subject = "mnemos.evt.team-a.memory.m1"
    with pytest.raises(NatsTimeout):
        await agent.jetstream().publish(subject, forged, timeout=SHORT)
    await agent.publish(subject, forged)
    await agent.flush()
    await conn.violation(subject)
    assert await stream_messages(connect, "mnemos.evt.>") == 0
    # Nor can it reach the JetStream API (no stream info, no consumers, no direct gets).
    with pytest.raises(NatsTimeout):
        await agent.request(f"$JS.API.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=SHORT)
    with pytest.raises(NatsTimeout):
        await agent.request(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}.mnemos.evt.team-a.>",
                            b"", timeout=SHORT)


async def test_agent_cannot_watch_commands_or_others_replies(connect: Any,
                                                             streams: None) -> None:
    await echo_gateway(connect)
    spy, conn = await connect("agent-a")
    seen: list[str] = []

    async def record(msg: Any) -> None:
        seen.append(msg.subject)

    for subject in ("mnemos.cmd.>", "mnemos.cmd.team-b.>", "mnemos.evt.>", "_INBOX.>",
                    "_INBOX_agent-b.>", ">"):
        await spy.subscribe(subject, cb=record)
        await spy.flush()
        await conn.violation(subject)
    victim, _ = await connect("agent-b")
    reply = await victim.request("mnemos.cmd.team-b.remember", b'{"content":"secret"}',
                                 timeout=2)
    assert json.loads(reply.data)["ok"]
    await asyncio.sleep(0.2)
    assert seen == []


async def test_only_the_gateway_queue_group_may_take_commands(connect: Any) -> None:
    gw, conn = await connect("gateway")
    await gw.subscribe("mnemos.cmd.>")  # no queue group: it would shadow-read every command
    await gw.flush()
    await conn.violation("mnemos.cmd.>")


async def test_services_do_their_job(connect: Any, streams: None) -> None:
    gw = await echo_gateway(connect)
    js = gw.jetstream()
    first = await js.publish("mnemos.evt.team-a.memory.m1", b'{"n":1}', timeout=2)
    await js.publish("mnemos.evt.team-b.memory.m2", b'{"n":2}', timeout=2)
    assert first.seq == 1
    last = await js.get_last_msg(EVENTS_STREAM, "mnemos.evt.team-a.memory.m1", direct=True)
    assert last.data == b'{"n":1}'
    # The gateway may not sign audit checkpoints; the auditor may, and nothing else.
    with pytest.raises(NatsTimeout):
        await js.publish("mnemos.evt.system.audit.chain", b"{}", timeout=SHORT)
    auditor, auditor_conn = await connect("auditor")
    ack = await auditor.jetstream().publish("mnemos.evt.system.audit.chain", b"{}", timeout=2)
    assert ack.seq == 3
    with pytest.raises(NatsTimeout):
        await auditor.jetstream().publish("mnemos.evt.team-a.memory.m9", b"{}", timeout=SHORT)
    await auditor_conn.violation("mnemos.evt.team-a.memory.m9")
    # The projector creates its durable consumer, pulls and acknowledges.
    projector, _ = await connect("projector")
    pjs = projector.jetstream()
    await pjs.add_consumer(EVENTS_STREAM, ConsumerConfig(
        name="projector", durable_name="projector", filter_subject="mnemos.evt.>",
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL))
    sub = await pjs.pull_subscribe_bind("projector", stream=EVENTS_STREAM)
    msgs = await sub.fetch(3, timeout=2)
    assert [m.subject for m in msgs][:2] == ["mnemos.evt.team-a.memory.m1",
                                             "mnemos.evt.team-b.memory.m2"]
    for msg in msgs:
        await msg.ack_sync(timeout=2)
    # ... and its dead letters, but not another service's consumer.
    await pjs.publish("mnemos.dlq.projector.team-a", b"poison", timeout=2)
    with pytest.raises(NatsTimeout):
        await pjs.add_consumer(EVENTS_STREAM, ConsumerConfig(
            name="compressor", filter_subject="mnemos.evt.>"), timeout=SHORT)
    # Commands round-trip through the gateway for the operator too.
    operator, _ = await connect("operator")
    assert json.loads((await operator.request("mnemos.cmd.any-ns.x", b"", timeout=2)).data)["ok"]


async def test_nobody_can_delete_or_purge_the_stream(connect: Any, streams: None) -> None:
    for name in ("operator", "gateway"):
        nc, conn = await connect(name)
        with pytest.raises(NatsTimeout):
            await nc.request(f"$JS.API.STREAM.PURGE.{EVENTS_STREAM}", b"", timeout=SHORT)
        with pytest.raises(NatsTimeout):
            await nc.request(f"$JS.API.STREAM.DELETE.{EVENTS_STREAM}", b"", timeout=SHORT)
        await conn.violation(f"$JS.API.STREAM.DELETE.{EVENTS_STREAM}")
    operator, _ = await connect("operator")
    assert (await operator.jetstream().stream_info(EVENTS_STREAM)).config.deny_purge


async def test_event_subscriber_reads_only_its_namespaces(connect: Any, streams: None) -> None:
    gw, _ = await connect("gateway")
    for ns in ("team-a", "team-b", "team-a", "team-b"):
        await gw.jetstream().publish(f"mnemos.evt.{ns}.memory.m", ns.encode(), timeout=2)
    watcher, conn = await connect("watcher")
    wjs = watcher.jetstream()
    name = subscriber_consumer("watcher", "team-a")
    await wjs.add_consumer(EVENTS_STREAM, ConsumerConfig(
        name=name, filter_subject="mnemos.evt.team-a.>", ack_policy=AckPolicy.EXPLICIT))
    sub = await wjs.pull_subscribe_bind(name, stream=EVENTS_STREAM)
    msgs = await sub.fetch(10, timeout=1)
    assert [m.data for m in msgs] == [b"team-a", b"team-a"]
    for msg in msgs:
        await msg.ack()
    # Another namespace, every namespace, or its own name with a wider filter: refused.
    for filter_subject in ("mnemos.evt.team-b.>", "mnemos.evt.>", ">"):
        with pytest.raises(NatsTimeout):
            await wjs.add_consumer(EVENTS_STREAM, ConsumerConfig(
                name=name, filter_subject=filter_subject), timeout=SHORT)
    await conn.violation(f"CREATE.{EVENTS_STREAM}.{name}.mnemos.evt.team-b.>")
    # The subject it may use, with a body asking for more: the server checks they agree.
    for config in ({"name": name, "filter_subject": "mnemos.evt.team-b.>"},
                   {"name": name, "filter_subjects": ["mnemos.evt.team-a.>",
                                                      "mnemos.evt.team-b.>"]}):
        raw = await watcher.request(
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{name}.mnemos.evt.team-a.>",
            json.dumps({"stream_name": EVENTS_STREAM, "config": config}).encode(), timeout=2)
        assert "error" in json.loads(raw.data), raw.data
    # Nor may it pull from a service's consumer.
    operator, _ = await connect("operator")
    await operator.jetstream().add_consumer(EVENTS_STREAM, ConsumerConfig(
        name="projector", filter_subject="mnemos.evt.>"))
    with pytest.raises(NatsTimeout):
        await watcher.request(f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.projector",
                              b'{"batch": 10}', timeout=SHORT)
    await conn.violation("MSG.NEXT")


async def test_reload_applies_changes_to_live_connections(
        connect: Any, streams: None, server: SecuredNats,
        identities: BrokerIdentities) -> None:
    await echo_gateway(connect)
    agent_b, conn_b = await connect("agent-b")
    agent_a, conn_a = await connect("agent-a")
    with pytest.raises(NatsTimeout):
        await agent_a.request("mnemos.cmd.team-c.x", b"", timeout=SHORT)
    identities.add("agent-a", "agent", ("team-a", "team-c"))  # a new namespace
    identities.remove("agent-b")  # revoked
    assert server.process is not None
    reload_server(server.process.pid)
    await asyncio.wait_for(conn_b.disconnected.wait(), timeout=5)
    assert agent_b.is_closed or not agent_b.is_connected
    deadline = time.monotonic() + 5
    while True:
        try:
            reply = await agent_a.request("mnemos.cmd.team-c.x", b"", timeout=SHORT)
            break
        except NatsTimeout:
            assert time.monotonic() < deadline, conn_a.errors
    assert json.loads(reply.data)["ok"]
    assert not identities.seed_path("agent-b").exists()
