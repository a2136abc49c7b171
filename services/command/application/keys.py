"""Key management: issue, revoke and list API keys (operations ``create_key``, ``revoke_key``,
``list_keys`` in namespace ``system``, admin scope). Keys are aggregates on the stream
(:mod:`libs.auth.key_store`); the events carry hashes only."""

from __future__ import annotations

from typing import Any

from libs.auth import Principal
from libs.auth.key_store import API_KEY_FOLD, KEYS_NAMESPACE, KeyState, issue_key, revoke_key
from libs.events import (
    EVENTS_STREAM,
    CreateKey,
    InvalidInput,
    KeyCreated,
    KeyList,
    KeyRevoked,
    KeyView,
    ListKeys,
    RevokeKey,
    event_subject,
)
from libs.events.security import AGGREGATE_API_KEY, ApiKeyIssuedData
from libs.eventstore import EventStore, JetStreamEventStore
from libs.eventstore.jetstream import broker_call

__all__ = ["KeyService"]


def _view(data: ApiKeyIssuedData, revoked: bool) -> KeyView:
    return KeyView(key_id=data.key_id, prefix=data.prefix, principal=data.principal,
                   kind=data.principal_kind, grants=data.grants, expires_at=data.expires_at,
                   issued_by=data.issued_by, issued_at=data.at, revoked=revoked)


class KeyService:
    """The key operations over the event stream."""

    def __init__(self, js: Any) -> None:
        self._js = js
        self._store: EventStore[KeyState] = JetStreamEventStore(js, API_KEY_FOLD)

    async def create(self, principal: Principal, ns: str, request: CreateKey) -> KeyCreated:
        """Issue a key; the answer carries the key itself, the only time it is shown."""
        if not request.grants:
            raise InvalidInput("a key needs at least one grant (scope:namespace)",
                               field="grants")
        issued, seq = await issue_key(self._store, principal=request.principal,
                                      kind=request.kind, grants=request.grants,
                                      by=principal.name, expires_at=request.expires_at)
        state = await self._store.load(KEYS_NAMESPACE, issued.key_id)
        assert state.issued is not None
        return KeyCreated(key=issued.key, view=_view(state.issued, False), seq=seq)

    async def revoke(self, principal: Principal, ns: str, request: RevokeKey) -> KeyRevoked:
        """Revoke a key."""
        seq = await revoke_key(self._store, request.key_id, reason=request.reason,
                               by=principal.name)
        return KeyRevoked(key_id=request.key_id, seq=seq)

    async def list(self, principal: Principal, ns: str, request: ListKeys) -> KeyList:
        """Every key, read from the stream (keys are few; no read model is needed)."""
        wildcard = event_subject(KEYS_NAMESPACE, AGGREGATE_API_KEY, "x")[:-1] + "*"
        async with broker_call("stream info"):
            info = await self._js.stream_info(EVENTS_STREAM, subjects_filter=wildcard)
        keys = []
        for subject in sorted(info.state.subjects or {}):
            state = await self._store.load(KEYS_NAMESPACE, subject.rsplit(".", 1)[-1])
            if state.issued is not None:
                keys.append(_view(state.issued, state.revoked))
        return KeyList(keys=keys)
