"""A real 3-node NATS cluster (the deploy/nats configuration: TLS, mutual TLS on routes, broker
identities) under faults (issue 17 item 2).

- The gateway, connected with its nkey over TLS, takes a burst of ``remember`` commands with an
  R3 stream while the stream leader is SIGKILLed: every acknowledged command's event is in the
  stream exactly once, writes go on with one node down, and the restarted node catches up.
- Two projector processes share the work as leader and hot standby: the active one is
  SIGKILLed mid-burst, the standby takes over, every memory is projected exactly once and the
  checkpoint reaches the stream's last sequence.
- Only the nodes (route certificates of the cluster CA) and known identities (nkeys, over TLS
  with the cluster CA) get in.

Waits are generous and bounded (a loaded 2-core machine); nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest

from libs.events import EVENTS_STREAM
from libs.events.ids import new_command_id
from libs.readmodel.schema import prepare_schema
from libs.runtime.config import Config, load_config
from libs.runtime.logging import get_logger
from libs.runtime.nats_client import connect_nats, nats_credentials, tls_context
from libs.runtime.nats_server import NatsServer, free_port
from tests.integration.test_fault_projector_kill import Fleet
from tests.support.cluster import ClusterNode, NatsCluster, running_cluster, write_certificates
from tests.support.events import checkpoint, read_models, rows, wait_checkpoint
from tests.support.services import running_gateway_alone

pytestmark = pytest.mark.integration
log = get_logger(__name__)

NS = "cluster"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server processes running the deploy/nats cluster configuration."""
    with running_cluster(tmp_path / "cluster", tmp_path / "home") as started:
        yield started


def cluster_config(cluster: NatsCluster, database_url: str, identity: str) -> Config:
    """A service's configuration against ``cluster``: its nkey, TLS, R3 streams."""
    return load_config(home=cluster.home, nats_url=cluster.url, nats_tls_ca=cluster.ca_file,
                       nats_identity=identity, stream_replicas=3, database_url=database_url,
                       http_port=free_port(), auth="off")


class Burst:
    """``remember`` commands sent with ``concurrency`` in flight; a command whose answer is an
    outage (5xx, transport error) is retried with the same ``command_id`` until acknowledged."""

    def __init__(self, http: httpx.AsyncClient, concurrency: int = 8) -> None:
        self.http, self.concurrency = http, concurrency
        self.acked: dict[str, str] = {}
        """command id -> event id of every acknowledged command."""
        self.retries = 0
        self.node_down = False
        self.acked_while_down = 0
        self.down_since = 0.0
        self.longest_gap_s = 0.0
        """Longest time without any acknowledgement while the node was down (the election)."""
        self._last_ack = 0.0
        self._progress = asyncio.Event()

    async def _send(self, label: str, deadline: float) -> None:
        body = {"content": f"cluster fact {label}", "command_id": new_command_id()}
        while time.monotonic() < deadline:
            try:
                answer = await self.http.post(f"/v1/{NS}/memories", json=body)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code in (200, 201):
                self.acked[str(body["command_id"])] = answer.json()["event_id"]
                now = time.monotonic()
                if self.node_down:
                    self.acked_while_down += 1
                    self.longest_gap_s = max(self.longest_gap_s,
                                             now - max(self._last_ack, self.down_since))
                self._last_ack = now
                self._progress.set()
                return
            if answer is not None and answer.status_code < 500:
                raise AssertionError(f"{answer.status_code}: {answer.text}")
            self.retries += 1
            await asyncio.sleep(0.2)
        raise AssertionError(f"command {label} never acknowledged")

    async def run(self, prefix: str, count: int, timeout_s: float = 240.0) -> None:
        """Send ``count`` commands; return once every one is acknowledged."""
        slots = asyncio.Semaphore(self.concurrency)
        deadline = time.monotonic() + timeout_s

        async def one(i: int) -> None:
            async with slots:
                await self._send(f"{prefix}-{i}", deadline)

        await asyncio.gather(*(one(i) for i in range(count)))

    async def wait_acked(self, count: int, timeout_s: float = 120.0) -> None:
        """Until ``count`` commands are acknowledged."""
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} acknowledged"
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 1.0)


