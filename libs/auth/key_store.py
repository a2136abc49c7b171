"""API keys as aggregates on the event stream: issue, revoke, and look up for authentication.

A key is the aggregate ``apikey`` in namespace ``system`` (subject
``mnemos.evt.system.apikey.<key_id>``): ``ApiKeyIssued`` then maybe ``ApiKeyRevoked``, hashes only.
Authentication reads the key's subject directly (:class:`StreamKeyLookup`), so a key works the
moment it is issued and while Postgres is down; revocation reaches every gateway within the
authenticator's cache time, and at once on those that see the event (they call
``Authenticator.invalidate``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from libs.auth.keys import IssuedKey, StoredApiKey, generate_key
from libs.events import (
    Actor,
    ApiKeyIssued,
    ApiKeyIssuedData,
    ApiKeyRevoked,
    ApiKeyRevokedData,
    Conflict,
    Event,
    Grant,
    NotFound,
    derive_event_id,
    new_command_id,
)
from libs.events.security import AGGREGATE_API_KEY
from libs.eventstore import EventStore, Fold, JetStreamEventStore

__all__ = [
    "API_KEY_FOLD",
    "KEYS_NAMESPACE",
    "KeyState",
    "StreamKeyLookup",
    "issue_key",
    "revoke_key",
]

KEYS_NAMESPACE: Final = "system"


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key folded from its events."""

    key_id: str
    issued: ApiKeyIssuedData | None = None
    revoked: bool = False
    last_seq: int = 0


def _evolve(state: KeyState, event: Event, seq: int) -> KeyState:
    if isinstance(event, ApiKeyIssued):
        state = replace(state, issued=event.data)
    elif isinstance(event, ApiKeyRevoked):
        state = replace(state, revoked=True)
    return replace(state, last_seq=seq)


API_KEY_FOLD: Final[Fold[KeyState]] = Fold(
    aggregate=AGGREGATE_API_KEY, initial=KeyState, evolve=_evolve,
    last_seq=lambda state: state.last_seq)
"""How the event store folds a key."""


class StreamKeyLookup:
    """``key id -> StoredApiKey | None`` from the stream (the authenticator's lookup)."""

    def __init__(self, js: Any) -> None:
        self._store: EventStore[KeyState] = JetStreamEventStore(js, API_KEY_FOLD, cache_size=0)

    async def __call__(self, key_id: str) -> StoredApiKey | None:
        state = await self._store.load(KEYS_NAMESPACE, key_id)
        if state.issued is None:
            return None
        return StoredApiKey.from_issued(state.issued, revoked=state.revoked)


def _envelope(key_id: str, by: str, command_id: str, at: datetime) -> dict[str, Any]:
    return {"id": derive_event_id(KEYS_NAMESPACE, command_id), "ns": KEYS_NAMESPACE,
            "aggregate": AGGREGATE_API_KEY, "aggregate_id": key_id,
            "actor": Actor(principal=by), "command_id": command_id,
            "correlation_id": command_id, "at": at}


async def issue_key(store: EventStore[KeyState], *, principal: str, kind: str,
                    grants: tuple[Grant, ...], by: str, expires_at: datetime | None = None,
                    command_id: str | None = None) -> tuple[IssuedKey, int]:
    """A new key for ``principal`` with ``grants``: its ``ApiKeyIssued`` event appended (the
    key's subject must be new), the key (shown once) and the event's sequence returned."""
    issued = generate_key()
    at = datetime.now(UTC)
    command_id = command_id or new_command_id()
    data = ApiKeyIssuedData(key_id=issued.key_id, prefix=issued.prefix,
                            secret_hash=issued.secret_hash, principal=principal,
                            principal_kind=kind,  # type: ignore[arg-type]
                            grants=grants, expires_at=expires_at, issued_by=by, at=at)
    event = ApiKeyIssued(schema=ApiKeyIssued.SCHEMA, data=data,
                         **_envelope(issued.key_id, by, command_id, at))
    appended = await store.append(KEYS_NAMESPACE, issued.key_id, [event], 0)
    return issued, appended[-1].seq


async def revoke_key(store: EventStore[KeyState], key_id: str, *, reason: str, by: str,
                     command_id: str | None = None) -> int:
    """Append ``ApiKeyRevoked`` for a key that exists and is not revoked; its sequence."""
    state = await store.load(KEYS_NAMESPACE, key_id)
    if state.issued is None:
        raise NotFound(f"no API key {key_id}", key_id=key_id)
    if state.revoked:
        raise Conflict(f"API key {key_id} is already revoked", key_id=key_id)
    at = datetime.now(UTC)
    command_id = command_id or new_command_id()
    event = ApiKeyRevoked(schema=ApiKeyRevoked.SCHEMA,
                          data=ApiKeyRevokedData(key_id=key_id, reason=reason, by=by),
                          **_envelope(key_id, by, command_id, at))
    appended = await store.append(KEYS_NAMESPACE, key_id, [event], state.last_seq)
    return appended[-1].seq
