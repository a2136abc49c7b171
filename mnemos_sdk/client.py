"""The Mnemos clients: :class:`AsyncMnemos` and the blocking :class:`Mnemos`.

Every operation of the catalog is a typed method (``remember``, ``search``, ``merge``, ...),
taking the request struct of ``libs.events`` or its fields as keywords and answering the typed
view. Retries resend the same ``command_id`` (fixed before the first attempt), so a retried
command never appends twice; with ``read_your_writes`` (the default) a query waits for the
client's own latest write in that namespace (``after_seq``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

import msgspec

from libs.events import OPERATIONS, InvalidInput, Operation, Unavailable, convert_params
from mnemos_sdk import discovery
from mnemos_sdk._generated import AsyncOperations, SyncOperations
from mnemos_sdk._wire import checked, ensure_command_id, namespace_for
from mnemos_sdk.subscribe import PoisonHandler, Subscription
from mnemos_sdk.transport import HttpTransport, NatsTransport, Transport

__all__ = ["AsyncMnemos", "Mnemos", "RetryPolicy"]

T = TypeVar("T")
_FIELDS_AND_REQUEST: Final = "pass either a request struct or its fields, not both"


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how patiently :class:`~libs.events.Unavailable` answers are retried."""

    attempts: int = 4
    """Tries in all (1 = no retry)."""
    backoff_s: float = 0.1
    """First pause; doubled after each failed try."""
    max_backoff_s: float = 2.0
    """Longest pause between two tries."""


def _request_of(op: Operation, request: Any, fields: dict[str, Any]) -> msgspec.Struct:
    if request is not None:
        if fields:
            raise InvalidInput(_FIELDS_AND_REQUEST, operation=op.name)
        if not isinstance(request, op.request):
            raise InvalidInput(f"{op.name} takes a {op.request.__name__}",
                               got=type(request).__name__)
        return request
    wire = _wire_names(op.request)
    built: msgspec.Struct = convert_params({wire.get(k, k): v for k, v in fields.items()},
                                           op.request, op.name, strict=True)
    return built


def _credential(given: str | None) -> str | None:
    # None: find the local one; "": explicitly none (anonymous)
    return discovery.find_credential() if given is None else (given or None)


def _per_call(name: str, request: Any, fields: dict[str, Any]) -> tuple[Any, Any]:
    """``ns`` and ``timeout_s`` of a call, taken out of ``fields``, unless they are fields of
    the operation's request given as keywords (``consult`` has a ``timeout_s`` of its own)."""
    own = {f.name for f in msgspec.structs.fields(OPERATIONS[name].request)}
    taken = [fields.pop(key, None) if request is not None or key not in own else None
             for key in ("ns", "timeout_s")]
    return taken[0], taken[1]


@functools.cache
def _wire_names(cls: type[msgspec.Struct]) -> dict[str, str]:
    # keyword arguments use the attribute names (``from_branch``), the wire its names (``from``)
    return {f.name: f.encode_name for f in msgspec.structs.fields(cls)}


