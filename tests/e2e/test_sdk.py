"""The SDK against a real gateway and projector (real NATS, real Postgres): every kind of
operation over both transports with typed answers, retries that reuse the command id,
read-your-writes, typed errors, the blocking client, and durable subscriptions that survive a
poison message and idle waits."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from libs.events import (
    CommandResult,
    Conflict,
    Event,
    InvalidInput,
    MemoryCreated,
    NotFound,
    Operation,
    PayloadTooLarge,
    Remember,
    Unavailable,
    encode_event,
)
from libs.events.catalogue import CATALOGUE_PATH
from libs.events.views import BranchesView, DiffView, HistoryView, MemoryPage, MemoryView
from libs.runtime.config import Config
from mnemos_sdk import AsyncMnemos, Mnemos, NatsTransport, PoisonMessage
from mnemos_sdk.transport import HttpTransport, Transport
from tests.support.events import History
from tests.support.services import running_gateway

pytestmark = pytest.mark.integration

NS = "team-a"


def _url(config: Config) -> str:
    return f"http://{config.http_host}:{config.http_port}"


async def _exercise(mnemos: AsyncMnemos) -> None:
    first = await mnemos.remember(content="The customer's renewal date is 2027-03-01",
                                  kind="fact", tags=("billing",))
    assert isinstance(first, CommandResult) and not first.duplicate
    other = await mnemos.remember(Remember(content="Deploys happen on Tuesdays", tags=("ops",)))
    found = await mnemos.search(q="when does the customer renew", k=3)  # read-your-writes
    assert found.hits and found.hits[0].memory.memory_id == first.memory_id
    got = await mnemos.get(memory_id=first.memory_id)
    assert isinstance(got, MemoryView) and got.tags == ["billing"]
    revised = await mnemos.revise(memory_id=first.memory_id, content="Renewal: 2027-04-01",
                                  expected_version=first.revision)
    await mnemos.tag(memory_id=first.memory_id, add=("renewal",), remove=("billing",))
    await mnemos.link(memory_id=first.memory_id, target_memory_id=other.memory_id)
    page = await mnemos.list(tags=("renewal",))
    assert isinstance(page, MemoryPage)
    assert [m.memory_id for m in page.items] == [first.memory_id]
    history = await mnemos.history(memory_id=first.memory_id)
    assert isinstance(history, HistoryView)
    assert [e.type for e in history.events] == ["MemoryCreated", "MemoryRevised",
                                                "MemoryTagged", "MemoryLinked"]
    with pytest.raises(Conflict):
        await mnemos.revise(memory_id=first.memory_id, content="stale",
                            expected_version=first.revision)
    await mnemos.branch(memory_id=first.memory_id, branch="draft")
    await mnemos.commit(memory_id=first.memory_id, branch="draft", content="Renewal: 2027-05-01")
    await mnemos.commit(memory_id=first.memory_id, branch="main", content="Renewal: 2027-04-02")
    branches = await mnemos.branches(memory_id=first.memory_id)
    assert isinstance(branches, BranchesView)
    assert sorted(b.branch for b in branches.branches) == ["draft", "main"]
    diff = await mnemos.diff(memory_id=first.memory_id, from_ref="main", to_ref="draft")
    assert isinstance(diff, DiffView) and "2027-05-01" in diff.unified
    merged = await mnemos.merge(memory_id=first.memory_id, into="main", from_branch="draft",
                                strategy="theirs")
    assert merged.version_id is not None
    log = await mnemos.log(memory_id=first.memory_id)
    assert log.entries[0].version_id == merged.version_id
    assert revised.seq < merged.seq == mnemos.last_seq()
    await mnemos.forget(memory_id=other.memory_id, reason="obsolete")
    with pytest.raises(NotFound):
        await mnemos.get(memory_id=other.memory_id)


async def test_every_kind_of_operation_over_http_and_nats(config: Config, nats_js: Any) -> None:
    async with running_gateway(config) as _:
        async with AsyncMnemos.http(_url(config), principal="sdk-test", ns=NS) as over_http:
            await _exercise(over_http)
        async with await AsyncMnemos.nats(config.nats_url, principal="sdk-test",
                                          ns="team-b") as over_nats:
            await _exercise(over_nats)


class _LosesFirstReply:
    """Delivers every request, but loses the first reply (as a dropped connection would)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[msgspec.Struct] = []

    async def call(self, op: Operation, ns: str | None, request: msgspec.Struct,
                   timeout_s: float) -> Any:
        self.sent.append(request)
        reply = await self.inner.call(op, ns, request, timeout_s)
        if len(self.sent) == 1:
            raise Unavailable("reply lost")
        return reply

    async def close(self) -> None:
        await self.inner.close()


