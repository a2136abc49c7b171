"""One sync tick as the lead's timer will call it: fetch, join, diff (no bus, no database).

Providers are fetched concurrently; one that fails becomes a ``ProviderFetch`` with its error
(its models are kept and marked stale by the diff). The returned payloads are what to publish,
in order; the returned state is their fold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date

import msgspec

from libs.events.errors import MnemosError
from libs.events.registry import FailureCode
from libs.llm.errors import ProviderError, ProviderRejected
from libs.llm.types import ModelLister
from services.registry_sync.diff import LivenessPolicy, ProviderFetch, apply_sync
from services.registry_sync.leaderboard import Board, select
from services.registry_sync.prices import PriceTable
from services.registry_sync.ranking import publish_ranking
from services.registry_sync.records import build_records
from services.registry_sync.state import RegistryPayload, RegistryState, fold

__all__ = ["SyncResult", "fetch_provider", "rank_tick", "sync_tick"]


class SyncResult(msgspec.Struct, frozen=True, kw_only=True):
    """The state after a tick and the payloads that produced it (to publish, in order)."""

    state: RegistryState
    payloads: tuple[RegistryPayload, ...]


async def fetch_provider(lister: ModelLister, prices: PriceTable | None, price_route: str | None,
                         family_aliases: Mapping[str, str]) -> ProviderFetch:
    """One provider's complete list as records, or its failure."""
    try:
        listing = await lister.list_models()
    except (ProviderError, ProviderRejected) as exc:
        return ProviderFetch(provider=lister.provider, error_code=exc.failure,
                             error_message=exc.message)
    except MnemosError as exc:  # e.g. an invalid page the adapter refused
        code: FailureCode = "malformed"
        return ProviderFetch(provider=lister.provider, error_code=code, error_message=exc.message)
    records = build_records(listing.models, prices, price_route, family_aliases)
    return ProviderFetch(provider=lister.provider, records=records, pages=listing.pages)


async def sync_tick(state: RegistryState, listers: Sequence[ModelLister], today: date, *,
                    prices: PriceTable | None = None,
                    price_routes: Mapping[str, str] | None = None,
                    family_aliases: Mapping[str, str] | None = None,
                    policy: LivenessPolicy | None = None) -> SyncResult:
    """Fetch every provider concurrently and diff against ``state``."""
    routes = price_routes or {}
    fetches = await asyncio.gather(*(
        fetch_provider(lister, prices, routes.get(lister.provider), family_aliases or {})
        for lister in listers))
    new_state, payloads = apply_sync(state, fetches, today, policy)
    return SyncResult(state=new_state, payloads=tuple(payloads))


def rank_tick(state: RegistryState, board: Board, *, source: str, category: str,
              aliases: Mapping[str, Sequence[str]]) -> SyncResult:
    """Publish a leaderboard's selected category against the registry's current models."""
    rows = select(board.rows, category)
    records = {k: m.record for k, m in state.models.items()}
    payload = publish_ranking(records, rows, source=source, category=category, aliases=aliases,
                              pages=board.pages, malformed=board.malformed)
    return SyncResult(state=fold(state, [payload]), payloads=(payload,))
