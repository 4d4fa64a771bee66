"""``sharing-audit worker``: the agents, deciding every event on the input topics into
the ledger. The command line sits above the agents: this is where they are started."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pipeline.cli.exits import fail, policy_or_fail, schools_or_fail
from pipeline.cli.options import (
    BrokerOption,
    DbOption,
    PolicyOption,
    SchoolsOption,
    broker_config,
    database_url,
    pseudonym_key_for,
)
from pipeline.cli.status import LogFileOption, Stop, supervise, worker_log
from pipeline.incidents.notify import Smtp, Target, email_target, webhook_target
from pipeline.ledger.log.checkpoints import LogKeyError, log_signer
from pipeline.ledger.log.origin import LogOriginError, log_origin
from pipeline.ledger.log.witnessing import witnesses_from
from pipeline.ledger.storage.store import Ledger, shown_url
from pipeline.logging import configure as configure_logging
from pipeline.logging import get_logger
from pipeline.monitoring import Endpoint, watched_from
from pipeline.policy.schools import Schools
from pipeline.settings import Settings, settings
from pipeline.transport.kafka import KafkaUnavailable
from pipeline.transport.processes import Pipeline

if TYPE_CHECKING:
    from agents.publisher import Checkpointing


def worker(
    broker: BrokerOption = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    schools: SchoolsOption = None,
    log_file: LogFileOption = None,
) -> None:
    """Run the agents: decide every event on the input topics into the ledger.

    On a terminal, or with --log-file, the agents run in a child process whose JSON log
    goes to the file, and a live line says what they have done, with their warnings and
    errors above it; elsewhere (a container) they run here and log to standard output.

    Supervised, Ctrl-C says how many records were accepted but not yet recorded and keeps
    recording them until none is left; a second Ctrl-C stops at once, and the records
    stay on the broker for the next worker.
    """
    console = Console(highlight=False)
    if console.is_terminal or log_file is not None:
        _supervised(broker, db, policy, schools, console, log_file)
        return
    from agents.recorder import Batching
    from agents.worker import WorkerConfig, ready_ledger, run_worker
    from pipeline.ledger.storage.schema import SchemaNotReady

    config = settings()
    log_level = config.log_level or "INFO"
    configure_logging(level=log_level)
    url = database_url(db)
    register = schools_or_fail(schools)
    try:  # the log's origin is read from the ledger: a database still starting is waited for
        ready_ledger(url).engine.dispose()
    except SchemaNotReady as exc:
        fail(f"{shown_url(url)} {exc}")
    worker_config = WorkerConfig(
        kafka=broker_config(broker),
        database_url=url,
        policy=policy_or_fail(policy),
        schools=register,
        pseudonym_key=pseudonym_key_for(db, wait_for_database=True),
        batching=Batching(
            size=config.batch_size,
            patience=config.catch_up_patience,
            alert_hold=config.alert_hold_seconds,
        ),
        log_level=log_level,
        checkpoints=checkpointing(config, url),
        notice_targets=notice_targets(config, register),
        desk_url=config.desk_url,
        metrics=metrics_endpoint(config),
    )
    try:
        run_worker(worker_config)
    except SchemaNotReady as exc:
        fail(f"{shown_url(url)} {exc}")
    except KafkaUnavailable as exc:
        fail(str(exc))


def _supervised(
    broker: str | None,
    db: str | None,
    policy: str | None,
    schools: str | None,
    console: Console,
    log_file: Path | None,
) -> None:
    """The worker as a child process, watched from here (see :mod:`pipeline.cli.status`)."""
    url = database_url(db)
    kafka = broker_config(broker)
    policy_or_fail(policy)  # a mistake in the pack is said here, not in the log file
    schools_or_fail(schools)
    log_key_ready(url)
    log_file, log_from = worker_log(console, log_file)
    stop = Stop()
    try:
        with Pipeline(
            url, kafka, policy or settings().policy, log_file, schools=schools
        ) as pipeline:
            print(f"broker: {pipeline.broker}", flush=True)
            print(f"ledger: {shown_url(url)}", flush=True)
            print(f"worker log: {log_file}; Ctrl-C stops", flush=True)
            supervise(pipeline, Ledger.open(url), console, stop, log_file, log_from)
    except KafkaUnavailable as exc:
        fail(str(exc))


def log_key_ready(url: str) -> None:
    """Make the SQLite ledger's log key now, before its worker starts, so that a sender
    started the moment ``up`` prints the broker finds the key its receipts are checked by
    (``emit`` never makes one). Where there is none to be had, the worker says why."""
    config = settings()
    with contextlib.suppress(LogKeyError, LogOriginError):
        log_signer(config.log_key, log_origin(url, config.log_origin), url)


def checkpointing(config: Settings, url: str) -> Checkpointing | None:
    """How the worker signs checkpoints and sends them to witnesses (beside its writer,
    never holding a batch), or None, said in the log, when the log has no key (a server
    database without SHARING_AUDIT_LOG_KEY): the worker still records."""
    from agents.publisher import Checkpointing

    try:
        witnesses = tuple(witnesses_from(config.witnesses))
    except ValueError as exc:
        fail(f"SHARING_AUDIT_WITNESSES: {exc}")
    try:
        signer = log_signer(config.log_key, log_origin(url, config.log_origin), url)
    except LogOriginError as exc:
        fail(str(exc))
    except LogKeyError as exc:
        get_logger(__name__).warning("checkpoints_not_signed", reason=str(exc))
        return None
    return Checkpointing(
        signer,
        config.checkpoint_seconds,
        config.checkpoint_dir,
        witnesses,
        config.witness_deadline_seconds,
        config.merge_delay,
    )


def metrics_endpoint(config: Settings) -> Endpoint | None:
    """Where the worker serves Prometheus metrics (SHARING_AUDIT_METRICS_PORT), if set."""
    if config.metrics_port is None:
        return None
    return Endpoint(config.metrics_host, config.metrics_port, watched_from(config))


def notice_targets(config: Settings, schools: Schools | None = None) -> tuple[Target, ...]:
    """Where new high-severity incidents are sent, from the settings (the trust's targets,
    every incident) and the register (each school's own, its incidents alone)."""
    own = schools.notices if schools is not None else {}
    hooks: list[tuple[str, str | None]] = [(url, None) for url in config.webhook_urls]
    hooks += [(url, urn) for urn, (urls, _) in own.items() for url in urls]
    emails: list[tuple[str, str | None]] = [(to, None) for to in config.notify_email_to]
    emails += [(to, urn) for urn, (_, addresses) in own.items() for to in addresses]
    if hooks and not config.webhook_secret:
        fail("set SHARING_AUDIT_WEBHOOK_SECRET: webhook notices are signed with it")
    secret = (config.webhook_secret or "").encode()
    targets = [webhook_target(url, secret, school=urn) for url, urn in hooks]
    if emails:
        if not config.smtp_host:
            fail("set SHARING_AUDIT_SMTP_HOST to send incident notices by email")
        if config.smtp_username and config.smtp_tls == "none":
            fail("SHARING_AUDIT_SMTP_TLS=none sends no password: set starttls or ssl")
        smtp = Smtp(
            config.smtp_host,
            config.smtp_port,
            config.smtp_from,
            config.smtp_tls,
            config.smtp_username,
            config.smtp_password,
            config.smtp_ca_file,
        )
        targets += [email_target(to, smtp, school=urn) for to, urn in emails]
    return tuple(targets)
