"""The pipeline as processes: the embedded broker (unless one is given) and a worker.

``sharing-audit up`` and ``sharing-audit demo`` run it; tests drive it too. The worker is
a child process (``python -m pipeline.cli worker``), so that it can be stopped, or killed, and
started again without touching the broker, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from pipeline.logging import get_logger
from pipeline.transport.broker import EmbeddedBroker
from pipeline.transport.kafka import KafkaConfig, ensure_topics

log = get_logger(__name__)


def worker_command(
    broker: str, database_url: str, policy: str | None = None, schools: str | None = None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "worker",
        "--broker",
        broker,
        "--db",
        database_url,
    ]
    command += ["--policy", policy] if policy else []
    return [*command, "--schools", schools] if schools else command


class Worker:
    """One worker process."""

    def __init__(
        self, command: list[str], log_file: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.log_file = log_file
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        if self.log_file is not None and self._log is None:
            self._log = self.log_file.open("ab")  # one handle for every restart
        output = self._log
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env={**os.environ, **(self.env or {})},
        )
        log.info("worker_started", pid=self.process.pid)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash that the ledger and the offsets must survive."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("worker_killed", pid=process.pid, grace=grace)
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode


class Pipeline:
    """Broker (embedded unless ``broker`` is given), topics and one worker, as a block."""

    def __init__(
        self,
        database_url: str,
        kafka: KafkaConfig | None = None,
        policy: str | None = None,
        worker_log: Path | None = None,
        env: dict[str, str] | None = None,
        schools: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.kafka = kafka
        self.policy = policy
        self.schools = schools
        self.worker_log = worker_log
        self.env = env
        self.embedded: EmbeddedBroker | None = None
        self.worker: Worker | None = None

    @property
    def broker(self) -> str:
        assert self.kafka is not None
        return self.kafka.bootstrap

    def __enter__(self) -> Pipeline:
        try:
            if self.kafka is None:
                self.embedded = EmbeddedBroker()
                self.embedded.start()
                self.kafka = self.embedded.config
            ensure_topics(self.kafka)
            self.worker = Worker(
                worker_command(self.broker, self.database_url, self.policy, self.schools),
                self.worker_log,
                self.env,
            )
            self.worker.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def restart_worker(self) -> None:
        assert self.worker is not None
        self.worker.start()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