async def test_a_body_over_the_broker_limit_is_payload_too_large(config: Config, nats_js: Any
                                                                 ) -> None:
    async with running_gateway(config) as (_, nc):
        mnemos = AsyncMnemos(NatsTransport(nc, principal="sdk-test"), ns=NS)
        with pytest.raises(PayloadTooLarge):
            await mnemos.remember(content="x" * (nc.max_payload + 1))


async def test_a_retry_reuses_the_command_id_and_appends_once(config: Config, nats_js: Any
                                                             ) -> None:
    async with running_gateway(config) as (_, nc):
        flaky = _LosesFirstReply(NatsTransport(nc, principal="sdk-test"))
        mnemos = AsyncMnemos(flaky, ns=NS)
        result = await mnemos.remember(content="sent once, answered twice")
        assert result.duplicate  # the second attempt met the first one's event
        ids = {getattr(r, "command_id", None) for r in flaky.sent}
        assert ids == {result.command_id} and len(flaky.sent) == 2
        history = await mnemos.history(memory_id=result.memory_id)
        assert len(history.events) == 1


async def test_typed_errors_and_bad_input_change_nothing(config: Config, nats_js: Any) -> None:
    async with running_gateway(config) as _:
        async with AsyncMnemos.http(_url(config), principal="sdk-test", ns=NS) as mnemos:
            for bad in ("\x00", "\ud800", "", "   "):
                with pytest.raises(InvalidInput):
                    await mnemos.remember(content=bad)
            with pytest.raises(InvalidInput):
                await mnemos.search(q="x", k=10**9)
            with pytest.raises(InvalidInput):
                await mnemos.remember(Remember(content="a"), kind="fact")  # type: ignore[call-overload]
            with pytest.raises(InvalidInput):
                await mnemos.get(memory_id="not a memory id")
            with pytest.raises(NotFound):
                await mnemos.get(memory_id="01a2357e-0000-7000-8000-000000000001")
            for metadata in ({"x": float("inf")}, {"x": float("nan")}, {"\x00": 1},
                             {"x": float("-inf")}):
                with pytest.raises(InvalidInput):
                    await mnemos.remember(content="ok", metadata=metadata)
            with pytest.raises(PayloadTooLarge):
                await mnemos.remember(content="x" * 20_000_000)
            assert (await mnemos.list()).items == []
            extreme = {"max": 1.7976931348623157e308, "tiny": 5e-324, "neg": -0.1,
                       "big": 2**63 - 1, "small": -(2**63)}
            kept = await mnemos.remember(content="extreme numbers", metadata=extreme)
            assert (await mnemos.get(memory_id=kept.memory_id)).metadata == extreme
            used = await mnemos.remember(content="first use")
            with pytest.raises(Conflict) as reused:
                await mnemos.remember(content="another body", command_id=used.command_id)
            assert reused.value.detail["reason"] == "command_id_reused"
            again = await mnemos.remember(content="first use", command_id=used.command_id)
            assert again.duplicate and again.event_id == used.event_id
        dead = AsyncMnemos(HttpTransport("http://127.0.0.1:9"), ns=NS)
        dead.retry = msgspec.structs.replace(dead.retry, attempts=2, backoff_s=0.01)
        with pytest.raises(Unavailable):
            await dead.list()
        await dead.close()


