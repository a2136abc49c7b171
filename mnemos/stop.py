"""``mnemos stop``: end the ``mnemos up`` running on this home, as Ctrl-C in its terminal would.

The running instance is the holder of ``MNEMOS_HOME/up.lock``; its pid is in ``runtime.json``.
The lock is checked first, so a stale runtime file (a crashed ``up``) never makes this signal a
process that merely reuses the pid.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import typer

from libs.runtime.config import load_config
from libs.runtime.instance import LOCK_FILE, RUNTIME_FILE, read_runtime

__all__ = ["stop_command"]


def _held(home: Path) -> bool:
    """Whether some process holds the instance lock of ``home``."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return False


def stop_command(timeout_s: float = typer.Option(120.0, "--timeout", help="Seconds to wait "
                                                 "for every process to stop.")) -> None:
    """Stop the `mnemos up` running on this MNEMOS_HOME (SIGTERM, then wait until it is down)."""
    home = load_config().home.expanduser()
    running = read_runtime(home)
    if running is None or not _held(home):
        sys.stderr.write(f"Mnemos is not running on {home}\n")
        raise typer.Exit(1)
    os.kill(running.pid, signal.SIGTERM)
    sys.stderr.write(f"stopping Mnemos (pid {running.pid}) on {home} …\n")
    deadline = time.monotonic() + timeout_s
    while _held(home):
        if time.monotonic() > deadline:
            sys.stderr.write(f"still running after {timeout_s:.0f}s (pid {running.pid})\n")
            raise typer.Exit(2)
        time.sleep(0.1)
    (home / RUNTIME_FILE).unlink(missing_ok=True)
    sys.stdout.write(f"stopped (pid {running.pid})\n")