async def stream_leader(js: Any) -> str:
    """Server name of the event stream's leader (waits out an election)."""
    for _ in range(600):
        with contextlib.suppress(nats.errors.Error, TimeoutError):  # mid-election, reconnecting
            info = await js.stream_info(EVENTS_STREAM)
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
        await asyncio.sleep(0.1)
    raise AssertionError("the event stream has no leader")


async def stored_event_ids(js: Any) -> collections.Counter[str]:
    """How often each event id (``Nats-Msg-Id``) is in the event stream."""
    info = await js.stream_info(EVENTS_STREAM)
    found: collections.Counter[str] = collections.Counter()
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        msg = await js.get_msg(EVENTS_STREAM, seq)
        found[(msg.headers or {})["Nats-Msg-Id"]] += 1
    return found


def replica_states(cluster: NatsCluster) -> dict[str, tuple[int, int]]:
    """``(messages, last_seq)`` of the event stream as each running node stores it."""
    states: dict[str, tuple[int, int]] = {}
    for node in cluster.nodes:
        if not node.running:
            continue
        with contextlib.suppress(OSError):
            jsz = node.jsz(query="accounts=true&streams=true")
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    if stream["name"] == EVENTS_STREAM:
                        state = stream["state"]
                        states[node.server_name] = (int(state["messages"]),
                                                    int(state["last_seq"]))
    return states


async def wait_replicas_equal(cluster: NatsCluster, timeout_s: float = 120.0
                              ) -> tuple[int, int]:
    """Until the three nodes store the same event stream; that state."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = await asyncio.to_thread(replica_states, cluster)
        if len(states) == len(cluster.nodes) and len(set(states.values())) == 1:
            return next(iter(states.values()))
        assert time.monotonic() < deadline, f"replicas differ: {states}"
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def operator_js(cluster: NatsCluster) -> AsyncIterator[Any]:
    """A JetStream context as the operator identity (reads both streams)."""
    config = load_config(home=cluster.home, nats_url=cluster.url, nats_tls_ca=cluster.ca_file,
                         nats_identity="operator")
    nc = await connect_nats(cluster.url, "tests-cluster", nats_credentials(config))
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


@pytest.mark.timeout(600)
async def test_a_killed_stream_leader_loses_no_acknowledged_command_and_catches_up(
        cluster: NatsCluster, database_url: str) -> None:
    config = cluster_config(cluster, database_url, "gateway")
    # The read models exist (no projector needed): the gateway then knows a new command id is
    # unused, so a command that met the outage is retried under the same id.
    await asyncio.to_thread(prepare_schema, database_url, config.db_schema, 384)
    async with running_gateway_alone(config) as http, operator_js(cluster) as js:
        burst = Burst(http)
        writing = asyncio.create_task(burst.run("before", 240))
        await burst.wait_acked(60)
        victim = cluster.node(await stream_leader(js))
        assert not writing.done()
        victim.kill()  # SIGKILL mid-burst: no shutdown, no flush
        burst.node_down, burst.down_since = True, time.monotonic()
        await writing
        log.info("cluster_burst_survived", killed=victim.server_name, retries=burst.retries,
                 acked_while_down=burst.acked_while_down,
                 longest_gap_s=round(burst.longest_gap_s, 2))
        # One node down: a new leader was elected and the gateway keeps accepting writes.
        await burst.run("while-down", 60)
        new_leader = await stream_leader(js)
        victim.start()
        cluster.wait_meta_leader()
        messages, last_seq = await wait_replicas_equal(cluster)
        stored = await stored_event_ids(js)
    assert new_leader != victim.server_name
    assert burst.acked_while_down >= 60
    assert len(burst.acked) == 300
    # Every acknowledged command's event is stored once; nothing else was appended.
    assert {event_id: stored[event_id] for event_id in burst.acked.values()} == {
        event_id: 1 for event_id in burst.acked.values()}
    assert sum(stored.values()) == messages == last_seq == 300


@pytest.mark.timeout(600)
async def test_two_projectors_on_the_cluster_project_every_memory_once(
        cluster: NatsCluster, database_url: str, tmp_path: Path) -> None:
    config = cluster_config(cluster, database_url, "gateway")
    fleet = Fleet(config, tmp_path)
    fleet.env.update({"MNEMOS_HOME": str(cluster.home), "MNEMOS_NATS_URL": cluster.url,
                      "MNEMOS_NATS_TLS_CA": str(cluster.ca_file),
                      "MNEMOS_STREAM_REPLICAS": "3"})
    try:
        async with running_gateway_alone(config) as http, operator_js(cluster) as js:
            burst = Burst(http)  # the gateway declared the R3 streams at start
            fleet.spawn()
            leader = await fleet.leader(timeout_s=120)
            fleet.spawn()  # the hot standby
            await burst.run("warmup", 10)  # once the projector created the read models
            writing = asyncio.create_task(burst.run("burst", 190))
            await burst.wait_acked(70)
            fleet.kill(leader)
            killed_at = await checkpoint(config.database_url or "")
            successor = await fleet.leader(not_pid=leader, timeout_s=120)
            await writing
            last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq or 0)
            await wait_checkpoint(config.database_url or "", last, timeout_s=240)
    finally:
        fleet.stop()
    assert successor != leader and last == len(burst.acked) == 200
    assert killed_at < last  # the standby projected what came after the kill
    async with read_models(config.database_url or "") as conn:
        memories = await rows(conn, "SELECT count(*) AS n, count(DISTINCT memory_id) AS d,"
                              " count(DISTINCT content) AS c FROM memories")
        events = await rows(conn, "SELECT count(*) AS n, count(DISTINCT event_id) AS d,"
                            " max(seq) AS last FROM memory_events")
        letters = await rows(conn, "SELECT count(*) AS n FROM dead_letters")
    assert memories == [{"n": 200, "d": 200, "c": 200}]
    assert events == [{"n": 200, "d": 200, "last": last}]
    assert letters == [{"n": 0}]


def _routed_peers(node: ClusterNode) -> set[str]:
    """Server names of the routes ``node`` has established."""
    routes = node.monitor("routez").get("routes") or []
    return {str(route.get("remote_name")) for route in routes}


class RogueNode(NatsServer):
    """A nats-server that tries to join the cluster as a route: it trusts the cluster's CA, but
    its own route certificate was signed by another CA (what an attacker on the network could
    run). Only the nodes' verification of route client certificates can stop it."""

    def __init__(self, root: Path, cluster_ca: Path, seed: ClusterNode) -> None:
        super().__init__(root, port=free_port())
        self.foreign = write_certificates(root / "tls").parent
        self.cluster_ca, self.seed = cluster_ca, seed

    def _write_config(self) -> Path:
        conf = super()._write_config()
        text = conf.read_text().replace("server_name: mnemos_embedded", "server_name: rogue")
        conf.write_text(text + "\n".join([
            "cluster {", "  name: mnemos", f"  port: {free_port()}", "  tls {",
            f'    cert_file: "{self.foreign / "route-cert.pem"}"',
            f'    key_file: "{self.foreign / "route-key.pem"}"',
            f'    ca_file: "{self.cluster_ca}"', "    verify: true", "  }",
            f"  routes: [nats-route://127.0.0.1:{self.seed.route_port}]", "}", ""]))
        return conf


