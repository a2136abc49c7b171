"""Benchmark harness: a real system (nats-server, PostgreSQL, service processes) in a temp dir.

Shared by the benchmarks in this folder. Figures are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from libs.runtime.config import Config, load_config
from libs.runtime.nats_server import NatsServer, free_port
from libs.runtime.postgres_server import PostgresServer

__all__ = ["BenchSystem", "percentile", "progress", "report_line", "running_system"]


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``samples``, nearest-rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def progress(message: str) -> None:
    """A progress line on stderr (benchmarks are long operator work)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def report_line(name: str, value: str) -> None:
    """One result line on stdout: ``name: value``."""
    sys.stdout.write(f"{name:<58} {value}\n")
    sys.stdout.flush()


@dataclass
class BenchSystem:
    """Where the benchmark's system lives and how to reach it."""

    config: Config
    nats: NatsServer
    postgres: PostgresServer
    workdir: Path
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MNEMOS_NATS_URL": self.nats.url,
                "MNEMOS_DATABASE_URL": self.postgres.url, "MNEMOS_HOME": str(self.workdir),
                "MNEMOS_HTTP_PORT": str(self.config.http_port), "MNEMOS_LOG_LEVEL": "warning",
                "MNEMOS_AUTH": self.config.auth}

    def start_service(self, name: str, **env: str) -> None:
        """Start ``mnemos serve name``; ``env`` overrides settings (``MNEMOS_AUTH="on"``)."""
        log = (self.workdir / f"{name}.log").open("ab")
        self.services[name] = subprocess.Popen(
            [sys.executable, "-m", "mnemos", "serve", name], env={**self.env, **env},
            stdout=log, stderr=subprocess.STDOUT,
        )

    def stop_service(self, name: str) -> None:
        process = self.services.pop(name)
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

    def wait_gateway(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.config.http_port}/readyz"
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("gateway not ready")

    def checkpoint(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        row = conn.execute(
            "SELECT last_seq FROM mnemos.projection_checkpoints WHERE name = 'read_models'",
            prepare=False,
        ).fetchone()
        return int(str(row[0])) if row else 0

    def stop_services(self) -> None:
        for process in self.services.values():
            process.terminate()
        for process in self.services.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.services.clear()


@contextlib.contextmanager
def running_system(sync_interval: str = "always") -> Iterator[BenchSystem]:
    """Fresh servers in a temp dir; services are started by the benchmark as it needs them."""
    with tempfile.TemporaryDirectory(prefix="mnemos-bench-") as tmp:
        workdir = Path(tmp)
        nats = NatsServer(workdir / "nats", free_port(), sync_interval)
        postgres = PostgresServer(workdir / "pg")
        nats.start()
        postgres.start()
        config = load_config(nats_url=nats.url, database_url=postgres.url, home=workdir,
                             http_port=free_port(), auth="off")
        system = BenchSystem(config, nats, postgres, workdir)
        try:
            yield system
        finally:
            system.stop_services()
            postgres.stop()
            nats.stop()


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (nan for no values)."""
    return statistics.fmean(values) if values else float("nan")
