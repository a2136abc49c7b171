"""A server run as a child process, stopped as a whole: the leader and every helper it forked.

The child is started with ``start_new_session=True``, so it leads a process group. Helpers of
some servers leave that group: PostgreSQL's children call ``setsid()`` (the checkpointer,
walwriter and backends each lead their own session), so when only the postmaster is killed they
live on as orphans, holding the data directory, its lock and shared memory. Each server
therefore says which processes are *its members* (:meth:`ChildServer.members`): the process
group by default, plus whatever the subclass can recognise (PostgreSQL: processes whose working
directory is the data directory).

Stopping sends the server's own graceful signal, escalates through ``escalation`` when the
deadline passes, then SIGKILLs every member still alive, and returns only once none is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

__all__ = ["ChildServer", "group_members", "processes_where"]

_GRACE_S = 5.0
"""How long each escalation signal, and orphans left by a dead leader, get before SIGKILL."""

def processes_where(predicate: Callable[[int, Path], bool]) -> set[int]:
    """Pids of live (non-zombie) processes for which ``predicate(pid, /proc/<pid>)`` holds."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and predicate(pid, entry):
                found.add(pid)
        except (OSError, IndexError):
            continue  # exited while we looked, or not ours to inspect
    return found


def group_members(pgid: int) -> set[int]:
    """Pids of the live processes in process group ``pgid``."""
    def in_group(_pid: int, proc: Path) -> bool:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid

    return processes_where(in_group)


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class ChildServer:
    """Base of the embedded servers.

    ``stop_signal`` is the server's own fast-shutdown signal; ``escalation`` the signals sent
    to the leader, in order, when it does not exit in time (SIGKILL of every member comes
    last); ``stop_timeout_s`` the default deadline of :meth:`stop`.
    """

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    escalation: ClassVar[tuple[signal.Signals, ...]] = ()
    stop_timeout_s: float = 20.0

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def members(self) -> set[int]:
        """Live processes of this server besides a reaped leader (default: its group)."""
        return group_members(self.process.pid) if self.process is not None else set()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):  # exited between check and signal
            self.process.send_signal(sig)

    def stop(self, timeout_s: float | None = None) -> None:
        """Ask the server to shut down; escalate; SIGKILL what remains; wait for all of it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self._signal(self.stop_signal)
            try:
                process.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self._escalate(process)
        self._reap_members()
        self._after_stop()

    def _escalate(self, process: subprocess.Popen[bytes]) -> None:
        for sig in self.escalation:
            self._signal(sig)
            try:
                process.wait(_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                continue
        _kill_all(self.members() | {process.pid})
        process.wait()

    def _reap_members(self, grace_s: float = _GRACE_S) -> None:
        """Wait for members the leader left (orphans exit when they notice), then SIGKILL."""
        deadline = time.monotonic() + grace_s
        while members := self.members():
            if time.monotonic() > deadline:
                _kill_all(members)
                if time.monotonic() > deadline + 10:
                    raise TimeoutError(f"processes {sorted(members)} survive SIGKILL")
            time.sleep(0.02)

    def _after_stop(self) -> None:
        """Hook: remove what a stopped server may leave (stale locks, sockets)."""

    def kill(self) -> None:
        """SIGKILL the leader and every member (fault tests: a crashed server or machine)."""
        process = self.process
        if process is not None and process.poll() is None:
            _kill_all(self.members() | {process.pid})
            process.wait()
            self._reap_members(grace_s=0)