async def test_the_cluster_admits_only_its_nodes_and_known_identities(
        cluster: NatsCluster, tmp_path: Path) -> None:
    seed = cluster.nodes[0]
    peers = {n.server_name for n in cluster.nodes[1:]}
    assert _routed_peers(seed) == peers
    # A client needs the cluster CA to trust the server, and an nkey the cluster knows.
    quiet: dict[str, Any] = {"connect_timeout": 3, "allow_reconnect": False,
                             "max_reconnect_attempts": 0}
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await nats.connect(seed.url, **quiet)
    tls_only = {"tls": tls_context(cluster.ca_file), **quiet}
    with pytest.raises(Exception, match=r"[Aa]uthorization"):
        await nats.connect(seed.url, **tls_only)
    # A server whose route certificate another CA signed is refused by the mutual TLS of routes.
    rogue = RogueNode(tmp_path / "rogue", cluster.ca_file, seed)
    rogue.start()
    try:
        seed_log = seed.store_dir / "nats-server.log"
        deadline = time.monotonic() + 60
        # The seed itself refuses the rogue's route certificate.
        while not any("TLS route handshake error" in line and "unknown authority" in line
                      for line in seed_log.read_text().splitlines()):
            assert time.monotonic() < deadline, "the rogue never tried its route"
            await asyncio.sleep(0.2)
        assert _routed_peers(seed) == peers
    finally:
        rogue.stop()
