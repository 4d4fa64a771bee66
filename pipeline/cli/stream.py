"""The streaming commands: ``broker``, ``emit``, ``up``, and what they share.

Registered on the main command line by ``pipeline.cli``; the worker itself is in
``pipeline.cli.worker``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from pipeline.checking import numbered_lines
from pipeline.cli.exits import fail, open_events
from pipeline.cli.options import (
    BrokerOption,
    DbOption,
    PolicyOption,
    broker_config,
    database_url,
)
from pipeline.cli.status import Watch
from pipeline.ledger.store import Ledger, shown_url
from pipeline.settings import settings
from pipeline.transport.broker import BrokerError, EmbeddedBroker
from pipeline.transport.kafka import KafkaUnavailable, Lag, ensure_topics
from pipeline.transport.mis import DeliveryError, MisProducer, NotRoutable
from pipeline.transport.processes import Pipeline

#: The worker's log on a terminal, in the working folder, unless --log-file says where.
DEFAULT_LOG_FILE = "sharing-audit-worker.log"


class _Stop:
    """Turns SIGINT, SIGTERM and SIGHUP (the terminal closed) into a flag, so that
    shutdown runs in order and no broker or worker outlives the command."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: Any) -> None:
        self.event.set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def broker(
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker alone, with the topics, until Ctrl-C."""
    stop = _Stop()
    try:
        with EmbeddedBroker(port) as embedded:
            ensure_topics(settings().kafka(embedded.address))
            print(f"broker: {embedded.address}", flush=True)
            print("memory only: stopping it loses every topic; Ctrl-C stops it", flush=True)
            while not stop.wait(1.0):
                pass
    except (BrokerError, KafkaUnavailable) as exc:
        fail(str(exc))


def emit(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of events, or - for standard input.")
    ],
    broker: BrokerOption = None,
    topic: Annotated[
        str | None,
        typer.Option(help="Send every line to this topic as is (default: route by type)."),
    ] = None,
) -> None:
    """Send events to Kafka, each to its topic with the contract's key, and wait for acks.

    Exits 1 naming every line that was not delivered.
    """
    config = broker_config(broker)
    err = Console(stderr=True)
    stream, _ = open_events(file)
    failures: list[str] = []
    sent: list[tuple[int, str, Any]] = []
    try:
        with stream, MisProducer(config) as producer:
            for number, line in numbered_lines(stream):
                try:
                    future = producer.send_record(line.strip(), topic)
                except NotRoutable as exc:
                    failures.append(f"line {number}: not sent: {exc}")
                    continue
                sent.append((number, topic or "", future))
            producer.flush()
            per_topic: Counter[str] = Counter()
            for number, _, future in sent:
                try:
                    metadata = future.get(timeout=30)
                except Exception as exc:
                    failures.append(f"line {number}: not delivered: {type(exc).__name__}")
                    continue
                per_topic[metadata.topic] += 1
    except DeliveryError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    delivered = sum(per_topic.values())
    detail = ", ".join(f"{t}: {n}" for t, n in sorted(per_topic.items()))
    where = f" ({detail})" if detail else ""
    err.print(f"delivered {delivered} events to {config.bootstrap}{where}")
    if failures:
        for message in failures:
            print(f"sharing-audit: {message}", file=sys.stderr)
        raise typer.Exit(1)


LogFileOption = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        help="Where the worker's JSON log goes (on a terminal, default "
        f"./{DEFAULT_LOG_FILE}; else standard output).",
    ),
]


def up(
    broker: BrokerOption = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    log_file: LogFileOption = None,
) -> None:
    """Run the whole pipeline: the broker (embedded unless --broker), topics and a worker.

    On a terminal, one live line says what the pipeline has done, with the worker's
    warnings and errors above it, and its JSON log goes to a file; elsewhere (a container)
    the log goes to standard output. Ctrl-C stops everything, the worker first.
    """
    url = database_url(db)
    kafka = settings().kafka(broker) if (broker or settings().broker) else None
    console = Console(highlight=False)
    if console.is_terminal and log_file is None:
        log_file = Path(DEFAULT_LOG_FILE)
    log_from = log_file.stat().st_size if log_file is not None and log_file.exists() else 0
    stop = _Stop()
    try:
        with Pipeline(url, kafka, policy or settings().policy, worker_log=log_file) as pipeline:
            print(f"broker: {pipeline.broker}", flush=True)
            print(f"ledger: {shown_url(url)}", flush=True)
            if log_file is not None:
                print(f"worker log: {log_file}", flush=True)
            print(
                "send events with: sharing-audit emit FILE --broker "
                f"{pipeline.broker}; Ctrl-C stops",
                flush=True,
            )
            if console.is_terminal and log_file is not None:
                assert pipeline.kafka is not None
                watch = Watch(Ledger.open(url), log_file, Lag(pipeline.kafka), log_from)
                try:
                    _watch_live(pipeline, watch, stop, console)
                finally:
                    watch.close()
            else:
                _watch_quietly(pipeline, stop)
    except (BrokerError, KafkaUnavailable) as exc:
        fail(str(exc))


def _watch_quietly(pipeline: Pipeline, stop: _Stop) -> None:
    """Until Ctrl-C; a clear exit if the worker stops on its own."""
    while not stop.wait(0.5):
        _fail_if_stopped(pipeline)


def _watch_live(pipeline: Pipeline, watch: Watch, stop: _Stop, console: Console) -> None:
    """As :func:`_watch_quietly`, with the status line and the worker's warnings."""
    with Live(watch.line(), console=console, refresh_per_second=2, transient=False) as live:
        while not stop.wait(1.0):
            for text in watch.new_lines():
                live.console.print(text)
            live.update(watch.line())
            _fail_if_stopped(pipeline)


def _fail_if_stopped(pipeline: Pipeline) -> None:
    worker = pipeline.worker
    assert worker is not None and worker.process is not None
    if not worker.running:
        fail(f"the worker stopped with status {worker.process.returncode}", 1)
