"""The streaming commands: ``broker``, ``emit``, ``up``, and what they share.

Registered on the main command line by ``pipeline.cli``; the worker itself is in
``pipeline.cli.worker``.
"""

from __future__ import annotations

import sys
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.checking import numbered_lines
from pipeline.cli.emitting import (
    EXIT_INTERRUPTED,
    Interrupted,
    Line,
    failures_of,
    interrupted,
    kept_for,
    lines_of,
    send_for_receipts,
    summary,
)
from pipeline.cli.exits import fail, open_events, schools_or_fail
from pipeline.cli.options import (
    BrokerOption,
    DbOption,
    PolicyOption,
    SchoolsOption,
    VkeyOption,
    broker_config,
    database_url,
    log_verifier_or_fail,
)
from pipeline.cli.runnable import command_line
from pipeline.cli.status import LogFileOption, Stop, supervise, worker_log
from pipeline.cli.worker import log_key_ready
from pipeline.ledger.storage.store import Ledger, shown_url
from pipeline.settings import settings
from pipeline.transparency.note import Verifier
from pipeline.transport.broker import BrokerError, EmbeddedBroker
from pipeline.transport.kafka import KafkaConfig, KafkaUnavailable, ensure_topics
from pipeline.transport.mis import DeliveryError, MisProducer, NotRoutable
from pipeline.transport.processes import Pipeline
from pipeline.transport.receipts import RESEND_AFTER, KeptReceipt


def broker(
    port: Annotated[int | None, typer.Option(help="Port (default: a free one).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker alone, with the topics, until Ctrl-C."""
    stop = Stop()
    try:
        with EmbeddedBroker(port) as embedded:
            ensure_topics(settings().kafka(embedded.address))
            print(f"broker: {embedded.address}", flush=True)
            print("memory only: stopping it loses every topic; Ctrl-C stops it", flush=True)
            while not stop.wait(1.0):
                pass
    except (BrokerError, KafkaUnavailable) as exc:
        fail(str(exc))


class Wait(StrEnum):
    recorded = "recorded"
    acked = "acked"


def emit(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of events, or - for standard input.")
    ],
    broker: BrokerOption = None,
    topic: Annotated[
        str | None,
        typer.Option(help="Send every line to this topic as is (default: route by type)."),
    ] = None,
    wait: Annotated[
        Wait,
        typer.Option(
            help="recorded: until the log's signed receipt of each line has come; acked: "
            "until the broker took each (it promises no more: the embedded broker keeps "
            "records in memory)."
        ),
    ] = Wait.recorded,
    timeout: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds to wait for the receipts after the broker took the last line."
        ),
    ] = 120.0,
    receipts: Annotated[
        Path | None,
        typer.Option(
            help="Keep the receipts in this JSON Lines file, one per line of the input, as "
            "they come; run again with the same file to send only the lines holding none."
        ),
    ] = None,
    resend_after: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="When no receipt has come for this many seconds, send again (within "
            "--timeout) the lines still without one: a broker that died and was started "
            "again lost them. Safe: a line sent again is recorded once (a duplicate's "
            "receipt), and one receipt per line is kept.",
        ),
    ] = RESEND_AFTER,
    vkey: VkeyOption = None,
    db: DbOption = None,
) -> None:
    """Send events to Kafka, each to its topic with the contract's key, and wait until the
    log has signed a receipt for each (a broker's acknowledgement promises nothing).

    Exits 1 naming every line without a receipt (not sent, not acknowledged, or no receipt
    within --timeout); sending a line again is safe, its event is recorded once.
    """
    config = broker_config(broker)
    if wait is Wait.acked:
        if receipts is not None:
            fail("--receipts keeps the log's receipts, which --wait acked does not wait for")
        _emit_acked(file, config, topic)
        return
    log = log_verifier_or_fail(vkey, db, "sends the records without receipts")
    lines, kept = _lines_and_kept(file, receipts, log)
    todo = [line for line in lines if line.number not in kept]
    err = Console(stderr=True)
    if not todo:
        err.print(f"every line holds a receipt already ({len(kept)})", highlight=False)
        return
    try:
        delivery = send_for_receipts(config, todo, topic, log, timeout, receipts, err, resend_after)
    except (DeliveryError, KafkaUnavailable) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot keep the receipts in {receipts}: {exc.strerror or exc}")
    except Interrupted as stopped:
        fail(interrupted(stopped.held + len(kept), receipts), EXIT_INTERRUPTED)
    for message in summary(delivery, len(kept), config.bootstrap):
        err.print(message, highlight=False, soft_wrap=True)
    failures = failures_of(todo, delivery, timeout)
    for message in failures:
        print(f"sharing-audit: {message}", file=sys.stderr)
    if failures:
        raise typer.Exit(1)


def _lines_and_kept(
    file: str, receipts: Path | None, log: Verifier
) -> tuple[list[Line], dict[int, KeptReceipt]]:
    """The input's lines, and the receipts already kept for them; or a clear exit."""
    stream, _ = open_events(file)
    try:
        with stream:
            lines = lines_of(stream)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    try:
        return lines, kept_for(lines, receipts, log)
    except OSError as exc:
        fail(f"cannot read the receipts kept in {receipts}: {exc.strerror or exc}")


def _emit_acked(file: str, config: KafkaConfig, topic: str | None) -> None:
    """``emit --wait acked``: each line sent, and the broker's acknowledgement waited for."""
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
    err.print(f"delivered {delivered} events to {config.bootstrap}{where} (acknowledged only)")
    if failures:
        for message in failures:
            print(f"sharing-audit: {message}", file=sys.stderr)
        raise typer.Exit(1)


def up(
    broker: BrokerOption = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    log_file: LogFileOption = None,
) -> None:
    """Run the whole pipeline: the broker (embedded unless --broker), topics and a worker.

    On a terminal, one live line says what the pipeline has done, with the worker's
    warnings and errors above it, and its JSON log goes to a file; elsewhere (a container)
    the log goes to standard output.

    Ctrl-C says how many records were accepted but not yet recorded and keeps the worker
    recording them (waiting, and saying so, while the ledger is unavailable); everything
    stops once none is left. A second Ctrl-C stops at once: the records not yet recorded
    are lost from the embedded broker (memory only), and their senders, holding no
    receipt for them, send them again when run again. If the embedded broker dies, up says
    how many records it held, starts it again with its topics (on the same port if it
    can) and restarts the worker.
    """
    url = database_url(db)
    schools_or_fail(schools)  # a mistake in the register is said here, not in the log file
    log_key_ready(url)
    kafka = settings().kafka(broker) if (broker or settings().broker) else None
    console = Console(highlight=False)
    log_file, log_from = worker_log(console, log_file)
    stop = Stop()
    try:
        with Pipeline(
            url, kafka, policy or settings().policy, log_file, schools=schools
        ) as pipeline:
            print(f"broker: {pipeline.broker}", flush=True)
            print(f"ledger: {shown_url(url)}", flush=True)
            if log_file is not None:
                print(f"worker log: {log_file}", flush=True)
            send = command_line("emit", "FILE", "--broker", pipeline.broker)
            print(f"send events with: {send}; Ctrl-C stops", flush=True)
            supervise(pipeline, Ledger.open(url), console, stop, log_file, log_from)
    except (BrokerError, KafkaUnavailable) as exc:
        fail(str(exc))
