"""A server run as a child process: graceful stop with a deadline, or a hard kill."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["ChildServer"]


class ChildServer:
    """Base of the embedded servers; ``stop_signal`` is the server's own fast-shutdown signal."""

    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask the server to shut down, then SIGKILL it if it does not exit in time."""
        if self.process is None or not self.running:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server (fault tests: a crashed broker or database)."""
        if self.process is not None and self.running:
            self.process.kill()
            self.process.wait()
