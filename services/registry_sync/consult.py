"""Consultations: one prompt to N routed models of different families, then consensus.

Every step is an event payload handed to the injected ``emit`` (the lead publishes them):
started, one answer received or model failed per call, then consensus reached or abstained.
Each call has its own timeout and goes through its provider's circuit breaker (inside the
client); a call that fails with 5xx, 429, a timeout, a malformed body or an open breaker hands
its slot to the next routed candidate of a family not yet consulted (failover). A rejection
(4xx) is not failed over: another model would be sent the same bad request. Calls still running
at the consultation's deadline are cut off and the consultation proceeds with what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Literal

import blake3
import msgspec

from libs.events.errors import InvalidInput, MnemosError, Unavailable
from libs.events.registry import (
    ConsensusAbstainedData,
    ConsensusReachedData,
    ConsultationAnswerReceivedData,
    ConsultationModelFailedData,
    ConsultationStartedData,
    FailureCode,
    ModelRecordData,
)
from libs.llm.errors import ProviderError, ProviderRejected
from libs.llm.types import ChatClient, ChatMessage, ChatReply
from services.registry_sync.consensus import (
    Answer,
    ConsensusPolicy,
    ConsensusResult,
    EmbedFn,
    consensus,
)
from services.registry_sync.routing import Candidate, RouteRequest, RoutingIndex, pick_diverse

__all__ = ["ConsultOutcome", "ConsultRequest", "ConsultationPayload", "consult"]

ConsultationPayload = (
    ConsultationStartedData | ConsultationAnswerReceivedData | ConsultationModelFailedData
    | ConsensusReachedData | ConsensusAbstainedData
)
"""Every payload a consultation emits."""
SYSTEM_PROMPT: Final = (
    "Answer the question. Use the context when it is relevant; say so when it is not enough.")
"""The system turn sent to every consulted model."""


class ConsultRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A consultation: the prompt, the caller's assembled context, and how to route it.

    ``timeout_s`` bounds each call; ``deadline_s`` (default twice that) the whole fan-out,
    failovers included.
    """

    consultation_id: str
    prompt: str
    context: str = ""
    context_receipts: tuple[str, ...] = ()
    route: RouteRequest = RouteRequest()
    models: int = 3
    timeout_s: float = 30.0
    deadline_s: float | None = None
    max_tokens: int = 512
    discrete: bool | None = None


class ConsultOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The consensus, the answers it was computed from, and the models whose calls failed."""

    result: ConsensusResult
    answers: tuple[Answer, ...]
    failed: tuple[str, ...]


Emit = Callable[[ConsultationPayload], Awaitable[None]]
ClientFor = Callable[[str], ChatClient]


def _messages(request: ConsultRequest) -> list[ChatMessage]:
    user = request.prompt if not request.context.strip() else (
        f"Context:\n{request.context}\n\nQuestion:\n{request.prompt}")
    return [ChatMessage(role="system", content=SYSTEM_PROMPT),
            ChatMessage(role="user", content=user)]


def _cost(record: ModelRecordData | None, reply: ChatReply) -> float | None:
    if record is None or record.input_cost_per_token is None or (
            record.output_cost_per_token is None):
        return None
    return round(reply.input_tokens * record.input_cost_per_token
                 + reply.output_tokens * record.output_cost_per_token, 12)


def _failure(error: BaseException) -> tuple[FailureCode, str]:
    if isinstance(error, TimeoutError):
        return "timeout", "no answer within the call's timeout"
    if isinstance(error, MnemosError):
        failure: FailureCode = (error.failure if isinstance(error, ProviderError | ProviderRejected)
                                else "server_error")
        return failure, error.message[:500]
    return "server_error", f"{type(error).__name__}: {str(error)[:400]}"


class _Fanout:
    """The state one consultation's parallel slots share (single event loop: no locks)."""

    def __init__(self, request: ConsultRequest, candidates: tuple[Candidate, ...],
                 index: RoutingIndex, records: Mapping[str, ModelRecordData],
                 client_for: ClientFor, emit: Emit) -> None:
        self.request = request
        self.candidates = candidates
        self.index = index
        self.records = records
        self.client_for = client_for
        self.emit = emit
        self.used: set[str] = set()
        self.families: set[str] = set()
        self.answers: list[Answer] = []
        self.failed: list[str] = []
        self.messages = _messages(request)

    def take(self, candidate: Candidate) -> None:
        self.used.add(candidate.key)
        self.families.add(candidate.family)

    def next_candidate(self) -> Candidate | None:
        for candidate in self.candidates:
            if candidate.key not in self.used and candidate.family not in self.families:
                self.take(candidate)
                return candidate
        return None

    async def slot(self, first: Candidate) -> None:
        candidate: Candidate | None = first
        while candidate is not None:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.request.timeout_s):
                    reply = await self.client_for(candidate.key).complete(
                        self.messages, max_tokens=self.request.max_tokens,
                        timeout_s=self.request.timeout_s)
            except Exception as exc:  # every failure becomes an event; failover decides
                candidate = await self._failed(candidate, exc, time.perf_counter() - started)
                continue
            await self._answered(candidate, reply)
            return

    async def _answered(self, candidate: Candidate, reply: ChatReply) -> None:
        self.index.observe(candidate.key, True, reply.latency_s)
        self.answers.append(Answer(key=candidate.key, text=reply.text))
        await self.emit(ConsultationAnswerReceivedData(
            consultation_id=self.request.consultation_id, key=candidate.key,
            family=candidate.family, text=reply.text,
            text_hash=blake3.blake3(reply.text.encode()).hexdigest(),
            model_reported=reply.model, latency_ms=round(reply.latency_s * 1000, 3),
            input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cost_usd=_cost(self.records.get(candidate.key), reply),
            finish_reason=reply.finish_reason))

    async def _failed(self, candidate: Candidate, error: BaseException,
                      elapsed_s: float) -> Candidate | None:
        self.index.observe(candidate.key, False)
        self.failed.append(candidate.key)
        code, message = _failure(error)
        fail_over = isinstance(error, ProviderError | TimeoutError)
        replacement = self.next_candidate() if fail_over else None
        await self.emit(ConsultationModelFailedData(
            consultation_id=self.request.consultation_id, key=candidate.key, error_code=code,
            message=message, latency_ms=round(elapsed_s * 1000, 3),
            failover_to=replacement.key if replacement else None))
        return replacement


