"""Benchmark of the durability choices (issue 17 item 4), all measured in one run.

Run: ``python -m tests.bench.bench_durability [--messages 5000] [--commands 2000] [--inflight 64]``

Setups, each on fresh servers:

1. single node, ``sync_interval: always`` (what ``mnemos up`` and deploy/nats/single-node.conf
   ship): every write fsynced before its acknowledgement;
2. single node, ``sync_interval: 2m`` (the NATS default): fsync every two minutes;
3. 3-node R3 cluster from deploy/nats with ``sync_interval: 2m``: an acknowledgement means a
   quorum (2 of 3) has the write in memory, fsynced later;
4. the same cluster as shipped (``sync_interval: always``): a quorum has it on disk.

For each: raw ``js.publish`` (``--inflight`` in flight, acknowledged by JetStream) and
``remember`` through the gateway (``mnemos serve command``, NATS request-reply, same number in
flight): rate, p50 and p99 acknowledgement latency, and the rate as a ratio to setup 1;
medians over ``--rounds`` rounds in rotated order, since other work on the machine drifts. The
cluster runs TLS and broker identities as deployed; the single nodes run open, as in
bench_spine. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from libs.events.stream import events_stream_config
from libs.readmodel.schema import prepare_schema
from libs.runtime.config import load_config
from libs.runtime.nats_client import connect_nats, nats_credentials
from libs.runtime.nats_server import NatsServer, free_port
from libs.runtime.postgres_server import PostgresServer
from tests.bench.harness import percentile, progress, report_line
from tests.support.cluster import NatsCluster

NS = "bench"


@dataclass(frozen=True)
class Broker:
    """Where one setup's broker is and how a client of a given identity connects to it."""

    label: str
    url: str
    replicas: int
    home: Path
    ca_file: Path | None

    def options(self, identity: str) -> dict[str, Any]:
        """``nats.connect`` options of ``identity`` (none on an open single node)."""
        if self.ca_file is None:
            return {}
        return nats_credentials(load_config(home=self.home, nats_identity=identity,
                                            nats_tls_ca=self.ca_file))

    def service_env(self) -> dict[str, str]:
        """``MNEMOS_*`` settings of a service against this broker."""
        env = {"MNEMOS_NATS_URL": self.url, "MNEMOS_HOME": str(self.home),
               "MNEMOS_STREAM_REPLICAS": str(self.replicas)}
        if self.ca_file is not None:
            env["MNEMOS_NATS_TLS_CA"] = str(self.ca_file)
        return env


@dataclass(frozen=True)
class Figures:
    """Rate and acknowledgement latencies (seconds) of one measurement."""

    rate: float
    p50: float
    p99: float


@contextlib.contextmanager
def single_node(workdir: Path, label: str, sync: str) -> Iterator[Broker]:
    """One open nats-server with ``sync_interval: <sync>``."""
    server = NatsServer(workdir / "nats", free_port(), sync)
    server.start()
    try:
        yield Broker(label, server.url, 1, workdir / "home", None)
    finally:
        server.stop()


@contextlib.contextmanager
def cluster(workdir: Path, label: str, sync: str | None) -> Iterator[Broker]:
    """The deploy/nats 3-node cluster; ``sync`` None keeps the shipped fsync policy."""
    nodes = NatsCluster(workdir / "cluster", workdir / "home", sync)
    try:
        nodes.start()
        yield Broker(label, nodes.url, 3, nodes.home, nodes.ca_file)
    finally:
        nodes.stop()


