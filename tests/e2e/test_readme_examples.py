"""The README's agent and subscriber examples, extracted from README.md and run as written
against a real, secured gateway (so the documentation cannot drift from the SDK)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from libs.auth.key_store import API_KEY_FOLD, issue_key
from libs.auth.local_admin import ADMIN_GRANTS
from libs.eventstore import JetStreamEventStore
from libs.runtime.config import Config
from mnemos_sdk import AsyncMnemos
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(name: str) -> str:
    """The code block right after ``<!-- readme-test: NAME -->`` in the README."""
    match = re.search(rf"<!-- readme-test: {name} -->\n```python\n(.*?)\n```", README.read_text(),
                      re.DOTALL)
    assert match is not None, f"no readme-test block {name!r} in README.md"
    return match.group(1)


async def _started(script: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, cwd=str(README.parent),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_the_agent_and_subscriber_examples_run(config: Config, nats_js: Any,
                                                     tmp_path: Path) -> None:
    secured = config.model_copy(update={"auth": "on"})
    issued, _ = await issue_key(JetStreamEventStore(nats_js, API_KEY_FOLD), principal="root",
                                kind="user", grants=ADMIN_GRANTS, by="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")}
    env.update(MNEMOS_NATS_URL=config.nats_url or "", MNEMOS_API_KEY=issued.key,
               MNEMOS_HOME=str(tmp_path / "home"), PYTHONPATH=str(README.parent))
    agent, subscriber = tmp_path / "agent.py", tmp_path / "subscriber.py"
    agent.write_text(readme_block("agent"))
    subscriber.write_text(readme_block("subscriber"))
    async with running_gateway(secured) as (_, nc):
        process = await _started(agent, env)
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        assert out.decode().splitlines() == ["The customer's renewal date is 2027-03-01",
                                             out.decode().splitlines()[1]]
        assert out.decode().splitlines()[1].startswith("conflict:")

        async with AsyncMnemos.http(f"http://{config.http_host}:{config.http_port}",
                                    credential=issued.key, ns="team-a") as mnemos:
            await mnemos.remember(content="Written before the poison message")
        # after the writes: a poison event not yet dead-lettered by the projector can make the
        # gateway's duplicate-window check fail a concurrent command (reported to the lead)
        await nc.jetstream().publish("mnemos.evt.team-a.memory.bogus", b"{not an event")
        process = await _started(subscriber, env)
        assert process.stdout is not None
        seen: list[str] = []
        try:
            while not (any("Written before the poison" in line for line in seen)
                       and any(line.startswith("skipped poison") for line in seen)):
                line = await asyncio.wait_for(process.stdout.readline(), 60)
                assert line, (seen, (await process.stderr.read()).decode())  # type: ignore[union-attr]
                seen.append(line.decode().strip())
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        assert any("renewal date is 2027-03-01" in line for line in seen)
