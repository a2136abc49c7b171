"""``mnemos export`` and ``mnemos import`` against a real gateway: a namespace with revisions,
tags, metadata, branches, a merge, a revert and links round-trips exactly (the re-export equals
the export with memory ids renamed by the import, what the source recorded aside); re-running
an import changes nothing; plain memory lines and bad lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from libs.runtime.config import Config
from mnemos_sdk import AsyncMnemos
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration


async def _mnemos(env: dict[str, str], *args: str, code: int = 0) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mnemos", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == code, (args, out.decode(), err.decode())
    return out.decode(), err.decode()


async def _populate(mnemos: AsyncMnemos) -> None:
    a = await mnemos.remember(content="Deploys happen on Tuesdays", tags=("ops",),
                              metadata={"team": "sre", "weight": 1.5}, source="wiki",
                              actor={"agent_id": "planner", "model": "m-1", "provider": "p"})
    b = await mnemos.remember(content="Release notes live in the wiki", kind="fact")
    await mnemos.revise(memory_id=a.memory_id, content="Deploys happen on Wednesdays",
                        reason="moved", metadata={"team": "sre"})
    await mnemos.tag(memory_id=a.memory_id, add=("process",), remove=("ops",))
    await mnemos.set_metadata(memory_id=b.memory_id, set={"n": 3, "ok": True}, unset=())
    await mnemos.branch(memory_id=a.memory_id, branch="draft")
    await mnemos.commit(memory_id=a.memory_id, branch="draft", content="Deploys: Thursday")
    await mnemos.commit(memory_id=a.memory_id, branch="main", content="Deploys: Friday")
    await mnemos.merge(memory_id=a.memory_id, into="main", from_branch="draft",
                       strategy="theirs")
    first = (await mnemos.history(memory_id=a.memory_id)).versions[0].version_id
    await mnemos.revert(memory_id=a.memory_id, to_version=first)
    await mnemos.link(memory_id=a.memory_id, target_memory_id=b.memory_id, relation="see")
    gone = await mnemos.remember(content="to be forgotten")
    await mnemos.forget(memory_id=gone.memory_id, reason="test")


def _lines(text: str) -> dict[str, Any]:
    """Exported lines by the content they started with, without what the source recorded."""
    found = {}
    for raw in text.splitlines():
        line = json.loads(raw)
        for step in line["steps"]:
            step.pop("recorded")
        found[line["steps"][0]["body"]["content"]] = line
    return found


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def _names(copy: dict[str, Any], original: dict[str, Any]) -> dict[str, str]:
    """Memory and version ids of the copy -> the original's, aligned step by step."""
    names: dict[str, str] = {}
    for key, line in copy.items():
        names[line["id"]] = original[key]["id"]
        for new, old in zip(line["steps"], original[key]["steps"], strict=True):
            if new.get("version_id"):
                names[new["version_id"]] = old["version_id"]
    return names


async def test_export_import_round_trip(config: Config, nats_js: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_LOG_LEVEL="warning",
               MNEMOS_GATEWAY_URL=f"http://{config.http_host}:{config.http_port}")
    async with running_gateway(config):
        async with AsyncMnemos.http(env["MNEMOS_GATEWAY_URL"], principal="t", ns="src"
                                    ) as mnemos:
            await _populate(mnemos)
            await mnemos.list()  # projected
        exported = tmp_path / "src.jsonl"
        await _mnemos(env, "export", "--ns", "src", "-o", str(exported))
        original = exported.read_text()
        assert len(original.splitlines()) == 2  # the forgotten memory is not served
        out, _ = await _mnemos(env, "import", str(exported), "--ns", "dst", "--no-progress",
                               "--transport", "http")
        assert "imported 2 memories (" in out and "0 already present" in out
        over_nats = {**env, "MNEMOS_NATS_URL": config.nats_url or ""}
        again, _ = await _mnemos(over_nats, "import", str(exported), "--ns", "dst",
                                 "--no-progress", "--transport", "nats")
        assert "already present" in again and " 0 already present" not in again
        commands = again.split("(")[1].split()[0]
        assert f"{commands} already present" in again  # every step a duplicate
        copy, _ = await _mnemos(env, "export", "--ns", "dst")
        before, after = _lines(original), _lines(copy)
        names = _names(after, before)
        assert not set(names) & set(names.values())  # new ids in the new namespace
        assert _rename(after, names) == before
        line = before["Deploys happen on Tuesdays"]
        assert line["steps"][0]["actor"] == {"agent_id": "planner", "model": "m-1",
                                             "provider": "p"}
        assert [s["op"] for s in line["steps"]] == ["remember", "revise", "tag", "branch",
                                                    "commit", "commit", "merge", "revert"]

        plain = tmp_path / "plain.jsonl"
        plain.write_text(
            json.dumps({"content": "Imported with a time", "tags": ["x"],
                        "occurred_at": "2024-05-01T12:00:00+00:00", "id": "ext-1",
                        "thread": "chat-1", "thread_position": 3}) + "\n\n"
            + json.dumps({"content": "second", "actor": {"agent_id": "bulk"}}) + "\n")
        out, _ = await _mnemos(env, "import", str(plain), "--ns", "plain", "--no-progress")
        assert "imported 2 memories" in out
        async with AsyncMnemos.http(env["MNEMOS_GATEWAY_URL"], principal="t", ns="plain"
                                    ) as mnemos:
            items = {m.content: m for m in (await mnemos.list()).items}
            timed = items["Imported with a time"]
            assert timed.metadata == {}
            assert timed.occurred_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
            assert timed.thread is not None and timed.thread.id == "chat-1"
            assert timed.thread.position == 3
            assert items["second"].created_by.agent_id == "bulk"
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"content": "fine"}\n{"content": "x", "unknown": 1}\n')
        _, err = await _mnemos(env, "import", str(bad), "--ns", "bad", code=2)
        assert "line 2" in err and "invalid_input" in err