async def _timed(count: int, inflight: int, send: Any) -> Figures:
    latencies: list[float] = []
    gate = asyncio.Semaphore(inflight)

    async def one(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - began
    return Figures(count / elapsed, percentile(latencies, 50), percentile(latencies, 99))


async def raw_publish(broker: Broker, count: int, inflight: int) -> Figures:
    """``js.publish`` to the event stream itself (its production settings, the setup's
    replicas), as the gateway identity; the gateway later appends beside these messages."""
    nc = await connect_nats(broker.url, "bench-durability", broker.options("gateway"))
    js = nc.jetstream()
    await js.add_stream(events_stream_config(broker.replicas))
    payload = b'{"content":"' + b"x" * 500 + b'"}'

    async def send(i: int) -> None:
        await js.publish(f"mnemos.evt.{NS}.raw.m{i}", payload,
                         headers={"Nats-Msg-Id": f"raw-{i}"})

    try:
        return await _timed(count, inflight, send)
    finally:
        await nc.close()


def start_gateway(broker: Broker, database_url: str, logs: Path, port: int | None = None
                  ) -> subprocess.Popen[bytes]:
    """``mnemos serve command`` against ``broker`` on HTTP ``port`` (default: a free one);
    returns once it listens."""
    port = port or free_port()
    env = {**os.environ, **broker.service_env(), "MNEMOS_DATABASE_URL": database_url,
           "MNEMOS_HTTP_PORT": str(port), "MNEMOS_AUTH": "off", "MNEMOS_LOG_LEVEL": "warning"}
    with (logs / f"gateway-{broker.replicas}.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "mnemos", "serve", "command"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited; see {logs}")
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("gateway not listening")


async def gateway_commands(broker: Broker, count: int, inflight: int) -> Figures:
    """``remember`` over NATS request-reply (as the operator on the secured cluster)."""
    nc = await connect_nats(broker.url, "bench-durability-cmd", broker.options("operator"))

    async def send(i: int) -> None:
        reply = await nc.request(f"mnemos.cmd.{NS}.remember",
                                 json.dumps({"content": f"durability fact {i}"}).encode(),
                                 timeout=60)
        if not json.loads(reply.data).get("ok"):
            raise RuntimeError(f"command failed: {reply.data[:300]!r}")

    try:
        await send(-1)  # warm: stream declared, first subject state loaded
        return await _timed(count, inflight, send)
    finally:
        await nc.close()


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def _median(samples: list[Figures]) -> Figures:
    return Figures(statistics.median(f.rate for f in samples),
                   statistics.median(f.p50 for f in samples),
                   statistics.median(f.p99 for f in samples))


def report(name: str, samples: list[Figures], baseline: list[Figures], unit: str) -> None:
    """One result line: median rate (range over rounds), median latencies, ratio of the median
    rate to setup 1's."""
    mid, base = _median(samples), _median(baseline)
    spread = f"{min(f.rate for f in samples):,.0f}-{max(f.rate for f in samples):,.0f}"
    report_line(name, f"{mid.rate:,.0f} {unit}/s ({spread})  p50 {_ms(mid.p50)}  "
                      f"p99 {_ms(mid.p99)}  x{mid.rate / base.rate:.2f} of (1)")


async def measure(broker: Broker, args: argparse.Namespace, database_url: str, logs: Path
                  ) -> tuple[Figures, Figures | None]:
    """Raw and gateway figures of one setup."""
    progress(f"{broker.label}: raw js.publish x{args.messages}")
    raw = await raw_publish(broker, args.messages, args.inflight)
    if not args.commands:
        return raw, None
    progress(f"{broker.label}: gateway remember x{args.commands}")
    gateway = start_gateway(broker, database_url, logs)
    try:
        return raw, await gateway_commands(broker, args.commands, args.inflight)
    finally:
        gateway.terminate()
        gateway.wait(30)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mnemos-bench-durability-") as tmp:
        root = Path(tmp)
        postgres = PostgresServer(root / "pg")
        postgres.start()
        try:
            await asyncio.to_thread(prepare_schema, postgres.url, "mnemos", 384)
            setups: list[tuple[str, Callable[[Path], AbstractContextManager[Broker]]]] = [
                ("(1) single node, sync always", lambda d: single_node(d, "single-always",
                                                                         "always")),
                ("(2) single node, sync 2m (NATS default)",
                 lambda d: single_node(d, "single-2m", "2m")),
                ("(3) 3-node R3 cluster, sync 2m", lambda d: cluster(d, "r3-2m", "2m")),
                ("(4) 3-node R3 cluster, sync always (shipped)",
                 lambda d: cluster(d, "r3-always", None)),
            ]
            raw: dict[str, list[Figures]] = {name: [] for name, _ in setups}
            gateway: dict[str, list[Figures]] = {name: [] for name, _ in setups}
            for turn in range(args.rounds):
                # Each round starts with another setup: the machine's load drifts.
                for index in [(turn + i) % len(setups) for i in range(len(setups))]:
                    name, make = setups[index]
                    workdir = root / f"round{turn}-setup{index + 1}"
                    workdir.mkdir()
                    with make(workdir) as broker:
                        raw_figures, gateway_figures = await measure(
                            broker, args, postgres.url, workdir)
                    raw[name].append(raw_figures)
                    if gateway_figures is not None:
                        gateway[name].append(gateway_figures)
        finally:
            postgres.stop()
    report_line("rounds (median of each; range of rates in brackets)", str(args.rounds))
    report_line("machine load (1-min average) at the end", f"{os.getloadavg()[0]:.2f}")
    first = next(iter(raw))
    for name, samples in raw.items():
        report(f"raw js.publish {name}", samples, raw[first], "msg")
    for name, samples in gateway.items():
        if samples:
            report(f"gateway remember {name}", samples, gateway[first], "cmd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--commands", type=int, default=2000,
                        help="remember commands through the gateway per setup (0 = skip)")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3,
                        help="every setup is measured this many times, in rotated order")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
