"""``mnemos up`` as a newcomer runs it: real processes, real servers, stop, restart, data kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from libs.runtime.nats_server import free_port


def _start(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnemos", "up"], env=env,
        stdout=(home.parent / "up.out").open("ab"), stderr=subprocess.STDOUT,
    )


def _wait_ready(base: str, process: subprocess.Popen[bytes], home: Path,
                timeout_s: float = 120.0) -> None:
    """Ready = the gateway answers /readyz and ``up`` has recorded its endpoints."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "mnemos up exited early"
        try:
            ready = httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200
            if ready and (home / "runtime.json").exists():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("mnemos up did not become ready")


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "mnemos", *args], env=env, capture_output=True,
                          check=True, timeout=60)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


def _second_up_refuses(home: Path, env: dict[str, str], base: str,
                       runtime: dict[str, object]) -> None:
    """A second ``mnemos up`` on the same home refuses at once, naming the running one, and
    leaves the running instance and its files alone (issue 10, defect 10)."""
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "mnemos", "up"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2, second.stdout + second.stderr
    assert time.monotonic() - started < 30
    assert "already running" in second.stderr and str(runtime["pid"]) in second.stderr
    assert "Mnemos is up" not in second.stdout
    assert json.loads((home / "runtime.json").read_text()) == runtime
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200


@pytest.mark.timeout(400)
def test_up_serves_stops_cleanly_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    http_port = free_port()
    env = {**os.environ, "MNEMOS_HOME": str(home), "MNEMOS_NATS_PORT": str(free_port()),
           "MNEMOS_HTTP_PORT": str(http_port), "MNEMOS_LOG_LEVEL": "warning"}
    env.pop("MNEMOS_NATS_URL", None)
    env.pop("MNEMOS_DATABASE_URL", None)
    base = f"http://127.0.0.1:{http_port}"

    process = _start(home, env)
    try:
        _wait_ready(base, process, home)
        runtime = json.loads((home / "runtime.json").read_text())
        assert runtime["http_url"] == base
        created = _cli(env, "remember", "The deploy window is Tuesday 10:00", "--ns", "ops",
                       "--tag", "process")
        found = httpx.get(f"{base}/v1/ops/search",
                          params={"q": "when can we deploy", "after_seq": str(created["seq"])},
                          timeout=30).json()
        assert found["hits"][0]["memory"]["memory_id"] == created["memory_id"]
        _second_up_refuses(home, env, base, runtime)
        # Each consumer's metrics port exports its own metrics (issue 10, defect 12).
        for offset, metric in ((1, "mnemos_consumer_checkpoint_seq"),
                               (2, "mnemos_audit_chain_head_seq")):
            scraped = httpx.get(f"http://127.0.0.1:{http_port + offset}/metrics", timeout=10)
            assert metric in scraped.text, (offset, scraped.text[:500])
    finally:
        code = _stop(process)
    assert code == 0
    assert not (home / "runtime.json").exists()

    process = _start(home, env)
    try:
        _wait_ready(base, process, home)
        memory = _cli(env, "get", str(created["memory_id"]), "--ns", "ops")
        assert memory["content"] == "The deploy window is Tuesday 10:00"
        status = _cli(env, "status")
        assert status["stream"]["last_seq"] >= 1  # type: ignore[index]
    finally:
        assert _stop(process) == 0
