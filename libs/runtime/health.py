"""Health, readiness and Prometheus metrics of a service process without an HTTP face of its own
(projector, auditor, compressor, registry_sync): ``/healthz``, ``/readyz`` and ``/metrics`` on
its metrics port (``MNEMOS_METRICS_PORT``). The gateway serves the same three on its HTTP port.

- ``/healthz``: 200 while the process serves requests at all (liveness).
- ``/readyz``: 200 when every component that reported in is ``active`` (leading, or pulling a
  shared consumer) or ``standby`` (connected, waiting for the leader's lock); 503 with each
  component's state otherwise: nothing reported yet (still waiting for Postgres or NATS at
  start, or every consumer has stopped), ``retrying`` (a lost connection, backing off) or
  ``halted``.

Components are the consumer runtimes of the process (:mod:`libs.consumer.runtime` reports
``consumer:<name>``). The server is a daemon thread, like ``prometheus_client``'s own.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal

import prometheus_client

__all__ = ["READY_STATES", "State", "forget_state", "readiness", "report_state", "serve_health"]

State = Literal["starting", "active", "standby", "retrying", "halted"]

READY_STATES: Final = frozenset({"active", "standby"})
"""States in which a component counts as ready."""

_states: dict[str, State] = {}
_lock = threading.Lock()


def report_state(component: str, state: State) -> None:
    """Record ``component``'s current state (read by ``/readyz``)."""
    with _lock:
        _states[component] = state


def forget_state(component: str) -> None:
    """``component`` stopped: it no longer counts, either way."""
    with _lock:
        _states.pop(component, None)


def readiness() -> tuple[bool, dict[str, State]]:
    """Whether the process is ready, and the state of each component."""
    with _lock:
        states = dict(_states)
    return bool(states) and all(s in READY_STATES for s in states.values()), states


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, prometheus_client.generate_latest(),
                       prometheus_client.CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b'{"status":"ok"}', "application/json")
        elif path == "/readyz":
            ready, states = readiness()
            body = json.dumps({"ready": ready, "components": states}).encode()
            self._send(200 if ready else 503, body, "application/json")
        else:
            self._send(404, b'{"error":"not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None  # scrapes every few seconds would drown the service's own logs


def serve_health(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` in a daemon thread."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mnemos-health", daemon=True).start()
    return server