async def test_the_blocking_client_and_the_served_event_catalogue(config: Config,
                                                                  nats_js: Any) -> None:
    async with running_gateway(config) as (http, _):
        served = await http.get("/schema/events.json")
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/schema+json"
        assert served.content == CATALOGUE_PATH.read_bytes()
        def work() -> list[str]:
            with Mnemos.http(_url(config), principal="sdk-test", ns=NS) as mnemos:
                mnemos.remember(content="The office closes at 18:00")
                return [h.memory.content for h in mnemos.search(q="office closing time").hits]
        assert await asyncio.to_thread(work) == ["The office closes at 18:00"]

        def over_nats() -> int:
            with Mnemos.nats(config.nats_url, principal="sdk-test", ns=NS) as mnemos:
                written = mnemos.tag(memory_id=mnemos.list().items[0].memory_id, add=["x"])
                return mnemos.count(tags=["x"]).count if written.seq else -1
        assert await asyncio.to_thread(over_nats) == 1


async def test_a_subscription_skips_poison_and_waits_bounded(config: Config, nats_js: Any
                                                            ) -> None:
    async with running_gateway(config) as (_, nc):
        mnemos = AsyncMnemos(NatsTransport(nc, principal="sdk-test"), ns=NS)
        await mnemos.remember(content="first")
        await mnemos.remember(content="second")
        # written after the commands: a poison event the projector has not dead-lettered yet can
        # make the gateway's duplicate-window check fail a concurrent command (reported)
        js = nc.jetstream()
        await js.publish(f"mnemos.evt.{NS}.memory.bogus", b"{not json")
        await js.publish(f"mnemos.evt.{NS}.memory.bogus", b'{"type": "MemoryCreated"}')
        old = msgspec.json.decode(encode_event(History(NS).created("stored as schema 1")))
        old["schema"], old["data"]["text"] = 1, old["data"].pop("content")
        del old["data"]["kind"]
        await js.publish(f"mnemos.evt.{NS}.memory.{old['aggregate_id']}",
                         msgspec.json.encode(old))
        await js.publish(f"mnemos.evt.{NS}.memory.newer",
                         b'{"type": "MemoryInventedLater", "schema": 1, "data": {}}')
        with pytest.raises(InvalidInput):
            mnemos.subscribe(NS, ["MemoryCreatd"], durable="typo")
        poisoned: list[PoisonMessage] = []
        async with mnemos.subscribe(NS, ["MemoryCreated"], durable="sdk-test",
                                    on_poison=poisoned.append, wait_s=0.2) as sub:
            seen: list[str] = []
            for _ in range(50):
                for received in await sub.fetch():
                    assert isinstance(received.event, MemoryCreated)
                    seen.append(received.event.data.content)
                    await received.ack()
                if len(seen) == 3:
                    break
            assert seen == ["first", "second", "stored as schema 1"]  # upcast on read
            assert len(poisoned) == 2 and all(p.subject.endswith("bogus") for p in poisoned)
            assert await sub.fetch() == []  # idle: a bounded wait, no TimeoutError


async def test_a_handler_that_keeps_failing_is_reported_not_fatal(config: Config, nats_js: Any
                                                                   ) -> None:
    async with running_gateway(config) as (_, nc):
        mnemos = AsyncMnemos(NatsTransport(nc, principal="sdk-test"), ns=NS)
        await mnemos.remember(content="breaks the handler")
        await mnemos.remember(content="fine")
        handled: list[str] = []
        poisoned: list[PoisonMessage] = []
        stop = asyncio.Event()

        async def handler(event: Event) -> None:
            assert isinstance(event, MemoryCreated)
            if event.data.content == "breaks the handler":
                raise RuntimeError("cannot index this one")
            handled.append(event.data.content)

        def report(poison: PoisonMessage) -> None:
            poisoned.append(poison)
            stop.set()

        async with mnemos.subscribe(NS, ["MemoryCreated"], durable="flaky", max_deliver=2,
                                    wait_s=0.2, on_poison=report) as sub:
            await asyncio.wait_for(sub.run(handler, stop), 60)
        assert handled == ["fine"]
        assert len(poisoned) == 1 and "cannot index this one" in poisoned[0].reason
        assert poisoned[0].delivered == 2
