"""``mnemos up``: the whole system on one machine.

Starts an embedded nats-server and an embedded PostgreSQL (unless ``MNEMOS_NATS_URL`` /
``MNEMOS_DATABASE_URL`` point elsewhere), declares the streams, then runs every service as its
own child process (the same ``mnemos serve <name>`` used at scale), restarting any that dies,
until Ctrl-C or SIGTERM. Data lives under ``MNEMOS_HOME`` (default ``~/.mnemos``), so a restart
keeps everything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from libs.auth.key_store import API_KEY_FOLD
from libs.auth.local_admin import ensure_admin_key, local_key
from libs.eventstore import JetStreamEventStore
from libs.runtime.config import Config, with_identity
from libs.runtime.instance import InstanceLock, RuntimeInfo
from libs.runtime.logging import configure_logging, get_logger
from libs.runtime.nats_auth import BrokerIdentities
from libs.runtime.nats_client import connect_nats, ensure_streams, nats_credentials
from libs.runtime.nats_server import NatsServer
from libs.runtime.postgres_server import PostgresServer
from mnemos.serve import SERVICES

__all__ = ["Endpoints", "run_up"]

log = get_logger(__name__)

METRICS_PORT_OFFSET = {"projector": 1, "auditor": 2, "compressor": 3, "registry_sync": 4}
"""Prometheus ports of the consumers under ``mnemos up``: the HTTP port plus this offset."""



@dataclass
class Endpoints:
    """Where the running system can be reached."""

    nats_url: str
    database_url: str
    http_url: str
    home: Path
    nats_pid: int | None = None

    def runtime_info(self) -> RuntimeInfo:
        """What the runtime file records for the client commands (``mnemos status`` …)."""
        return RuntimeInfo(nats_url=self.nats_url, database_url=self.database_url,
                           http_url=self.http_url, home=str(self.home), pid=os.getpid(),
                           nats_pid=self.nats_pid)


@dataclass
class Child:
    """One supervised service process."""

    name: str
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0


class System:
    """The embedded servers and the service processes of one ``mnemos up``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.home = config.home.expanduser()
        self.nats: NatsServer | None = None
        self.postgres: PostgresServer | None = None
        self.children: dict[str, Child] = {}
        self.env: dict[str, str] = {}

    def start_servers(self) -> Endpoints:
        """Start what is not configured externally; return the endpoints."""
        self.home.mkdir(parents=True, exist_ok=True)
        nats_url = self.config.nats_url
        if nats_url is None:
            # Secure by default: every service, the CLI and `mnemos up` itself get a broker
            # identity (nkeys, least privilege); nobody else can connect.
            identities = BrokerIdentities(self.home)
            if self.config.auth == "on":
                identities.ensure_services()
            self.nats = NatsServer(self.home / "nats", self.config.nats_port,
                                   self.config.nats_sync_interval,
                                   authorization=identities.config
                                   if self.config.auth == "on" else None)
            self.nats.start()
            nats_url = self.nats.url
        database_url = self.config.database_url
        if database_url is None:
            self.postgres = PostgresServer(self.home / "postgres")
            self.postgres.start()
            database_url = self.postgres.url
        http_url = f"http://{self.config.http_host}:{self.config.http_port}"
        self.env = {**os.environ, "MNEMOS_NATS_URL": nats_url,
                    "MNEMOS_DATABASE_URL": database_url, "MNEMOS_HOME": str(self.home)}
        nats_pid = self.nats.process.pid if self.nats and self.nats.process else None
        return Endpoints(nats_url, database_url, http_url, self.home, nats_pid)

    def spawn(self, name: str) -> None:
        """Start service ``name`` as a child process."""
        env = dict(self.env)
        if name in METRICS_PORT_OFFSET:
            env["MNEMOS_METRICS_PORT"] = str(self.config.http_port + METRICS_PORT_OFFSET[name])
        process = subprocess.Popen([sys.executable, "-m", "mnemos", "serve", name], env=env)
        previous = self.children.get(name)
        restarts = previous.restarts + 1 if previous else 0
        self.children[name] = Child(name, process, restarts=restarts)
        log.info("service_spawned", service=name, pid=process.pid)

    def supervise_once(self) -> None:
        """Restart any service that exited, with a back-off after rapid crashes."""
        for name, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            log.warning("service_exited", service=name, code=code, restarts=child.restarts)
            if time.monotonic() - child.started < 2.0:
                time.sleep(min(5.0, 0.5 * (child.restarts + 1)))
            self.spawn(name)

    def stop(self) -> None:
        """SIGTERM every service, wait, then stop the embedded servers."""
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.process.wait(20)
            except subprocess.TimeoutExpired:
                child.process.kill()
        if self.postgres:
            self.postgres.stop()
        if self.nats:
            self.nats.stop()


