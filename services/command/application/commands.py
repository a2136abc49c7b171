"""Command handling, shared by the NATS and HTTP transports: decode, deduplicate, decide, append.

One command becomes at most one append. The order of the idempotency guards:

1. a client-supplied ``command_id`` already in ``command_results`` (projected) -> its result;
2. the command id already applied on the addressed memory (folded from the stream, so this holds
   even when the read models lag and the duplicate window has passed) -> its result;
3. JetStream's duplicate window (same ``Nats-Msg-Id``) -> the stored original.

Every answer for a repeat carries ``duplicate=True`` and appends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
import structlog

from libs.auth import Principal
from libs.events import (
    Actor,
    CommandBase,
    CommandResult,
    Conflict,
    Link,
    MnemosError,
    Remember,
    Unavailable,
    command_digest,
    new_command_id,
    validate_command_id,
    validate_id,
    validate_writable_namespace,
)
from libs.eventstore import EventStore, JetStreamEventStore, WrongExpectedSequence
from libs.readmodel.pool import ReadModels
from libs.runtime.config import Config
from libs.runtime.logging import get_logger
from services.command.domain.dag import DAG_COMMANDS, decide_dag
from services.command.domain.memory import (
    MEMORY_FOLD,
    DecisionContext,
    MemoryState,
    decide,
    result_for,
    target_of,
)
from services.command.metrics import COMMAND_SECONDS, COMMANDS_HANDLED

__all__ = [
    "MAX_APPEND_ATTEMPTS",
    "CommandService",
    "memory_store",
]

log = get_logger(__name__)

MAX_APPEND_ATTEMPTS: Final = 16
"""Reload-and-retry rounds for a command *without* ``expected_version`` that lost a race.

