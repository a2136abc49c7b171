"""``mnemos up`` as a newcomer runs it: real processes, real servers, stop, restart, data kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
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
    done = subprocess.run([sys.executable, "-m", "mnemos", "--json", *args], env=env,
                          capture_output=True,
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


def runtime_nats_url(home: Path) -> object:
    return json.loads((home / "runtime.json").read_text())["nats_url"]


def _an_agent_identity_from_the_cli(env: dict[str, str], nats_url: str, key: str) -> None:
    """``mnemos identities add`` gives an agent a broker identity at once (the running broker
    reloads): with it and an API key the agent's commands work; without one it cannot connect."""
    added = _cli(env, "identities", "add", "planner-agent", "--ns", "ops")
    assert added["broker_reloaded"] is True
    seed = Path(str(added["seed_file"]))
    assert seed.stat().st_mode & 0o777 == 0o600

    async def as_agent() -> dict[str, object]:
        nc = await nats.connect(nats_url, nkeys_seed=str(seed),
                                inbox_prefix=str(added["inbox_prefix"]), max_reconnect_attempts=0)
        try:
            reply = await nc.request("mnemos.cmd.ops.remember", b'{"content": "From NATS"}',
                                     headers={"Authorization": f"Bearer {key}"}, timeout=30)
            answer: dict[str, object] = json.loads(reply.data)
            return answer
        finally:
            await nc.close()

    async def anonymous() -> None:
        await nats.connect(nats_url, max_reconnect_attempts=0, allow_reconnect=False,
                           connect_timeout=5)

    assert asyncio.run(as_agent())["ok"] is True
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        asyncio.run(anonymous())
    listed = _cli(env, "identities", "list")["identities"]
    assert isinstance(listed, list) and any(i["name"] == "planner-agent" for i in listed)


def _keys_are_managed_from_the_cli(env: dict[str, str], base: str) -> str:
    """``mnemos keys create|list|revoke`` (issue 14): the secret is shown once, the key works for
    its namespace only, and a revoked key is refused within seconds."""
    created = _cli(env, "keys", "create", "planner", "--grant", "write:ops", "--expires", "30d")
    secret, view = str(created["key"]), created["view"]
    assert isinstance(view, dict) and secret.startswith(str(view["prefix"]))
    agent = {"Authorization": f"Bearer {secret}"}
    body = {"content": "Planner notes"}
    assert httpx.post(f"{base}/v1/ops/memories", json=body, headers=agent,
                      timeout=30).status_code == 201
    assert httpx.post(f"{base}/v1/finance/memories", json=body, headers=agent,
                      timeout=30).status_code == 403
    listed = _cli(env, "keys", "list")["keys"]
    assert isinstance(listed, list)
    mine = next(k for k in listed if k["key_id"] == view["key_id"])
    assert mine["principal"] == "planner" and not mine["revoked"] and "key" not in mine
    assert secret not in json.dumps(listed)
    _cli(env, "keys", "revoke", str(view["key_id"]), "--reason", "rotated")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/v1/ops/memories", headers=agent, timeout=30).status_code == 401:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("a revoked key still authenticates after 10 s")
    bad = subprocess.run([sys.executable, "-m", "mnemos", "keys", "create", "x", "--grant",
                          "rule:ops"], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode == 2 and "not a grant" in bad.stderr
    still = _cli(env, "keys", "create", "planner", "--grant", "write:ops")
    return str(still["key"])


def _compressions_from_the_cli(env: dict[str, str], http_port: int) -> None:
    """The compressor runs under ``mnemos up`` (issue 13): a long memory gets a receipt,
    ``mnemos receipts`` shows it, ``mnemos context`` stays within its budget."""
    text = (Path(__file__).parents[1] / "fixtures" / "compressor" / "handmade.jsonl"
            ).read_text(encoding="utf-8").splitlines()[0]
    created = _cli(env, "remember", json.loads(text)["text"], "--ns", "ops")
    deadline = time.monotonic() + 60
    while True:
        found = _cli(env, "receipts", str(created["memory_id"]), "--ns", "ops")
        compressions = found["compressions"]
        assert isinstance(compressions, list)
        if compressions:
            break
        assert time.monotonic() < deadline, "no receipt within 60 s"
        time.sleep(0.5)
    assert compressions[0]["receipt"]["version_id"] == created["version_id"]
    context = _cli(env, "context", "weekly product sync figures", "--ns", "ops", "--budget",
                   "50", "--purpose", "summary")
    assert isinstance(context["used_tokens"], int) and context["used_tokens"] <= 50
    scraped = httpx.get(f"http://127.0.0.1:{http_port + 3}/metrics", timeout=10)
    assert "mnemos_compressor_versions" in scraped.text, scraped.text[:500]


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
        # Secure by default: a local admin key (0600) that the CLI found by itself; without a
        # credential the gateway refuses.
        key_file = home / "secrets" / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        params = {"q": "when can we deploy", "after_seq": str(created["seq"])}
        assert httpx.get(f"{base}/v1/ops/search", params=params, timeout=30).status_code == 401
        found = httpx.get(f"{base}/v1/ops/search", params=params, headers=auth,
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
        secret = _keys_are_managed_from_the_cli(env, base)
        _an_agent_identity_from_the_cli(env, str(runtime_nats_url(home)), secret)
        _compressions_from_the_cli(env, http_port)
    finally:
        assert _stop(process) == 0
