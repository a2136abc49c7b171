"""A small real HTTP/1.1 server on 127.0.0.1 that answers by route with recorded responses.

Routes are ``(method, path)`` plus an optional query subset, so pages of one endpoint
(``?after_id=...``, ``?pageToken=...``) get their own answers. A route holds a sequence of
responses: each request takes the next, the last one repeats (so "429 then 200" is two
entries). A response can be delayed (a slow provider, a timeout), can be any bytes (a malformed
body), or can drop the connection without answering; a route can be removed while the server
runs (an endpoint that disappears), and the whole server can be stopped (a provider that
vanishes). Every request is recorded for assertions.

It runs in a thread with its own sockets, so the code under test talks real HTTP to it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Recorded", "RecordedRequest", "ReplayServer", "load_recorded"]

JSON_HEADERS: Final = (("content-type", "application/json"),)
"""Headers of a recorded response that names none."""


@dataclass(frozen=True)
class Recorded:
    """One recorded response; ``drop`` closes the connection instead of answering."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    delay_s: float = 0.0
    drop: bool = False

    @classmethod
    def json(cls, value: Any, status: int = 200,
             headers: Mapping[str, str] | None = None, delay_s: float = 0.0) -> Recorded:
        """A JSON response with ``content-type: application/json`` plus ``headers``."""
        merged = {"content-type": "application/json"} | dict(headers or {})
        return cls(status=status, body=json.dumps(value).encode(),
                   headers=tuple(merged.items()), delay_s=delay_s)

    def slowed(self, delay_s: float) -> Recorded:
        """The same response, sent after ``delay_s`` seconds."""
        return Recorded(self.status, self.body, self.headers, delay_s, self.drop)


def load_recorded(path: Path, delay_s: float = 0.0) -> Recorded:
    """Load a fixture file ``{"status", "headers", "body" | "body_text"}``."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    body = (raw["body_text"].encode() if "body_text" in raw
            else json.dumps(raw["body"]).encode())
    headers = tuple((k.lower(), str(v)) for k, v in raw.get("headers", {}).items())
    return Recorded(status=int(raw.get("status", 200)), body=body,
                    headers=headers or JSON_HEADERS, delay_s=delay_s)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Route:
    query: dict[str, str]
    responses: list[Recorded]
    served: int = 0

    def next(self) -> Recorded:
        response = self.responses[min(self.served, len(self.responses) - 1)]
        self.served += 1
        return response


@dataclass
class _State:
    routes: dict[tuple[str, str], list[_Route]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def pick(self, method: str, path: str, query: dict[str, str]) -> Recorded | None:
        with self.lock:
            candidates = [r for r in self.routes.get((method, path), [])
                          if all(query.get(k) == v for k, v in r.query.items())]
            if not candidates:
                return None
            return max(candidates, key=lambda r: len(r.query)).next()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request stderr lines."""

    def _handle(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        with state.lock:
            state.requests.append(RecordedRequest(
                self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()},
                body))
        response = state.pick(self.command, parts.path, query) or Recorded.json(
            {"error": {"message": f"no route for {self.command} {parts.path}"}}, status=404)
        if response.delay_s and state.stopping.wait(response.delay_s):
            self.close_connection = True
            return
        if response.drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers:
            if name not in {"content-length", "transfer-encoding", "content-encoding"}:
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = _handle
    do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Remember each connection, so stopping can cut kept-alive ones too."""
        conn, address = super().get_request()
        with self.sockets_lock:
            self.open_sockets.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection the handler finished with."""
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Reset every open connection (a vanished host does not finish keep-alives)."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
            self.open_sockets.clear()
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up on a slow answer is expected here, not an error to print."""


class ReplayServer:
    """Serves recorded responses on ``127.0.0.1:<free port>``; use as a context manager."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    def start(self) -> ReplayServer:
        """Bind (the same port again after a :meth:`stop`) and serve in a thread."""
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.state = self._state
        self._state.stopping.clear()
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="replay-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and release the port: the provider vanishes."""
        if self._server is None:
            return
        self._state.stopping.set()
        self._server.shutdown()
        self._server.cut_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self._port}"

    def add(self, method: str, path: str, *responses: Recorded,
            query: Mapping[str, str] | None = None) -> None:
        """Answer ``method path`` (and ``query``, a subset to match) with ``responses`` in turn."""
        if not responses:
            raise ValueError("a route needs at least one response")
        with self._state.lock:
            routes = self._state.routes.setdefault((method.upper(), path), [])
            wanted = dict(query or {})
            routes[:] = [r for r in routes if r.query != wanted]
            routes.append(_Route(wanted, list(responses)))

    def remove(self, method: str, path: str) -> None:
        """Forget every route of ``method path``: from now on it answers 404."""
        with self._state.lock:
            self._state.routes.pop((method.upper(), path), None)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._state.lock:
            return list(self._state.requests)