Every round has a winner, so N writers racing on one memory from different instances need at
most N rounds; writers in one instance do not race at all (see :class:`_KeyedLocks`)."""
MAX_BACKOFF_S: Final = 0.05
HORIZON_TTL_S: Final = 0.5
DUPLICATE_WINDOW_MARGIN_S: Final = 30.0
"""Safety margin below JetStream's duplicate window (at most a tenth of it) for clock
differences between gateways and servers, when deciding whether the window still covers the
events not yet projected."""


def memory_store(js: Any) -> EventStore[MemoryState]:
    """Memories on JetStream (folded by :data:`MEMORY_FOLD`, states cached in process)."""
    return JetStreamEventStore(js, MEMORY_FOLD)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _reused(command_id: str, memory_id: str) -> Conflict:
    return Conflict(
        f"command id {command_id} was already used for a different command (on memory "
        f"{memory_id}); use a new command id for a new command",
        command_id=command_id, memory_id=memory_id, reason="command_id_reused",
    )


class _KeyedLocks:
    """One asyncio lock per memory, dropped when nobody holds or awaits it.

    Commands on the same memory in this process take turns instead of racing to JetStream, so
    only writers in *other* gateway instances can make an append fail its expected sequence.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class CommandService:
    """Handles every command (the gateway's registry calls :meth:`execute`)."""

    def __init__(self, store: EventStore[MemoryState], read_models: ReadModels | None,
                 config: Config, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._read_models = read_models
        self._config = config
        self._clock = clock
        self._locks = _KeyedLocks()
        self._horizon: tuple[float, bool] | None = None

    async def execute(self, principal: Principal, ns: str, name: str, command: CommandBase
                      ) -> CommandResult:
        """Apply command ``name`` (decoded at the edge) for ``principal`` in namespace ``ns``;
        raise :class:`MnemosError` on failure. Nothing is appended unless the command is valid
        and its decision succeeds."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._execute(principal, ns, name, command)
            outcome = "duplicate" if result.duplicate else "ok"
            return result
        except MnemosError as exc:
            outcome = exc.code
            raise
        finally:
            COMMANDS_HANDLED.labels(name, outcome).inc()
            COMMAND_SECONDS.labels(name).observe(time.perf_counter() - started)

    async def _execute(self, principal: Principal, ns: str, name: str, command: CommandBase
                       ) -> CommandResult:
        ns = validate_writable_namespace(ns)
        supplied = command.command_id is not None
        command_id = validate_command_id(command.command_id) if supplied else new_command_id()
        correlation_id = command.correlation_id or command_id
        digest = command_digest(ns, name, command)
        with structlog.contextvars.bound_contextvars(
            command_id=command_id, correlation_id=correlation_id, command=name, ns=ns,
        ):
            covered = True
            if supplied:
                known, covered = await self._known_result(ns, command_id, digest)
                if known is not None:
                    log.info("command_repeated", source="command_results", seq=known.seq)
                    return known
            actor = Actor(principal=principal.name, agent_id=command.actor.agent_id,
                          model=command.actor.model, provider=command.actor.provider)
            ctx = DecisionContext(
                ns=ns, command_id=command_id, correlation_id=correlation_id, actor=actor,
                at=self._clock(), max_content_bytes=self._config.max_content_bytes,
                command_digest=digest,
            )
            result = await self._decide_and_append(command, ctx, supplied and not covered)
            log.info("command_applied", memory_id=result.memory_id, seq=result.seq,
                     event_type=result.event_type, duplicate=result.duplicate)
            return result

    async def _known_result(self, ns: str, command_id: str, digest: str
                            ) -> tuple[CommandResult | None, bool]:
        """The projected result of a repeated command id, if any, and whether ``command_results``
        and JetStream's duplicate window together cover every event appended so far.

        Only then can a new client-supplied id be told unused; otherwise (Postgres down, or the
        projection further behind than the window) the caller must not append under it. Without
        read models configured (the write side run alone, in tests and tools), only the memory's
        own history is checked.
        """
        if self._read_models is None:
            return None, True
        if not self._read_models.ready:
            return None, False
        try:
            found = await self._read_models.command_result(ns, command_id)
            if found is not None:
                result, stored = found
                if stored is not None and stored != digest:
                    raise _reused(command_id, result.memory_id)
                return result, True
            return None, await self._history_covered()
        except (Unavailable, psycopg.Error) as exc:
            log.warning("command_results_lookup_failed", error=str(exc)[:200])
            return None, False

    async def _history_covered(self) -> bool:
        """Whether every appended event is projected or still inside the duplicate window: the
        oldest unprojected event (checkpoint + 1) is younger than the window, less a margin.
        Read at most every ``HORIZON_TTL_S``; a stale answer only misses newer events, which
        the window covers anyway."""
        assert self._read_models is not None
        now = time.monotonic()
        if self._horizon is not None and now - self._horizon[0] < HORIZON_TTL_S:
            return self._horizon[1]
        checkpoint = await self._read_models.projected_seq()
        covered = True
        if checkpoint < await self._store.last_seq():
            # The store's own time of the message: the clock its duplicate window runs on, and
            # readable even when the event is poison the projector has yet to dead-letter.
            oldest_at = await self._store.appended_at(checkpoint + 1)
            span = self._config.duplicate_window_s
            window = span - min(DUPLICATE_WINDOW_MARGIN_S, span / 10)
            covered = (self._clock() - oldest_at).total_seconds() < window
        self._horizon = (now, covered)
        return covered

    async def _decide_and_append(self, command: CommandBase, ctx: DecisionContext,
                                 unverified: bool) -> CommandResult:
        memory_id = target_of(command, ctx.ns, ctx.command_id)
        async with self._locks.hold((ctx.ns, memory_id)):
            return await self._attempts(command, ctx, memory_id, unverified)

    async def _attempts(self, command: CommandBase, ctx: DecisionContext, memory_id: str,
                        unverified: bool) -> CommandResult:
        expected_version: int | None = getattr(command, "expected_version", None)
        for attempt in range(MAX_APPEND_ATTEMPTS):
            if isinstance(command, Remember) and attempt == 0 and not unverified:
                # A new memory has no events; JetStream checks that (expected seq 0). An
                # unverified client id needs the memory's own history read first.
                state = MemoryState(memory_id=memory_id)
            else:
                state = await self._store.load(ctx.ns, memory_id)
            seen_at = state.applied.get(ctx.command_id)
            if seen_at is not None:
                if state.digests.get(ctx.command_id, ctx.command_digest) != ctx.command_digest:
                    raise _reused(ctx.command_id, memory_id)
                log.info("command_repeated", source="stream", seq=seen_at)
                return result_for(await self._store.event_at(seen_at), seen_at, duplicate=True)
            if unverified:
                raise Unavailable(
                    f"cannot tell whether command id {ctx.command_id} was used before: the read "
                    "models are unavailable or further behind than the duplicate window; retry "
                    "later (or send the command without a command_id)",
                    command_id=ctx.command_id,
                )
            if expected_version is not None and expected_version != state.last_seq:
                raise self._conflict(memory_id, expected_version, state.last_seq)
            target = None
            if isinstance(command, Link):
                target_id = validate_id(command.target_memory_id, "target_memory_id")
                target = await self._store.load(ctx.ns, target_id)
            if isinstance(command, DAG_COMMANDS):
                events = decide_dag(state, command, ctx)
            else:
                events = decide(state, command, ctx, target)
            try:
                appended = await self._store.append(ctx.ns, memory_id, events, state.last_seq)
            except WrongExpectedSequence:
                if expected_version is not None:
                    current = (await self._store.load(ctx.ns, memory_id)).last_seq
                    raise self._conflict(memory_id, expected_version, current) from None
                log.info("append_raced", memory_id=memory_id, attempt=attempt + 1)
                # Jittered exponential backoff: racing instances do not retry in lockstep.
                await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.001 * 2**attempt)))
                continue
            last = appended[-1]
            if last.duplicate and last.event.command_digest not in (None, ctx.command_digest):
                raise _reused(ctx.command_id, last.event.aggregate_id)
            return result_for(last.event, last.seq, duplicate=last.duplicate)
        raise Conflict(
            f"memory {memory_id} changed concurrently {MAX_APPEND_ATTEMPTS} times; retry",
            memory_id=memory_id,
        )

    @staticmethod
    def _conflict(memory_id: str, expected: int, actual: int) -> Conflict:
        return Conflict(
            f"memory {memory_id} is at revision {actual}, not the expected {expected}",
            memory_id=memory_id, expected_version=expected, current_version=actual,
        )
