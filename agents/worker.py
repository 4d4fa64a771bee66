"""Running the worker: wait for the ledger, create the topics, start the agents.

A worker started before its database waits for it, with backoff, rather than failing:
in a deployment the two often start together.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agents.app import create_app
from agents.publisher import Checkpointing
from agents.recorder import Batching
from agents.sink import LedgerSink
from agents.writer import WriterSpec
from pipeline.backoff import backoff_delays
from pipeline.incidents.notify import Target, notify_new_incidents
from pipeline.ledger.privacy.retention import raise_retention_due
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.errors import LedgerUnavailable
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.writing.adoption import PacksInForce
from pipeline.logging import get_logger
from pipeline.monitoring import Endpoint, WorkerFlow, serve_worker_metrics
from pipeline.policy.pack import Policy
from pipeline.policy.schools import Schools, policy_of
from pipeline.pseudonym import pseudonymiser
from pipeline.retention.forgetting import Applied, Daily
from pipeline.shown import Naming
from pipeline.transport.kafka import KafkaConfig, Lag, ensure_topics, wait_for_broker

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    kafka: KafkaConfig
    database_url: str
    policy: Policy
    pseudonym_key: bytes
    batching: Batching = field(default_factory=Batching)
    notice_targets: tuple[Target, ...] = ()
    desk_url: str = ""
    log_level: str = "INFO"
    checkpoints: Checkpointing | None = None
    schools: Schools | None = None
    metrics: Endpoint | None = None  # where Prometheus metrics are served, if anywhere


def ready_ledger(url: str, first_delay: float = 0.5, cap: float = 30.0) -> Ledger:
    """The ledger at ``url`` with its schema in place, once the database answers."""
    delays = backoff_delays(first_delay, cap)
    ledger = Ledger.open(url)
    while True:
        try:
            schema.prepare(ledger.engine)
            return ledger
        except LedgerUnavailable as exc:
            delay = next(delays)
            log.warning(
                "database_unavailable",
                retry_in=round(delay, 2),
                error=type(exc.__cause__ or exc).__name__,
            )
            time.sleep(delay)


def settle_heap() -> None:
    """Leave what is built by now out of the collector's passes. The modules, Faust's app
    and the agents live as long as the worker: some 160,000 objects, which every full pass
    would traverse again, and the records in flight while a backlog drains bring a full
    pass every few seconds (draining 100,000 records here: 1.3 s of the worker's CPU in
    full passes, 0.4 s with this). Call it last thing before the worker runs."""
    gc.freeze()


def side_work(
    config: WorkerConfig,
) -> tuple[Callable[[], int] | None, Callable[[], int], Callable[[], Applied | None]]:
    """The worker's rounds beside the writer: notices of new incidents (when any target is
    set), retention falling due, and the ledger's own retention; each by the packs in
    force, the configured ones as the ledger's adoptions (policy adopt) have replaced them,
    as the writer decides."""
    keeping = Ledger.open(config.database_url)
    following = PacksInForce(config.policy, config.schools)

    def in_force() -> tuple[Policy, Schools | None]:
        """Looks for adoptions since the last look: once a round, never once a pupil."""
        with keeping.engine.connect() as connection:
            return following.current(connection)

    def policy_for(urn: str) -> Policy:
        return policy_of(following.schools, urn, following.policy)

    notifier = None
    if config.notice_targets:
        notices = Ledger.open(config.database_url)

        def notifier() -> int:
            naming = Naming(*in_force())
            return notify_new_incidents(notices, config.notice_targets, config.desk_url, naming)

    def retention() -> int:
        policy, schools = in_force()
        packs = [policy, *(schools.policies.values() if schools else ())]
        return len(raise_retention_due(keeping, policy_for, packs))

    daily = Daily(Ledger.open(config.database_url), policy_for, pseudonymiser(config.pseudonym_key))

    def forgetting() -> Applied | None:
        in_force()  # by the packs adopted since the last round
        return daily()

    return notifier, retention, forgetting


def run_worker(config: WorkerConfig) -> None:
    """Run the agents until SIGINT or SIGTERM (blocks)."""
    import faust

    ledger = ready_ledger(config.database_url)
    wait_for_broker(config.kafka, timeout=60)
    created = ensure_topics(config.kafka)
    if created:
        log.info("topics_created", topics=created, partitions=config.kafka.partitions)
    ledger.engine.dispose()
    spec = WriterSpec(
        config.database_url,
        config.policy,
        config.pseudonym_key,
        config.log_level,
        config.checkpoints,
        config.schools,
    )
    flow = WorkerFlow()
    sink = LedgerSink(spec, flow=flow)
    if config.metrics is not None:
        serve_worker_metrics(flow, config.metrics, Ledger.open(config.database_url), config.kafka)
        log.info("metrics_served", host=config.metrics.host, port=config.metrics.port)
    notifier, retention, forgetting = side_work(config)

    # Faust's folder for tables on disk (there are none): a temporary one, gone at exit.
    datadir = Path(tempfile.mkdtemp(prefix="sharing-audit-worker-"))
    app = create_app(
        config.kafka,
        sink,
        config.batching,
        notifier,
        datadir,
        retention,
        flow,
        ledger_retention=forgetting,
    )
    log.info(
        "worker_starting",
        broker=config.kafka.bootstrap,
        policy=config.policy.name,
        policy_version=config.policy.version[:12],
        schools=len(config.schools.names) if config.schools else None,
    )
    worker = faust.Worker(app, loglevel=config.log_level, quiet=True, override_logging=False)
    settle_heap()
    try:
        worker.execute_from_commandline()
    finally:
        sink.close()
        shutil.rmtree(datadir, ignore_errors=True)
        say_unrecorded(config.kafka)


def say_unrecorded(kafka: KafkaConfig) -> None:
    """Log, as the worker stops, how many records the group has accepted and not recorded:
    on Apache Kafka they wait for the next worker; on the embedded broker, stopped with
    it, they are lost, and their senders (holding no receipt) send them again."""
    lag = Lag(kafka)
    try:
        unrecorded = lag.records()
    finally:
        lag.close()
    if unrecorded:
        log.warning("worker_stopped_with_records_unrecorded", unrecorded=unrecorded)
