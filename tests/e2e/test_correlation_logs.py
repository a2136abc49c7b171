"""One command followed through every service by its correlation id, in their JSON logs.

The gateway, the projector, the auditor and the compressor run as their own processes
(``mnemos serve``) with ``MNEMOS_LOG_FORMAT=json`` at debug level; one ``remember`` with a known
command id and correlation id must show up in a JSON line of each of them carrying both ids
(issue 17, observability): the gateway's ``command_applied``, each consumer's ``event_handled``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.events import new_command_id
from libs.runtime.config import Config

pytestmark = pytest.mark.integration

SERVICES = ("command", "projector", "auditor", "compressor")


def _env(config: Config) -> dict[str, str]:
    return {**os.environ, "MNEMOS_NATS_URL": config.nats_url or "",
            "MNEMOS_DATABASE_URL": config.database_url or "", "MNEMOS_HOME": str(config.home),
            "MNEMOS_HTTP_PORT": str(config.http_port), "MNEMOS_AUTH": "off",
            "MNEMOS_LOG_FORMAT": "json", "MNEMOS_LOG_LEVEL": "debug", "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def _services(config: Config, logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in SERVICES:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "mnemos", "serve", name], env=_env(config),
                stdout=(logs / f"{name}.log").open("ab"), stderr=subprocess.STDOUT)
        yield processes
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict):
                lines.append(line)
    return lines


def _carrying(path: Path, command_id: str, correlation_id: str) -> list[dict[str, Any]]:
    return [line for line in _json_lines(path) if line.get("command_id") == command_id
            and line.get("correlation_id") == correlation_id]


def _wait_ready(base: str, processes: dict[str, subprocess.Popen[bytes]],
                timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited early"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError("the gateway did not become ready")


def test_one_command_is_followed_through_every_service_by_its_correlation_id(
        config: Config, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{config.http_port}"
    command_id, correlation_id = new_command_id(), f"trace-{new_command_id()}"
    with _services(config, tmp_path) as processes:
        _wait_ready(base, processes)
        answer = httpx.post(f"{base}/v1/team-a/memories", timeout=30, json={
            "content": "The user prefers dark mode", "tags": ["ui"],
            "command_id": command_id, "correlation_id": correlation_id})
        assert answer.status_code == 201, answer.text
        event_id, event_type = answer.json()["event_id"], answer.json()["event_type"]

        deadline = time.monotonic() + 60
        found: dict[str, list[dict[str, Any]]] = {}
        while time.monotonic() < deadline:
            found = {name: _carrying(tmp_path / f"{name}.log", command_id, correlation_id)
                     for name in SERVICES}
            if all(found.values()):
                break
            time.sleep(0.3)
    missing = [name for name, lines in found.items() if not lines]
    assert not missing, f"no JSON line with the command's ids from {missing}"
    assert any(line["event"] == "command_applied" for line in found["command"])
    for name in SERVICES[1:]:
        handled = [line for line in found[name] if line["event"] == "event_handled"]
        assert handled and handled[0]["event_id"] == event_id, found[name]
        assert handled[0]["event_type"] == event_type, handled[0]
