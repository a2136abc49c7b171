"""The ``mnemos`` verbs generated from the catalog, run as a person would (subprocesses)
against a real gateway: human output by default, ``--json`` on request, the server's reason on
errors (exit code 2), and ``mnemos stop`` for a running ``mnemos up``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from libs.runtime.config import Config
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, config: Config, home: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")}
        self.env = {**env, "MNEMOS_HOME": str(home), "MNEMOS_LOG_LEVEL": "warning",
                    "MNEMOS_GATEWAY_URL": f"http://{config.http_host}:{config.http_port}"}

    async def run(self, *args: str, code: int = 0) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mnemos", *args, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == code, (args, out.decode(), err.decode())
        return out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        out, _ = await self.run(*args, "--json")
        return json.loads(out)


async def test_every_verb_for_people_and_as_json(config: Config, nats_js: Any,
                                                 tmp_path: Path) -> None:
    cli = Cli(config, tmp_path / "home")
    ns = ("--ns", "team-a")
    async with running_gateway(config):
        out, _ = await cli.run("remember", "The deploy window is Tuesday 10:00", *ns,
                               "--tag", "ops", "--kind", "fact", "--metadata", "team=\"sre\"",
                               "--metadata", "weight=3")
        assert "MemoryCreated appended" in out
        memory_id = out.split("  memory", 1)[1].split()[0]
        other = (await cli.json("remember", "Release notes live in the wiki", *ns))["memory_id"]
        shown, _ = await cli.run("get", memory_id, *ns)
        assert "tags      ops" in shown and 'team = "sre"' in shown and "weight = 3" in shown
        found, _ = await cli.run("recall", "when can we deploy", *ns, "--k", "3")
        assert memory_id in found.splitlines()[0]
        await cli.run("revise", memory_id, "The deploy window is Wednesday 10:00", *ns,
                      "--reason", "moved")
        await cli.run("tag", memory_id, *ns, "--add", "process", "--remove", "ops")
        await cli.run("link", memory_id, *ns, "--target-memory-id", other)
        listed, _ = await cli.run("list", *ns, "--tag", "process")
        assert memory_id in listed and other not in listed and "(1 memories)" in listed
        page = await cli.json("list", *ns, "--limit", "1")
        assert len(page["items"]) == 1 and page["next_cursor"]
        await cli.run("branch", memory_id, *ns, "--branch", "draft")
        await cli.run("commit", memory_id, "Deploys: Thursday", *ns, "--branch", "draft")
        await cli.run("commit", memory_id, "Deploys: Friday", *ns, "--branch", "main")
        diff, _ = await cli.run("diff", memory_id, *ns, "--from", "main", "--to", "draft")
        assert "-Deploys: Friday" in diff and "+Deploys: Thursday" in diff
        merged = await cli.json("merge", memory_id, *ns, "--into", "main", "--from", "draft",
                                "--strategy", "theirs")
        log, _ = await cli.run("log", memory_id, *ns)
        assert log.splitlines()[0].startswith(merged["version_id"])
        assert "draft" in (await cli.run("branches", memory_id, *ns))[0]
        history = await cli.json("history", memory_id, *ns)
        assert [e["type"] for e in history["events"]][-2:] == ["MemoryCommitted",
                                                               "MemoryMerged"]
        shown, _ = await cli.run("history", memory_id, *ns)
        assert "MemoryMerged" in shown
        await cli.run("forget", other, *ns, "--reason", "obsolete")

        _, err = await cli.run("get", other, *ns, code=2)
        assert "error [not_found]" in err
        _, err = await cli.run("remember", "\x01ok", *ns, "--metadata", "broken", code=2)
        assert "error [invalid_input]" in err and "KEY=VALUE" in err
        _, err = await cli.run("search", "x", *ns, "--k", "1000", code=2)
        assert "error [invalid_input]" in err
        _, err = await cli.run("revise", memory_id, "stale", *ns, "--expected-version", "1",
                               code=2)
        assert "error [conflict]" in err
        _, err = await cli.run("list", "--ns", "Bad.NS", code=2)
        assert "error [invalid_input]" in err
        assert (await cli.json("--json", "list", *ns, "--kind", "nothing"))["items"] == []


_FAKE_UP = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from libs.runtime.instance import InstanceLock, RuntimeInfo
    lock = InstanceLock(Path(sys.argv[1]))
    lock.acquire()
    lock.publish(RuntimeInfo(nats_url="nats://x", database_url="x", http_url="http://x",
                             home=sys.argv[1], pid=os.getpid()))
    def stop(*_):
        lock.release()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
""")


async def test_stop_ends_the_running_up_and_only_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "MNEMOS_HOME": str(home), "MNEMOS_LOG_LEVEL": "warning"}

    async def stop() -> tuple[int | None, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mnemos", "stop", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, out.decode(), err.decode()

    code, _, err = await stop()
    assert code == 1 and "not running" in err
    up = await asyncio.create_subprocess_exec(sys.executable, "-c", _FAKE_UP, str(home),
                                              env=env, stdout=asyncio.subprocess.PIPE)
    assert up.stdout is not None
    assert (await asyncio.wait_for(up.stdout.readline(), 30)).strip() == b"ready"
    code, out, _ = await stop()
    assert code == 0 and f"stopped (pid {up.pid})" in out
    assert await asyncio.wait_for(up.wait(), 10) == 0
    assert not (home / "runtime.json").exists()
    # a stale runtime file (a crashed up) names a pid nobody may signal
    (home / "runtime.json").write_text(json.dumps({
        "nats_url": "x", "database_url": "x", "http_url": "x", "home": str(home),
        "pid": os.getpid()}))
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        code, _, err = await stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 1 and "not running" in err
