"""The registry_sync service's state and work: the fold of the stream, the sync ticks, the
publication of their events, and the operations it answers (route, consult, registry_sync).

**State is a fold of the stream.** The in-memory registry (:class:`RegistryState`) is rebuilt
from the stream by a leader consumer on the shared runtime (:mod:`.follower`); the
service never changes it directly. A tick computes its diff against the folded state,
publishes the diff as events (each publish bounded by ``publish_timeout_s``), then waits
(bounded by ``fold_timeout_s``) until the follower has folded up to the last one, so what the
next tick and every routing decision see is exactly what the stream says. One tick runs at a
time; only the active instance (the runtime's leader) ticks and answers operations.

**Timers** are due from the ``at`` of the last provider / ranking event in the stream (a
restart does not resync early); the clock is injected, so a test advances it.

**Probes.** A model whose consultation calls fail :data:`PROBE_AFTER_FAILURES` times in a row
(5xx, unreachable, malformed, timeout; not 429 or an open breaker) becomes suspect
(``probe_failed``) at the next turn of the ticker, so it stops being routed; each provider tick
then probes such models with one tiny chat call and restores those that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import msgspec

from libs.events import (
    HDR_MSG_ID,
    Conflict,
    EventBase,
    InvalidInput,
    MnemosError,
    NotFound,
    Unavailable,
    encode_event,
    event_subject,
    is_blank,
    new_command_id,
    validate_writable_namespace,
)
from libs.events.model import (
    ProviderSynced,
    ProviderSyncFailed,
    RankingPublished,
)
from libs.events.reasoning import (
    Consult,
    ConsultAnswerView,
    ConsultContextView,
    ConsultFailureView,
    ConsultResult,
    RouteCandidateView,
    RouteQuery,
    RouteView,
    SyncRegistry,
    SyncReport,
    consultation_event,
    registry_event,
)
from libs.events.registry import (
    ConsultationAnswerReceivedData,
    ConsultationModelFailedData,
    ConsultationStartedData,
    ModelRecordData,
    ModelSuspectData,
    ProviderSyncFailedData,
)
from libs.llm import ProviderConfig, build_chat_client, build_http, build_lister
from libs.llm.transport import ProviderHttp
from libs.llm.types import ChatClient, ChatMessage, ModelLister
from libs.runtime.logging import get_logger
from services.registry_sync.config import RegistrySyncConfig, require_consultable
from services.registry_sync.consensus import EmbedFn
from services.registry_sync.consult import ConsultationPayload, ConsultRequest, consult
from services.registry_sync.diff import probe_failed, probe_succeeded
from services.registry_sync.leaderboard import load_board
from services.registry_sync.metrics import (
    CONSULTATIONS,
    LEADERBOARD_FAILURES,
    MODELS,
    PROVIDER_SYNC_FAILURES,
    REGISTRY_EVENTS_PUBLISHED,
    SYNC_SECONDS,
)
from services.registry_sync.prices import PriceTable, load_price_table
from services.registry_sync.routing import (
    PROFILES,
    Observations,
    RouteRequest,
    RoutingIndex,
)
from services.registry_sync.state import EMPTY, RegistryPayload, RegistryState, fold
from services.registry_sync.sync import rank_tick, sync_tick

__all__ = ["ContextFn", "ContextPiece", "LookupFn", "RegistryService"]

log = get_logger(__name__)

_APPROX_CHARS_PER_TOKEN: Final = 4
_FINISHED_KEPT: Final = 1024
PROBE_AFTER_FAILURES: Final = 3
"""Failed calls in a row after which a model becomes suspect (``probe_failed``)."""
_PROBE_FAILURES: Final = frozenset({"server_error", "unreachable", "malformed", "timeout"})
_PROBE_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class ContextPiece:
    """The memory context of a consultation (see :data:`ContextFn`)."""

    text: str = ""
    memory_ids: tuple[str, ...] = ()
    receipts: tuple[str, ...] = ()
    source: str = "none"


ContextFn = Callable[[str, str, int], Any]
"""``(namespace, query, token budget) -> awaitable ContextPiece``: the context seam."""
LookupFn = Callable[[str, str], Awaitable[tuple[str, ConsultResult | None] | None]]
"""``(namespace, consultation id) ->`` its prompt and finished result, from the read model."""


@dataclass
class _Folded:
    """What the follower folded: the registry and when its timers last fired."""

    state: RegistryState = EMPTY
    seq: int = 0
    provider_at: datetime | None = None
    ranking_at: datetime | None = None
    failing: set[str] = field(default_factory=set)
    """Providers whose last sync failed."""
    target: int = 0
    active: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def _timed(target: str) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        SYNC_SECONDS.labels(target).observe(time.perf_counter() - started)


class RegistryService:
    """Everything the service does between its transports (see the module docstring)."""

    def __init__(self, settings: RegistrySyncConfig, js: Any, *, embed: EmbedFn,
                 context: ContextFn | None = None,
                 clock: Callable[[], datetime] | None = None,
                 http: httpx.AsyncClient | None = None,
                 lookup: LookupFn | None = None) -> None:
        self.settings = settings
        self.js = js
        self.embed = embed
        self.context = context
        self.clock = clock or (lambda: datetime.now(UTC))
        self.folded = _Folded()
        self.observations = Observations()
        self._index: RoutingIndex | None = None
        self._index_seq = -1
        self._tick_lock = asyncio.Lock()
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self._providers: dict[str, ProviderConfig] = {p.name: p for p in settings.providers}
        self._edges: dict[str, ProviderHttp] = {
            name: build_http(p, client=self._http, breaker_clock=time.monotonic)
            for name, p in self._providers.items()}
        self._listers: list[ModelLister] = [build_lister(p, self._edges[p.name])
                                            for p in settings.providers]
        self._chat: dict[str, ChatClient] = {}
        self.lookup = lookup
        self._inflight: set[tuple[str, str]] = set()
        self._finished: dict[tuple[str, str], tuple[str, ConsultResult | None]] = {}
        self._failures_in_a_row: dict[str, int] = {}
        self._board_failed_at: datetime | None = None
        self._probe_failures: dict[str, str] = {}

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        if self._owns_http:
            await self._http.aclose()

    # --- the fold -------------------------------------------------------------------------

    def reset(self, target: int) -> None:
        """A new leadership session: fold again from the start of the stream."""
        self.folded = _Folded(target=target, active=True)
        self._index = None

    def deactivate(self) -> None:
        """The session ended (standby, lost connection): no ticks, no answers."""
        self.folded.active = False

    @property
    def ready(self) -> bool:
        """Active and caught up with the stream as it was at takeover."""
        return self.folded.active and self.folded.seq >= self.folded.target

    def fold(self, items: Sequence[tuple[int, EventBase]], last_seq: int) -> None:
        """Fold decoded registry events (``(seq, event)``) and move to ``last_seq``."""
        f = self.folded
        payloads: list[RegistryPayload] = []
        for _, event in items:
            payloads.append(event.data)  # type: ignore[attr-defined]
            if isinstance(event, ProviderSynced | ProviderSyncFailed):
                f.provider_at = event.at
                if isinstance(event, ProviderSynced):
                    f.failing.discard(event.data.provider)
                else:
                    f.failing.add(event.data.provider)
            elif isinstance(event, RankingPublished):
                f.ranking_at = event.at
        if payloads:
            try:
                f.state = fold(f.state, payloads)
            except KeyError:  # an event about a model no earlier event listed: skip just it
                for payload in payloads:
                    try:
                        f.state = fold(f.state, [payload])
                    except KeyError as missing:
                        log.error("registry_event_unfoldable", key=str(missing))
        f.seq = max(f.seq, last_seq)
        if payloads:
            counts = dict.fromkeys(("active", "suspect", "retired"), 0)
            for model in f.state.models.values():
                counts[model.liveness] += 1
            for liveness, count in counts.items():
                MODELS.labels(liveness).set(count)
        f.changed.set()
        f.changed = asyncio.Event()

    async def wait_folded(self, seq: int) -> None:
        """Until the fold has reached ``seq`` (bounded by ``fold_timeout_s``)."""
        deadline = time.monotonic() + self.settings.fold_timeout_s
        while self.folded.seq < seq:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(f"registry_sync did not fold its own events up to seq {seq} "
                                  f"within {self.settings.fold_timeout_s:g}s",
                                  folded=self.folded.seq)
            changed = self.folded.changed
            try:
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
            except TimeoutError:
                continue

    def index(self) -> RoutingIndex:
        """The routing index of the folded registry (rebuilt once per change)."""
        if self._index is None or self._index_seq != self.folded.seq:
            self._index = RoutingIndex(self.folded.state, self.settings.routing,
                                       self.observations)
            self._index_seq = self.folded.seq
        return self._index

    # --- publishing -----------------------------------------------------------------------

    async def _publish(self, event: EventBase) -> int:
        subject = event_subject(event.ns, event.aggregate, event.aggregate_id)
        try:
            ack = await self.js.publish(subject, encode_event(event),
                                        headers={HDR_MSG_ID: event.id},
                                        timeout=self.settings.publish_timeout_s)
        except Exception as exc:
            raise Unavailable(f"publishing {type(event).__name__} failed: "
                              f"{type(exc).__name__}: {exc}"[:300]) from None
        return int(ack.seq)

    async def publish_registry(self, payloads: Sequence[RegistryPayload]) -> int:
        """Publish one tick's payloads in order (one causation); the last sequence (0: none)."""
        command_id, at, last = new_command_id(), self.clock(), 0
        for index, payload in enumerate(payloads):
            last = await self._publish(registry_event(payload, command_id=command_id,
                                                      index=index, at=at))
            REGISTRY_EVENTS_PUBLISHED.labels(type(payload).__name__.removesuffix("Data")).inc()
            if isinstance(payload, ProviderSyncFailedData):
                PROVIDER_SYNC_FAILURES.labels(payload.provider, payload.error_code).inc()
        return last

    # --- ticks ----------------------------------------------------------------------------

    def due(self) -> tuple[bool, bool]:
        """Whether the provider and the leaderboard syncs are due now."""
        now, f, s = self.clock(), self.folded, self.settings
        provider_wait = min(s.provider_interval_s, s.retry_failed_s) if f.failing else (
            s.provider_interval_s)
        providers = bool(self._listers) and (
            f.provider_at is None or (now - f.provider_at).total_seconds() >= provider_wait)
        board = s.leaderboard is not None and bool(f.state.models) and (
            f.ranking_at is None or (now - f.ranking_at).total_seconds()
            >= s.leaderboard_interval_s) and (
            self._board_failed_at is None
            or (now - self._board_failed_at).total_seconds() >= s.retry_failed_s)
        return providers, board

    async def _prices(self) -> PriceTable | None:
        source = self.settings.price_table
        if source is None:
            return None
        try:
            return await load_price_table(source, self._http)
        except MnemosError as exc:
            log.warning("price_table_unavailable", source=source, error=exc.message)
            return None

    async def sync_providers(self) -> tuple[list[RegistryPayload], int]:
        """One provider tick: fetch every provider, publish the diff, wait for its fold."""
        async with self._tick_lock, _timed("providers"):
            s = self.settings
            prices = await self._prices()
            result = await sync_tick(self.folded.state, self._listers, self.clock().date(),
                                     prices=prices, price_routes=s.price_routes,
                                     family_aliases=s.family_aliases, policy=s.liveness)
            last = await self.publish_registry(result.payloads)
            await self.wait_folded(last)
            restored = await self._reprobe()
            if restored:
                last = await self.publish_registry(restored)
                await self.wait_folded(last)
                result = msgspec.structs.replace(result, payloads=(*result.payloads, *restored))
            log.info("providers_synced", events=len(result.payloads), last_seq=last,
                     failed=[p.provider for p in result.payloads
                             if isinstance(p, ProviderSyncFailedData)])
            return list(result.payloads), last

    async def sync_leaderboard(self) -> tuple[list[RegistryPayload], int]:
        """One leaderboard tick: load every page, publish the ranking, wait for its fold."""
        async with self._tick_lock, _timed("leaderboard"):
            s = self.settings
            if s.leaderboard is None:
                return [], 0
            try:
                board = await load_board(s.leaderboard, self._http,
                                         rows_api_params=s.leaderboard_rows_api)
            except MnemosError as exc:
                self._board_failed_at = self.clock()  # retried retry_failed_s later
                LEADERBOARD_FAILURES.labels(s.leaderboard_name).inc()
                log.warning("leaderboard_unavailable", source=s.leaderboard,
                            error=exc.message, retry_in_s=s.retry_failed_s)
                raise
            self._board_failed_at = None
            result = rank_tick(self.folded.state, board, source=s.leaderboard_name,
                               category=s.leaderboard_category, aliases=s.leaderboard_aliases)
            last = await self.publish_registry(result.payloads)
            await self.wait_folded(last)
            ranking = result.payloads[0]
            log.info("leaderboard_published", rows=getattr(ranking, "rows", 0),
                     matched=len(getattr(ranking, "entries", ())),
                     unmatched=getattr(ranking, "unmatched", 0), last_seq=last)
            return list(result.payloads), last

    def _note_calls(self, steps: Sequence[ConsultationPayload]) -> None:
        """Count each consulted model's failures in a row; at :data:`PROBE_AFTER_FAILURES`
        the model is queued to become suspect (``probe_failed``) at the next turn."""
        for step in steps:
            if isinstance(step, ConsultationAnswerReceivedData):
                self._failures_in_a_row.pop(step.key, None)
            elif isinstance(step, ConsultationModelFailedData) and (
                    step.error_code in _PROBE_FAILURES):
                count = self._failures_in_a_row.get(step.key, 0) + 1
                self._failures_in_a_row[step.key] = count
                if count >= PROBE_AFTER_FAILURES:
                    self._probe_failures[step.key] = (
                        f"{count} calls in a row failed; last: {step.error_code}: "
                        f"{step.message}")

    async def mark_probe_failures(self) -> int:
        """Publish ``ModelSuspect(probe_failed)`` for the queued models; the last sequence."""
        if not self._probe_failures:
            return 0
        async with self._tick_lock:
            queued, self._probe_failures = self._probe_failures, {}
            payloads: list[RegistryPayload] = []
            for key, detail in sorted(queued.items()):
                payloads += probe_failed(self.folded.state, key, detail)
                self._failures_in_a_row.pop(key, None)
            last = await self.publish_registry(payloads)
            if last:
                await self.wait_folded(last)
                log.warning("models_suspect_after_failed_calls",
                            models=[p.key for p in payloads if isinstance(p, ModelSuspectData)])
            return last

    async def _reprobe(self) -> list[RegistryPayload]:
        """Probe every model suspect because its calls failed (one tiny chat call each);
        those that answer are restored. Runs inside a provider tick."""
        suspects = [m.record.key for m in self.folded.state.models.values()
                    if m.liveness == "suspect" and m.suspect_reason == "probe_failed"]
        payloads: list[RegistryPayload] = []
        for key in sorted(suspects):
            try:
                await self._client_for(key).complete(
                    [ChatMessage(role="user", content="Reply with: ok")], max_tokens=1,
                    timeout_s=_PROBE_TIMEOUT_S)
            except Exception as exc:  # still failing: it stays suspect
                log.info("probe_failed", model=key, error=f"{type(exc).__name__}"[:100])
                continue
            payloads += probe_succeeded(self.folded.state, key)
        return payloads

    async def tick(self) -> None:
        """Run whichever timer is due (called by the ticker loop when ready)."""
        await self.mark_probe_failures()
        providers, board = self.due()
        if providers:
            await self.sync_providers()
            _, board = self.due()
        if board:
            await self.sync_leaderboard()

    # --- operations -----------------------------------------------------------------------

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable("registry_sync is still folding the registry from the stream",
                              folded=self.folded.seq, target=self.folded.target)

    async def route(self, ns: str, request: RouteQuery) -> RouteView:
        """Explain a routing decision over the folded registry."""
        self._require_ready()
        decision = self.index().route(RouteRequest(
            namespace=ns, capabilities=request.capabilities,
            input_modalities=request.input_modalities, context_tokens=request.context_tokens,
            output_tokens=request.output_tokens, profile=request.profile,
            include_suspect=request.include_suspect, exclude=request.exclude,
            limit=request.limit))
        wq, wc, wl, wr = PROFILES[request.profile]
        return RouteView(
            candidates=tuple(RouteCandidateView(**msgspec.structs.asdict(c))
                             for c in decision.candidates),
            considered=decision.considered, rejected=decision.rejected,
            profile=request.profile,
            weights={"quality": wq, "cost": wc, "latency": wl, "reliability": wr},
            registry_seq=self.folded.seq)

    async def sync_now(self, request: SyncRegistry) -> SyncReport:
        """``registry_sync``: run the requested ticks now."""
        self._require_ready()
        if not self._listers and request.target != "leaderboard":
            reason = self.settings.idle_reason() or "no provider"
            raise Unavailable(f"nothing to sync: {reason}", missing="providers")
        if request.target == "leaderboard" and self.settings.leaderboard is None:
            raise NotFound("no leaderboard configured (set \"leaderboard\" in the registry "
                           "config)", missing="leaderboard")
        started = time.perf_counter()
        payloads: list[RegistryPayload] = []
        last = 0
        if request.target in ("providers", "all"):
            published, last = await self.sync_providers()
            payloads += published
        if request.target in ("leaderboard", "all") and self.settings.leaderboard is not None:
            published, seq = await self.sync_leaderboard()
            payloads += published
            last = max(last, seq)
        by_type: dict[str, int] = {}
        for payload in payloads:
            name = type(payload).__name__.removesuffix("Data")
            by_type[name] = by_type.get(name, 0) + 1
        failed = tuple(sorted(p.provider for p in payloads
                              if isinstance(p, ProviderSyncFailedData)))
        return SyncReport(target=request.target, events=len(payloads), by_type=by_type,
                          failed_providers=failed, last_seq=last,
                          duration_s=round(time.perf_counter() - started, 3))

    def _client_for(self, key: str) -> ChatClient:
        client = self._chat.get(key)
        if client is None:
            model = self.folded.state.models.get(key)
            if model is None or model.record.provider not in self._providers:
                raise Unavailable(f"no configured provider serves {key}")
            provider = model.record.provider
            client = build_chat_client(self._providers[provider], self._edges[provider],
                                       model.record.model_id)
            self._chat[key] = client
        return client

    async def _context(self, ns: str, request: Consult) -> ContextPiece:
        if not request.context or request.context_tokens == 0 or self.context is None:
            return ContextPiece()
        query = request.context_query if request.context_query and not is_blank(
            request.context_query) else request.prompt
        try:
            piece: ContextPiece = await self.context(ns, query, request.context_tokens)
        except MnemosError:
            raise
        except Exception as exc:  # the read models are away: say so, do not answer blind
            raise Unavailable(f"the memory context could not be assembled: "
                              f"{type(exc).__name__}; retry, or consult with context=false"
                              ) from None
        return piece

    async def consult(self, ns: str, actor: Any, request: Consult) -> ConsultResult:
        """Run one consultation; every step is published as it happens."""
        validate_writable_namespace(ns)
        if is_blank(request.prompt):
            raise InvalidInput("prompt needs visible text", field="prompt")
        require_consultable(self.settings)
        self._require_ready()
        cid = request.consultation_id or new_command_id()
        if (ns, cid) in self._inflight:
            raise Conflict(f"consultation {cid} is already running", consultation_id=cid)
        if request.consultation_id is not None:
            found = self._finished.get((ns, cid))
            if found is None and self.lookup is not None:
                found = await self.lookup(ns, cid)
            if found is not None:
                prompt, stored = found
                if prompt != request.prompt or stored is None:
                    raise Conflict(f"consultation id {cid} was used for another consultation"
                                   if prompt != request.prompt else
                                   f"consultation {cid} has not finished", consultation_id=cid)
                return stored
        self._inflight.add((ns, cid))
        try:
            result = await self._consult(ns, actor, request, cid)
        finally:
            self._inflight.discard((ns, cid))
        # A retry arriving before the projector has this one is answered from here.
        self._finished[(ns, cid)] = (request.prompt,
                                     msgspec.structs.replace(result, duplicate=True))
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.pop(next(iter(self._finished)))
        return result

    async def _consult(self, ns: str, actor: Any, request: Consult, cid: str) -> ConsultResult:
        context = await self._context(ns, request)
        records: Mapping[str, ModelRecordData] = {
            k: m.record for k, m in self.folded.state.models.items()}
        steps: list[ConsultationPayload] = []
        last = 0

        async def emit(payload: ConsultationPayload) -> None:
            nonlocal last
            event = consultation_event(ns, payload, actor=actor, index=len(steps),
                                       at=self.clock())
            steps.append(payload)
            last = await self._publish(event)

        core = ConsultRequest(
            consultation_id=cid, prompt=request.prompt, context=context.text,
            context_receipts=context.receipts,
            route=RouteRequest(namespace=ns, profile=request.profile,
                               context_tokens=(len(context.text) + len(request.prompt))
                               // _APPROX_CHARS_PER_TOKEN,
                               output_tokens=request.max_tokens),
            models=request.models, timeout_s=request.timeout_s, max_tokens=request.max_tokens,
            discrete=request.discrete)
        try:
            outcome = await consult(core, self.index(), records, self._client_for, self.embed,
                                    emit, self.settings.consensus)
        except Unavailable as exc:
            if steps:  # the fan-out itself failed: a service problem
                raise
            # Routing left no model: what the request asks for, nothing registered offers.
            raise NotFound(exc.message, **exc.detail) from None
        self._note_calls(steps)
        CONSULTATIONS.labels("reached" if outcome.result.reached else "abstained").inc()
        answers = {a.key: a for a in outcome.answers}
        views = tuple(
            ConsultAnswerView(key=s.key, family=s.family, text=s.text, latency_ms=s.latency_ms,
                              input_tokens=s.input_tokens, output_tokens=s.output_tokens,
                              cost_usd=s.cost_usd)
            for s in steps if isinstance(s, ConsultationAnswerReceivedData)
            and s.key in answers)
        failures = tuple(
            ConsultFailureView(key=s.key, error_code=s.error_code, message=s.message,
                               failover_to=s.failover_to)
            for s in steps if isinstance(s, ConsultationModelFailedData))
        r = outcome.result
        started = steps[0]
        assert isinstance(started, ConsultationStartedData)
        return ConsultResult(
            consultation_id=cid, reached=r.reached, method=r.method, answer_key=r.answer_key,
            answer=r.answer, agreement=r.agreement,
            threshold=self.settings.consensus.abstain_below, reason=r.reason,
            clusters=r.clusters, claims=r.claims, dissent=r.dissent, answers=views,
            failed=failures,
            context=ConsultContextView(memory_ids=context.memory_ids,
                                       chars=len(context.text),
                                       hash=started.context_hash,
                                       receipts=context.receipts,
                                       source=context.source),  # type: ignore[arg-type]
            last_seq=last)