async def _prepare_broker(config: Config, nats_url: str) -> Path | None:
    """Declare the streams; with authentication on, issue the local admin key on first start
    (as the gateway, the one identity that appends key events). Its file path, or None."""
    nc = await connect_nats(nats_url, "mnemos-up", nats_credentials(
        with_identity(config, "operator")))
    try:
        await ensure_streams(nc.jetstream(), config)
    finally:
        await nc.drain()
    if config.auth != "on":
        return None
    nc = await connect_nats(nats_url, "mnemos-up-keys", nats_credentials(
        with_identity(config, "gateway")))
    try:
        path, created = await ensure_admin_key(
            config.home.expanduser(), JetStreamEventStore(nc.jetstream(), API_KEY_FOLD))
        if created:
            log.info("admin_key_created", path=str(path))
        return path
    finally:
        await nc.drain()


def wait_ready(http_url: str, timeout_s: float = 90.0) -> None:
    """Block until the gateway answers ``/readyz`` (projector migrations done, NATS up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{http_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"gateway at {http_url} not ready after {timeout_s}s")


def run_up(config: Config, demo: bool) -> None:
    """Run the whole system in the foreground until Ctrl-C / SIGTERM."""
    configure_logging(config.log_format, config.log_level, service="up")
    system = System(config)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    lock = InstanceLock(system.home)
    lock.acquire()  # before anything else: a second `mnemos up` on this home stops here
    try:
        endpoints = system.start_servers()
        admin_key = asyncio.run(_prepare_broker(config, endpoints.nats_url))
        for name in SERVICES:
            system.spawn(name)
        wait_ready(endpoints.http_url)
        lock.publish(endpoints.runtime_info())
        _print_banner(endpoints, admin_key)
        if demo:
            from mnemos.demo import run_demo

            run_demo(endpoints.http_url, credential=local_key(system.home))
        while not stopping:
            system.supervise_once()
            time.sleep(0.5)
    finally:
        log.info("stopping")
        system.stop()
        lock.release()


def _print_banner(endpoints: Endpoints, admin_key: Path | None) -> None:
    security = (
        [f"  Auth         on: API keys and broker identities; local admin key {admin_key}",
         "               (0600; the CLI and local clients use it by themselves)"]
        if admin_key is not None else
        ["  Auth         OFF: ANYONE WHO REACHES THESE PORTS CAN READ AND WRITE EVERY "
         "NAMESPACE", "               (MNEMOS_AUTH=off was set explicitly)"])
    lines = [
        "",
        "Mnemos is up.",
        *security,
        f"  HTTP API     {endpoints.http_url}   (OpenAPI: {endpoints.http_url}/docs)",
        f"  NATS         {endpoints.nats_url}   (commands: mnemos.cmd.<ns>.<command>)",
        f"  Postgres     {endpoints.database_url}",
        f"  Data         {endpoints.home}",
        f"  Services     {', '.join(SERVICES)} (one process each)",
        f"  Metrics      {endpoints.http_url}/metrics (gateway), ports +1 projector, +2 auditor,"
        " +3 compressor, +4 registry_sync",
        "  Try:         mnemos remember 'The user prefers dark mode' && mnemos recall 'ui theme'",
        "  Stop:        Ctrl-C",
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
