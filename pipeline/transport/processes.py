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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from pipeline.logging import get_logger
from pipeline.transport.broker import EmbeddedBroker
from pipeline.transport.kafka import KafkaConfig, Lag, ensure_topics

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


def say(message: str) -> None:
    """Tell the person running the pipeline (standard error: standard output may be a log)."""
    print(f"sharing-audit: {message}", file=sys.stderr, flush=True)


def killed_message(grace: float, unrecorded: int | None) -> str:
    """What a worker killed after its grace left behind, plainly."""
    left = (
        f"{unrecorded:,} records accepted but not recorded"
        if unrecorded is not None
        else "an unknown number of records (the broker did not answer) accepted but not recorded"
    )
    return (
        f"worker killed after {grace:g} s: {left}; their senders hold no receipt for them "
        "and send them again when run again"
    )


class Worker:
    """One worker process, in a session of its own: Ctrl-C at the terminal reaches the
    command that supervises it, which decides when the worker stops (after the records
    it has accepted are recorded), not the worker itself."""

    def __init__(
        self,
        command: list[str],
        log_file: Path | None = None,
        env: dict[str, str] | None = None,
        lag: Callable[[], int | None] | None = None,
    ) -> None:
        self.command = command
        self.log_file = log_file
        self.env = env
        self.lag = lag  # records accepted but not recorded: said if the worker is killed
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
            start_new_session=True,
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
        """SIGTERM, then SIGKILL after ``grace`` seconds, saying how many records were left
        unrecorded; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                unrecorded = self.lag() if self.lag is not None else None
                log.warning("worker_killed", pid=process.pid, grace=grace, unrecorded=unrecorded)
                say(killed_message(grace, unrecorded))
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
        self._lag: Lag | None = None

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
                lag=self.unrecorded,
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

    def unrecorded(self) -> int | None:
        """Records on the input topics the workers have not recorded yet (None when the
        broker cannot say now): what stopping now would leave behind."""
        if self.kafka is None:
            return None
        if self._lag is None:
            self._lag = Lag(self.kafka)
        return self._lag.records()

    @property
    def broker_died(self) -> bool:
        """Whether the embedded broker has exited under us (and every record it held with it)."""
        return self.embedded is not None and self.embedded.died

    def restart_broker(self) -> str:
        """The embedded broker started again after it died, on its old port if that is free
        (emitters reconnect), with the topics, and a worker against it: the old worker's
        clients hang on a broker that lost every offset. The broker's address."""
        assert self.embedded is not None and self.worker is not None
        self.worker.kill()
        if self._lag is not None:
            self._lag.close()
            self._lag = None
        address = self.embedded.restart()
        self.kafka = self.embedded.config
        ensure_topics(self.kafka)
        self.worker.command = worker_command(address, self.database_url, self.policy, self.schools)
        self.worker.start()
        return address

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self._lag is not None:
            self._lag.close()
            self._lag = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
