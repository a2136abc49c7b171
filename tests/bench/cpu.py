"""CPU time per part of a benchmark's system over a window: where the cores went.

Each service process (with its children), nats-server, and the PostgreSQL backends grouped by
the ``application_name`` of their client (services started by the harness set ``PGAPPNAME``;
the projector names its own connections), the rest of PostgreSQL (WAL writer, checkpointer,
autovacuum...) and the benchmark process itself. Read from ``/proc/<pid>/stat`` at the two
ends of the window; a backend that exited inside the window is not counted (the services keep
their connections open).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from tests.bench.harness import BenchSystem

__all__ = ["CpuWindow", "cpu_window"]

_APP = re.compile(r"^mnemos-(?P<name>[a-z_]+?)(?:-\d+)?$")


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name (empty once the process is gone)."""
    with (contextlib.suppress(OSError),
          open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat):
        return stat.read().rpartition(")")[2].split()
    return []


def _cpu(pid: int) -> float:
    """User + system CPU seconds of all the process's threads."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0


def _tree(pid: int) -> Iterator[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            parents.setdefault(int(fields[1]), []).append(int(entry))
    todo = [pid]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(parents.get(current, []))


def _backend_labels(system: BenchSystem) -> dict[int, str]:
    with psycopg.connect(system.postgres.url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid, application_name FROM pg_stat_activity"
                            " WHERE backend_type = 'client backend'", prepare=False).fetchall()
    out: dict[int, str] = {}
    for pid, app in rows:
        match = _APP.match(str(app or ""))
        out[int(str(pid))] = f"postgres <- {match['name'] if match else 'bench'}"
    return out


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK


def _snapshot(system: BenchSystem) -> dict[int, tuple[str, float]]:
    labelled: dict[int, str] = {os.getpid(): "bench (load generator)"}
    for name, process in system.services.items():
        for pid in _tree(process.pid):
            labelled[pid] = name
    if system.nats.process is not None:
        labelled[system.nats.process.pid] = "nats-server"
    backends = _backend_labels(system)
    for pid in system.postgres.members():
        labelled[pid] = backends.get(pid, "postgres (background)")
    return {pid: (label, _cpu(pid)) for pid, label in labelled.items()}


@dataclass
class CpuWindow:
    """CPU seconds by part between :meth:`start` and :meth:`stop`."""

    system: BenchSystem
    _before: dict[int, tuple[str, float]] | None = None
    _busy_before: float = 0.0
    seconds: dict[str, float] | None = None
    machine_busy: float = 0.0
    """CPU seconds the whole machine was busy in the window (other work on it included)."""

    def start(self) -> None:
        """Mark the window's beginning."""
        self._busy_before = _machine_busy()
        self._before = _snapshot(self.system)

    def stop(self) -> dict[str, float]:
        """CPU seconds spent by each part since :meth:`start`, largest first."""
        assert self._before is not None
        totals: dict[str, float] = {}
        for pid, (label, cpu) in _snapshot(self.system).items():
            before = self._before.get(pid)
            totals[label] = totals.get(label, 0.0) + cpu - (before[1] if before else 0.0)
        self.machine_busy = _machine_busy() - self._busy_before
        self.seconds = dict(sorted(totals.items(), key=lambda kv: -kv[1]))
        return self.seconds

    def lines(self, wall_s: float, items: int) -> Iterable[tuple[str, str]]:
        """Report lines: cores used over ``wall_s`` and CPU ms per item, by part."""
        assert self.seconds is not None
        total = sum(self.seconds.values())
        rows = [*self.seconds.items(), ("total", total),
                ("outside this system (other work on the machine)",
                 max(0.0, self.machine_busy - total))]
        for label, seconds in rows:
            yield (f"  cpu {label}",
                   f"{seconds:6.1f} s  {seconds / wall_s:4.2f} cores  "
                   f"{seconds * 1000 / max(1, items):5.1f} ms/memory")


def cpu_window(system: BenchSystem) -> CpuWindow:
    """A window over ``system``'s processes (call ``start()`` then ``stop()``)."""
    return CpuWindow(system)
