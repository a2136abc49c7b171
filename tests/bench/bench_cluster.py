"""Write availability while a node of the 3-node R3 cluster is lost (issue 17 item 5).

Run: ``python -m tests.bench.bench_cluster [--before 15] [--down 30] [--after 15]
[--inflight 64] [--via nats|http] [--victim leader|follower] [--sync always|2m]``

The deploy/nats cluster as shipped (TLS, broker identities, ``sync_interval: always`` unless
``--sync``), Postgres with the read models, and one gateway (``mnemos serve command``) as its
own process. Clients send ``remember`` (NATS request-reply as the operator identity, or HTTP),
``--inflight`` at a time, for the whole run, each with its own ``command_id``; a command
answered with an outage (``unavailable``/5xx, a timeout, a transport error) is retried under the
same ``command_id``, as a client should. After ``--before`` seconds the event stream's leader (or a
follower) is SIGKILLed; it is restarted ``--down`` seconds later, and writing goes on for
``--after`` seconds. Printed: acknowledged writes/s before, while the node is down and after
its restart; the longest time without any acknowledged write (and when it began, relative to
the kill); retries; how long the restarted node took to hold the same stream again; and, read
back from the stream by ``Nats-Msg-Id``, acknowledged events lost or stored twice (must be 0).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.errors

from libs.events import EVENTS_STREAM
from libs.events.ids import new_command_id
from libs.readmodel.schema import prepare_schema
from libs.runtime.nats_client import connect_nats
from libs.runtime.nats_server import free_port
from libs.runtime.postgres_server import PostgresServer
from tests.bench.bench_durability import Broker, start_gateway
from tests.bench.harness import percentile, progress, report_line
from tests.integration.test_cluster import (
    operator_js,
    replica_states,
    stored_event_ids,
    stream_leader,
    wait_replicas_equal,
)
from tests.support.cluster import NatsCluster

NS = "bench"


@dataclass
class Writes:
    """Every acknowledged write (when, and its event id) and the outages met on the way."""

    acked_at: list[float] = field(default_factory=list)
    event_ids: dict[str, str] = field(default_factory=dict)
    """command id -> event id."""
    retries: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    """Outage answers by kind (HTTP status or transport error), the retries' reasons."""
    samples: dict[str, str] = field(default_factory=dict)
    """The first answer of each kind, for the report."""
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """(acknowledged at, seconds since the command was first sent) of every write."""

    def count(self, start: float, end: float) -> int:
        """Writes acknowledged in ``[start, end)``."""
        return sum(1 for t in self.acked_at if start <= t < end)

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time without an acknowledgement in ``[start, end]`` and when it began."""
        times = [start, *sorted(t for t in self.acked_at if start <= t <= end), end]
        return max((b - a, a) for a, b in itertools.pairwise(times))


Answer = tuple[str | None, str, str]
"""(event id if acknowledged, kind of answer, its text) of one attempt."""
Send = Callable[[dict[str, str]], Awaitable[Answer]]


def http_sender(http: httpx.AsyncClient) -> Send:
    """``POST /v1/<ns>/memories`` to the gateway; 5xx and transport errors are outages."""

    async def send(body: dict[str, str]) -> Answer:
        try:
            answer = await http.post(f"/v1/{NS}/memories", json=body)
        except httpx.TransportError as exc:
            return None, type(exc).__name__, str(exc)
        if answer.status_code in (200, 201):
            return str(answer.json()["event_id"]), "ok", ""
        if answer.status_code < 500:
            raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
        return None, str(answer.status_code), answer.text

    return send


def nats_sender(nc: Any) -> Send:
    """``mnemos.cmd.<ns>.remember`` request-reply; ``unavailable`` answers, timeouts and
    connection errors are outages."""

    async def send(body: dict[str, str]) -> Answer:
        try:
            msg = await nc.request(f"mnemos.cmd.{NS}.remember", json.dumps(body).encode(),
                                   timeout=15)
        except (nats.errors.Error, TimeoutError) as exc:
            return None, type(exc).__name__, str(exc)
        reply = json.loads(msg.data)
        if reply.get("ok"):
            return str(reply["result"]["event_id"]), "ok", ""
        code = str((reply.get("error") or {}).get("code"))
        if code not in ("unavailable", "internal"):
            raise RuntimeError(f"refused: {msg.data[:300]!r}")
        return None, code, msg.data.decode(errors="replace")

    return send


async def writer(send: Send, writes: Writes, stop_at: list[float]) -> None:
    """Send ``remember`` commands one after another until ``stop_at[0]``; each is retried under
    its command id until acknowledged."""
    while time.monotonic() < stop_at[0]:
        command_id = new_command_id()
        body = {"content": f"availability fact {command_id}", "command_id": command_id}
        sent = time.monotonic()
        while True:
            event_id, kind, text = await send(body)
            if event_id is not None:
                now = time.monotonic()
                writes.acked_at.append(now)
                writes.latencies.append((now, now - sent))
                writes.event_ids[command_id] = event_id
                break
            writes.retries += 1
            writes.answers[kind] = writes.answers.get(kind, 0) + 1
            writes.samples.setdefault(kind, text[:200])
            await asyncio.sleep(0.05)


def _rate(writes: Writes, start: float, end: float) -> str:
    took = [d for at, d in writes.latencies if start <= at < end]
    p50, p99 = (percentile(took, q) * 1000 for q in (50, 99)) if took else (0.0, 0.0)
    latency = f", p50 {p50:,.0f} ms, p99 {p99:,.0f} ms (retries included)" if took else ""
    return (f"{writes.count(start, end) / (end - start):,.0f} writes/s over {end - start:.1f} s"
            f"{latency}")


@dataclass
class Timeline:
    """When each phase began (monotonic seconds) and what the stream held at the end."""

    began: float = 0.0
    killed: float = 0.0
    restarted: float = 0.0
    ended: float = 0.0
    caught_up: float = 0.0
    target_seq: int = 0
    victim: str = ""
    leader_after: str = ""
    messages: int = 0
    last_seq: int = 0
    stored: dict[str, int] = field(default_factory=dict)


async def caught_up(nodes: NatsCluster, name: str, seq: int, timeout_s: float = 600) -> float:
    """When node ``name`` stores the event stream up to ``seq`` (monotonic seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = (await asyncio.to_thread(replica_states, nodes)).get(name)
        if state is not None and state[1] >= seq:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} did not reach seq {seq}")