class AsyncMnemos(AsyncOperations):
    """An asyncio client over one transport (HTTP or NATS).

    ``ns`` is the default namespace of every call (a call may pass ``ns=``). Build one with
    :meth:`http` or :meth:`nats`, use it as ``async with`` (or call :meth:`close`).
    """

    def __init__(self, transport: Transport, *, ns: str | None = None, timeout_s: float = 10.0,
                 retry: RetryPolicy | None = None, read_your_writes: bool = True) -> None:
        self.transport = transport
        self.ns = ns
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.read_your_writes = read_your_writes
        self._seen: dict[str, int] = {}

    @classmethod
    def http(cls, url: str | None = None, *, credential: str | None = None,
             principal: str | None = None, **options: Any) -> AsyncMnemos:
        """A client of the gateway's HTTP API; URL and credential found as the CLI finds them
        (``MNEMOS_GATEWAY_URL``, ``MNEMOS_API_KEY``, the local ``mnemos up``) when not given
        (``credential=""``: none, anonymous)."""
        transport = HttpTransport(url or discovery.find_http_url(), _credential(credential),
                                  principal)
        return cls(transport, **options)

    @classmethod
    async def nats(cls, url: str | None = None, *, credential: str | None = None,
                   principal: str | None = None, nkeys_seed: str | None = None,
                   inbox_prefix: str | None = None, **options: Any) -> AsyncMnemos:
        """A client over NATS request-reply; on a secured broker pass the agent's broker
        identity (``nkeys_seed`` file and ``inbox_prefix``, from ``mnemos identities add``)."""
        transport = await NatsTransport.connect(
            url or discovery.find_nats_url(), _credential(credential),
            principal=principal, nkeys_seed=nkeys_seed, inbox_prefix=inbox_prefix)
        return cls(transport, **options)

    async def __aenter__(self) -> AsyncMnemos:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the transport."""
        await self.transport.close()

    def last_seq(self, ns: str | None = None) -> int | None:
        """The stream sequence of this client's latest write in ``ns``."""
        return self._seen.get(ns or self.ns or "")

    async def call(self, name: str, request: msgspec.Struct | None = None, *,
                   ns: str | None = None, timeout_s: float | None = None,
                   **fields: Any) -> Any:
        """Run the operation ``name`` of the catalog (the typed methods all end here)."""
        return await self._invoke(name, request, ns, timeout_s, fields)

    async def _invoke(self, name: str, request: Any, ns: str | None, timeout_s: float | None,
                      fields: dict[str, Any]) -> Any:
        op = OPERATIONS.get(name)
        if op is None:
            raise InvalidInput(f"unknown operation {name!r}", known=sorted(OPERATIONS))
        target = namespace_for(op, ns or self.ns)
        typed = checked(op, ensure_command_id(op, _request_of(op, request, fields)))
        if op.streams and getattr(typed, "progress", False):
            # the SDK answers the final reply only (progress messages are for terminals)
            typed = msgspec.structs.replace(typed, progress=False)
        typed = self._wait_for_own_writes(op, target, typed)
        reply = await self._with_retries(
            lambda: self.transport.call(op, target, typed, timeout_s or self.timeout_s))
        seq = getattr(reply, "seq", None)
        if op.kind == "command" and isinstance(seq, int):
            self._seen[target] = max(seq, self._seen.get(target, 0))
        return reply

    def _wait_for_own_writes(self, op: Operation, ns: str, request: msgspec.Struct
                             ) -> msgspec.Struct:
        seen = self._seen.get(ns)
        if (not self.read_your_writes or seen is None or op.kind != "query"
                or getattr(request, "after_seq", seen) is not None):
            return request
        return msgspec.structs.replace(request, after_seq=seen)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        pause = self.retry.backoff_s
        for tries_left in range(max(1, self.retry.attempts) - 1, -1, -1):
            try:
                return await attempt()
            except Unavailable:
                if tries_left == 0:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")

    def subscribe(self, ns: str, types: Sequence[str] = (), *, durable: str,
                  nats_client: Any = None, on_poison: PoisonHandler | None = None,
                  **options: Any) -> Subscription:
        """A durable subscription to the events of ``ns`` (see :class:`Subscription`); over a
        NATS transport its connection is reused unless ``nats_client`` is given."""
        nc = nats_client
        if nc is None and isinstance(self.transport, NatsTransport):
            nc = self.transport.nc
        if nc is None:
            raise InvalidInput("subscribe needs a NATS connection: build the client with "
                               "AsyncMnemos.nats(...) or pass nats_client=")
        return Subscription(nc, ns, types, durable=durable, on_poison=on_poison, **options)

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        # An operation the generated module does not know yet (added to the catalog since):
        # reachable all the same, without static types (python -m mnemos_sdk.codegen adds them).
        if name.startswith("_") or name not in OPERATIONS:
            raise AttributeError(name)

        async def operation(request: Any = None, /, **fields: Any) -> Any:
            ns, timeout_s = _per_call(name, request, fields)
            return await self._invoke(name, request, ns, timeout_s, fields)

        return operation


class Mnemos(SyncOperations):
    """The blocking client: an :class:`AsyncMnemos` driven on a private event-loop thread.

    Use it as ``with Mnemos.http(ns="team-a") as mnemos: mnemos.remember(content=...)``.
    """

    def __init__(self, factory: Callable[[], Awaitable[AsyncMnemos]]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="mnemos-sdk")
        self._thread.start()
        try:
            self.aio = self._run(factory())
        except BaseException:
            self._stop()
            raise

    @classmethod
    def http(cls, url: str | None = None, **options: Any) -> Mnemos:
        """See :meth:`AsyncMnemos.http`."""
        async def build() -> AsyncMnemos:
            return AsyncMnemos.http(url, **options)
        return cls(build)

    @classmethod
    def nats(cls, url: str | None = None, **options: Any) -> Mnemos:
        """See :meth:`AsyncMnemos.nats`."""
        return cls(lambda: AsyncMnemos.nats(url, **options))

    def _run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro
        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result()

    def __enter__(self) -> Mnemos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the transport and stop the loop thread."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.aio.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def ns(self) -> str | None:
        """The default namespace."""
        return self.aio.ns

    def last_seq(self, ns: str | None = None) -> int | None:
        """See :meth:`AsyncMnemos.last_seq`."""
        return self.aio.last_seq(ns)

    def call(self, name: str, request: msgspec.Struct | None = None, *, ns: str | None = None,
             timeout_s: float | None = None, **fields: Any) -> Any:
        """See :meth:`AsyncMnemos.call`."""
        return self._invoke(name, request, ns, timeout_s, fields)

    def _invoke(self, name: str, request: Any, ns: str | None, timeout_s: float | None,
                fields: dict[str, Any]) -> Any:
        return self._run(self.aio._invoke(name, request, ns, timeout_s, fields))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in OPERATIONS:
            raise AttributeError(name)

        def operation(request: Any = None, /, **fields: Any) -> Any:
            ns, timeout_s = _per_call(name, request, fields)
            return self._invoke(name, request, ns, timeout_s, fields)

        return operation
