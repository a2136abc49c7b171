"""The SDK's subscription under the broker's permissions: a subscriber identity, its consumer
``<name>__<ns>``, only its namespace's events, and the agent transport with an agent identity
(``AsyncMnemos.nats`` with the seed file and inbox prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libs.events import MemoryCreated, Unavailable, encode_event
from libs.runtime.nats_auth import BrokerIdentities, subscriber_consumer
from mnemos_sdk import AsyncMnemos, PoisonMessage, Subscription
from tests.integration.test_broker_isolation import (  # noqa: F401 (fixtures)
    SecuredNats,
    connect,
    home,
    identities,
    server,
    streams,
)
from tests.support.events import History

pytestmark = pytest.mark.integration


async def test_a_subscriber_identity_reads_its_namespace_through_the_sdk(
        connect: Any, streams: None, server: SecuredNats, identities: BrokerIdentities,  # noqa: F811
        tmp_path: Path) -> None:
    gateway, _ = await connect("gateway")
    for ns in ("team-a", "team-b"):
        await gateway.jetstream().publish(
            f"mnemos.evt.{ns}.memory.m", encode_event(History(ns).created(f"in {ns}")))
    await gateway.jetstream().publish("mnemos.evt.team-a.memory.m", b"garbage")
    options = identities.connect_options("watcher")
    mnemos = await AsyncMnemos.nats(server.url, credential="", nkeys_seed=options["nkeys_seed"],
                                    inbox_prefix=options["inbox_prefix"])
    poisoned: list[PoisonMessage] = []
    durable = subscriber_consumer("watcher", "team-a")
    async with mnemos.subscribe("team-a", durable=durable, wait_s=0.3,
                                on_poison=poisoned.append) as sub:
        got = await sub.fetch()
        assert [type(r.event) for r in got] == [MemoryCreated]
        assert isinstance(got[0].event, MemoryCreated)
        assert got[0].event.data.content == "in team-a"
        for received in got:
            await received.ack()
        assert len(poisoned) == 1
    # another namespace, or another consumer name: the broker refuses, the SDK says so
    for ns, name in (("team-b", subscriber_consumer("watcher", "team-b")),
                     ("team-a", "projector")):
        refused = Subscription(mnemos.transport.nc, ns, durable=name,  # type: ignore[attr-defined]
                               request_timeout_s=0.6)
        with pytest.raises(Unavailable):
            await refused.start()
    await mnemos.close()
