"""History commands racing across gateway instances against a real nats-server.

Each :class:`CommandService` here has its own :class:`EventStore` (its own cache, no shared
lock), as two gateway processes would: only JetStream's expected-sequence check orders them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from libs.events import Conflict, MnemosError
from libs.runtime.config import Config
from services.command.application.commands import CommandService, memory_store
from tests.support.commands import send

pytestmark = pytest.mark.integration

NS = "team-a"
WRITERS = 6


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _instances(nats_js: Any, config: Config, n: int = 3) -> list[CommandService]:
    return [CommandService(memory_store(nats_js), None, config) for _ in range(n)]


async def test_one_writer_wins_per_expected_head_and_losers_rebase(
    nats_js: Any, config: Config
) -> None:
    gateways = _instances(nats_js, config)
    created = await send(gateways[0], NS, "remember", _body(content="base\n"), None)
    mid, root = created.memory_id, created.version_id
    assert root is not None

    async def commit(i: int, head: str) -> str | MnemosError:
        gateway = gateways[i % len(gateways)]
        try:
            result = await send(gateway, NS, "commit", _body(
                memory_id=mid, branch="main", content=f"writer {i}\n", expected_head=head),
                None)
        except Conflict as exc:
            return exc
        assert result.version_id is not None
        return result.version_id

    heads = dict.fromkeys(range(WRITERS), root)
    winners: list[str] = []
    rounds = 0
    while heads:
        rounds += 1
        outcomes = await asyncio.gather(*(commit(i, head) for i, head in heads.items()))
        won = [o for o in outcomes if isinstance(o, str)]
        assert len(won) == 1, outcomes  # exactly one per expected head
        winners += won
        retry = {}
        for (i, _), outcome in zip(heads.items(), outcomes, strict=True):
            if isinstance(outcome, MnemosError):
                retry[i] = outcome.detail["head"]  # rebase onto the head that won
                assert retry[i] == won[0]
        heads = retry
    assert rounds == WRITERS and len(set(winners)) == WRITERS
    state = await memory_store(nats_js).load(NS, mid)
    assert state.dag is not None
    log = [n.version_id for n in state.dag.graph.walk(state.dag.branches.head("main"))]
    assert log == [*reversed(winners), root]  # one line, no lost write


async def test_commits_without_expected_head_all_land_in_one_line(
    nats_js: Any, config: Config
) -> None:
    gateways = _instances(nats_js, config)
    created = await send(gateways[0], NS, "remember", _body(content="base\n"), None)
    mid = created.memory_id
    await send(gateways[1], NS, "branch", _body(memory_id=mid, branch="dev"), None)
    results = await asyncio.gather(*(
        send(gateways[i % len(gateways)], NS, "commit", _body(
            memory_id=mid, branch="dev", content=f"writer {i}\n"), None)
        for i in range(WRITERS)))
    state = await memory_store(nats_js).load(NS, mid)
    assert state.dag is not None
    line = list(state.dag.graph.walk(state.dag.branches.head("dev")))
    assert len(line) == WRITERS + 1
    assert {n.version_id for n in line} >= {r.version_id for r in results}
    assert all(len(n.parent_ids) <= 1 for n in line)
    assert state.dag.branches.head("main") == created.version_id  # other branches untouched


async def test_a_cold_fold_reproduces_the_same_version_ids(
    nats_js: Any, config: Config
) -> None:
    """Content addressing: ids depend on memory, content, metadata and parents only, so the
    version ids a memory gets are reproducible by folding its events again from the stream."""
    gateway = _instances(nats_js, config, 1)[0]
    created = await send(gateway, NS, "remember", _body(content="a\nm\nb\n"), None)
    mid = created.memory_id
    await send(gateway, NS, "branch", _body(memory_id=mid, branch="x"), None)
    await send(gateway, NS, "commit", _body(memory_id=mid, branch="x", content="A\nm\nb\n"),
                         None)
    await send(gateway, NS, "commit", _body(memory_id=mid, branch="main", content="a\nm\nB\n"),
                         None)
    merged = await send(gateway, NS, "merge", _body(memory_id=mid, into="main", **{"from": "x"}),
                                  None)
    first = await memory_store(nats_js).load(NS, mid)
    again = await memory_store(nats_js).load(NS, mid)  # a cold fold of the same subject
    assert first.dag is not None and again.dag is not None
    assert [n.version_id for n in first.dag.graph] == [n.version_id for n in again.dag.graph]
    assert again.dag.content_of(merged.version_id or "") == "A\nm\nB\n"