async def consult(request: ConsultRequest, index: RoutingIndex,
                  records: Mapping[str, ModelRecordData], client_for: ClientFor,
                  embed: EmbedFn, emit: Emit,
                  policy: ConsensusPolicy | None = None) -> ConsultOutcome:
    """Run one consultation; raise :class:`Unavailable` if no model fits the request."""
    if not request.prompt.strip() or "\x00" in request.prompt + request.context:
        raise InvalidInput("a consultation needs a prompt with visible text and no U+0000")
    if request.models < 1:
        raise InvalidInput("models must be >= 1", models=request.models)
    decision = index.route(request.route)
    planned = pick_diverse(decision.candidates, request.models)
    if not planned:
        raise Unavailable("no registered model fits this consultation",
                          rejected=decision.rejected, considered=decision.considered)
    fanout = _Fanout(request, decision.candidates, index, records, client_for, emit)
    for candidate in planned:
        fanout.take(candidate)
    await emit(ConsultationStartedData(
        consultation_id=request.consultation_id, prompt=request.prompt,
        context_hash=blake3.blake3(request.context.encode()).hexdigest(),
        context_chars=len(request.context), context_receipts=request.context_receipts,
        profile=request.route.profile, planned=tuple(c.key for c in planned),
        candidates=len(decision.candidates), timeout_s=request.timeout_s))
    await _run_slots(fanout, planned, request.deadline_s or 2 * request.timeout_s)
    result = await asyncio.to_thread(
        consensus, fanout.answers, embed,
        msgspec.structs.replace(policy or ConsensusPolicy(), discrete=request.discrete),
        request.prompt)
    await emit(_verdict(request.consultation_id, result, policy or ConsensusPolicy(),
                        len(fanout.answers)))
    return ConsultOutcome(result=result, answers=tuple(fanout.answers),
                          failed=tuple(fanout.failed))


async def _run_slots(fanout: _Fanout, planned: list[Candidate], deadline_s: float) -> None:
    tasks = {asyncio.create_task(fanout.slot(c)): c for c in planned}
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fanout.emit(ConsultationModelFailedData(
            consultation_id=fanout.request.consultation_id, key=tasks[task].key,
            error_code="timeout", message="cut off at the consultation deadline",
            latency_ms=round(deadline_s * 1000, 3)))
        fanout.failed.append(tasks[task].key)
    for task in done:
        task.result()  # slot() handles call failures; anything else is a bug to surface


def _verdict(consultation_id: str, result: ConsensusResult, policy: ConsensusPolicy,
             answers: int) -> ConsensusReachedData | ConsensusAbstainedData:
    if result.reached and result.answer_key is not None and result.answer is not None:
        method: Literal["exact", "semantic"] = (
            "exact" if result.method == "exact" else "semantic")
        return ConsensusReachedData(
            consultation_id=consultation_id, method=method, answer_key=result.answer_key,
            answer=result.answer, agreement=result.agreement, threshold=policy.abstain_below,
            clusters=result.clusters, claims=result.claims, dissent=result.dissent)
    return ConsensusAbstainedData(
        consultation_id=consultation_id, method=result.method,
        reason=result.reason or "no agreement", agreement=result.agreement,
        threshold=policy.abstain_below, answers=answers, clusters=result.clusters,
        dissent=result.dissent)