async def burst_with_a_node_loss(args: argparse.Namespace, nodes: NatsCluster, port: int,
                                 writes: Writes) -> Timeline:
    """Write for the whole run, SIGKILL a node after ``--before``, restart it ``--down`` later."""
    t = Timeline()
    broker = Broker("r3", nodes.url, 3, nodes.home, nodes.ca_file)
    nc = await connect_nats(nodes.url, "bench-cluster", broker.options("operator"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http, \
            operator_js(nodes) as js:
        send = http_sender(http) if args.via == "http" else nats_sender(nc)
        t.began = time.monotonic()
        stop_at = [t.began + args.before + args.down + args.after]
        workers = [asyncio.create_task(writer(send, writes, stop_at))
                   for _ in range(args.inflight)]
        await asyncio.sleep(args.before)
        leader = await stream_leader(js)
        victim = (nodes.node(leader) if args.victim == "leader"
                  else next(n for n in nodes.nodes if n.server_name != leader))
        t.victim = victim.server_name
        progress(f"SIGKILL {victim.server_name} ({args.victim}; stream leader {leader})")
        t.killed = time.monotonic()
        victim.kill()
        await asyncio.sleep(args.down)
        progress(f"restarting {victim.server_name}")
        t.restarted = time.monotonic()
        t.target_seq = int((await js.stream_info(EVENTS_STREAM)).state.last_seq or 0)
        await asyncio.to_thread(victim.start)
        catching = asyncio.create_task(caught_up(nodes, victim.server_name, t.target_seq))
        await asyncio.gather(*workers)
        t.ended = time.monotonic()
        t.caught_up = await catching
        t.messages, t.last_seq = await wait_replicas_equal(nodes, timeout_s=600)
        t.leader_after = await stream_leader(js)
        t.stored = dict(await stored_event_ids(js))
    await nc.close()
    return t


def report(args: argparse.Namespace, writes: Writes, t: Timeline) -> None:
    """Print the figures of one run."""
    gap, gap_at = writes.longest_gap(t.began, t.ended)
    acked = set(writes.event_ids.values())
    lost = sum(1 for e in acked if t.stored.get(e, 0) == 0)
    twice = sum(1 for e in acked if t.stored.get(e, 0) > 1)
    report_line("cluster", f"3 nodes, R3, sync_interval {args.sync}, {args.inflight} writers "
                           f"over {args.via}, killed the stream {args.victim} {t.victim}")
    report_line("writes/s before the kill", _rate(writes, t.began, t.killed))
    report_line("writes/s with the node down", _rate(writes, t.killed, t.restarted))
    report_line("writes/s after its restart", _rate(writes, t.restarted, t.ended))
    report_line("longest time without an acknowledged write",
                f"{gap:.2f} s, from {gap_at - t.killed:+.2f} s after the kill")
    report_line("first 10 s after the kill", f"{writes.count(t.killed, t.killed + 10)} writes")
    report_line("retries (same command id)", f"{writes.retries} {dict(writes.answers)}")
    for kind, sample in writes.samples.items():
        report_line(f"  first {kind} answer", sample)
    report_line("stream leader after", t.leader_after)
    report_line("restarted node caught up",
                f"holds seq {t.target_seq:,} (the stream's end at its restart) "
                f"{t.caught_up - t.restarted:.1f} s after the restart (process start included); "
                f"all three equal at the end ({t.messages:,} messages)")
    report_line("acknowledged writes", f"{len(writes.event_ids):,}")
    report_line("acknowledged events lost / stored twice", f"{lost} / {twice}")
    report_line("events in the stream not acknowledged",
                f"{sum(t.stored.values()) - sum(t.stored.get(e, 0) for e in acked)}")
    report_line("machine load (1-min average) at the end", f"{os.getloadavg()[0]:.2f}")


async def run(args: argparse.Namespace, root: Path) -> None:
    """Servers up, the burst with its node loss, servers down, figures printed."""
    postgres = PostgresServer(root / "pg")
    postgres.start()
    nodes = NatsCluster(root / "cluster", root / "home",
                        None if args.sync == "always" else args.sync)
    gateway = None
    writes = Writes()
    try:
        # The read models exist, so the gateway knows a new command id is unused and a retried
        # command is appended once.
        await asyncio.to_thread(prepare_schema, postgres.url, "mnemos", 384)
        progress("starting the cluster")
        nodes.start()
        broker = Broker("r3", nodes.url, 3, nodes.home, nodes.ca_file)
        port = free_port()
        gateway = start_gateway(broker, postgres.url, root, port)
        timeline = await burst_with_a_node_loss(args, nodes, port, writes)
    finally:
        if gateway is not None:
            gateway.terminate()
            with contextlib.suppress(Exception):
                gateway.wait(30)
        nodes.stop()
        postgres.stop()
    report(args, writes, timeline)
    errors = [line for line in (root / "gateway-3.log").read_text(errors="replace").splitlines()
              if "error" in line.lower()]
    report_line("gateway log lines naming an error", str(len(errors)))
    for line in errors[:3]:
        report_line("  e.g.", line[:400])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=float, default=15.0)
    parser.add_argument("--down", type=float, default=30.0)
    parser.add_argument("--after", type=float, default=15.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--via", choices=("nats", "http"), default="nats",
                        help="remember over NATS request-reply or the gateway's HTTP route")
    parser.add_argument("--victim", choices=("leader", "follower"), default="leader")
    parser.add_argument("--sync", default="always",
                        help="sync_interval of the nodes (always as shipped, or e.g. 2m)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mnemos-bench-cluster-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
