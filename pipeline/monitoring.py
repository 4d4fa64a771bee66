"""The figures an operator watches, as Prometheus metrics: the worker's flow of records
(counted as they pass) and the ledger's state (read when scraped).

An operator already knows how to watch a Prometheus endpoint, alert on it and graph it
(``deploy/prometheus/``, ``deploy/grafana/``): these are the figures behind ``ledger stats``
and the desk's live line, in that form. Nothing here names a pupil, an event or a school:
counts, sizes and ages only, so the endpoint may be scraped by monitoring that is not
trusted with personal data.

The ledger's figures are read on each scrape, each with a query bounded by the entries
since the latest checkpoint (never a count of the whole ledger); the broker's are looked
up at most every :data:`BROKER_FRESH_SECONDS`, since each look opens a connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select

from pipeline.ledger.log.checkpoints import CHECKPOINT, COSIGNATURE
from pipeline.ledger.log.merging import unmerged
from pipeline.ledger.log.witnessing import witness_lag, witnesses_from
from pipeline.ledger.storage.store import Ledger, from_utc_text
from pipeline.ledger.writing.outbox import PENDING, alert_counts
from pipeline.settings import Settings
from pipeline.transport.backlog import Awaiting, awaiting_receipts
from pipeline.transport.kafka import KafkaConfig

PREFIX = "sharing_audit"
#: How long one look at the broker serves scrapes.
BROKER_FRESH_SECONDS = 15.0
#: Batch sizes, in records: one record (live) to a full group of the writer.
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000)
#: Seconds, from a quick write to one that waited on a busy database.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerFlow:
    """What passes through one worker, counted as it passes: records taken from each
    topic and recorded, decisions by kind, receipts sent, the writer's groups (their size
    and time), and the records taken and not yet acked. Each worker has its own
    registry, so that tests may build many."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            f"{PREFIX}_records_consumed",
            "Records taken from an input topic.",
            ["topic"],
            registry=r,
        )
        self.recorded = Counter(
            f"{PREFIX}_records_recorded",
            "Records recorded in the ledger, receipted and acked.",
            ["topic"],
            registry=r,
        )
        self.decisions = Counter(
            f"{PREFIX}_decisions",
            "Outcomes recorded: kind (decision, reevaluation, duplicate, ...) and decision.",
            ["kind", "decision"],
            registry=r,
        )
        self.receipts = Counter(
            f"{PREFIX}_receipts_sent", "Signed receipts sent to sharing.receipts.", registry=r
        )
        self.group_records = Histogram(
            f"{PREFIX}_write_group_records",
            "Records in each transaction of the ledger writer (a group of batches).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.group_seconds = Histogram(
            f"{PREFIX}_write_group_seconds",
            "Seconds each transaction of the ledger writer took, waits for the database included.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_records_in_flight",
            "Records taken by the agents and not yet acked (recorded and receipted).",
            registry=r,
        )


@dataclass(frozen=True, slots=True)
class Watched:
    """What the ledger's figures are judged against: the witnesses' names, the quorum
    served, the checkpoint interval and the maximum merge delay the log promises."""

    witnesses: Sequence[str] = ()
    quorum: int = 0
    checkpoint_seconds: float = 10.0
    merge_delay_seconds: float = 30.0


def watched_from(config: Settings) -> Watched:
    """What the settings promise, for the figures to be judged against (ValueError
    naming a witness whose key is not one)."""
    return Watched(
        tuple(w.verifier.name for w in witnesses_from(config.witnesses)),
        config.witness_quorum,
        config.checkpoint_seconds,
        config.merge_delay,
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a worker serves its metrics, and what its ledger's figures are judged by."""

    host: str
    port: int
    watched: Watched


def serve_worker_metrics(
    flow: WorkerFlow, endpoint: Endpoint, ledger: Ledger, kafka: KafkaConfig
) -> None:
    """Serve the worker's flow and its ledger's figures over HTTP (``/metrics``), on a
    thread of the worker's main process, for as long as it runs."""
    from prometheus_client import start_http_server

    flow.registry.register(LedgerFigures(ledger, endpoint.watched, kafka))
    start_http_server(endpoint.port, endpoint.host, registry=flow.registry)


class LedgerFigures(Collector):
    """The ledger's state and (given a broker) the input topics' lag, read when scraped."""

    def __init__(
        self,
        ledger: Ledger,
        watched: Watched,
        kafka: KafkaConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.watched = watched
        self.kafka = kafka
        self.clock = clock
        self._looking = threading.Lock()
        self._broker: tuple[float, Awaiting | None] | None = None

    def describe(self) -> list[Metric]:
        return []  # read when scraped: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from self._ledger(now)
        if self.kafka is not None:
            yield from self._lag(now)

    def _ledger(self, now: float) -> Iterator[Metric]:
        with self.ledger.engine.connect() as connection:
            head = Ledger.head(connection)[0]
            signed = connection.execute(
                select(CHECKPOINT.c.size, CHECKPOINT.c.signed_at)
                .order_by(CHECKPOINT.c.size.desc())
                .limit(1)
            ).first()
            outside = unmerged(connection)
            alerts = alert_counts(connection)
            names = list(self.watched.witnesses)
            lag = witness_lag(connection, names) if names else None
            refusing = _refusing(connection, names)
        yield _gauge("ledger_entries", "Entries in the ledger (the chain head's seq).", head)
        size = int(signed.size) if signed is not None else 0
        yield _gauge("checkpoint_size", "Entries in the latest checkpoint the log signed.", size)
        yield _gauge(
            "checkpoint_lag_entries",
            "Entries recorded since the latest signed checkpoint.",
            max(head - size, 0),
        )
        if signed is not None:
            yield _gauge(
                "checkpoint_signed_timestamp_seconds",
                "When the latest checkpoint was signed (Unix time).",
                from_utc_text(signed.signed_at).timestamp(),
            )
        yield _gauge(
            "unmerged_receipted_entries",
            "Entries given a receipt that no signed checkpoint includes yet.",
            outside.entries,
        )
        age = 0.0 if outside.oldest is None else max(now - outside.oldest.timestamp(), 0.0)
        yield _gauge(
            "unmerged_oldest_age_seconds",
            "Age of the oldest receipted entry outside every checkpoint (0: none).",
            age,
        )
        yield _gauge(
            "max_merge_delay_seconds",
            "The maximum merge delay the log promises (SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS).",
            self.watched.merge_delay_seconds,
        )
        yield _gauge(
            "checkpoint_interval_seconds",
            "How often the worker signs a checkpoint (SHARING_AUDIT_CHECKPOINT_SECONDS).",
            self.watched.checkpoint_seconds,
        )
        if lag is not None:
            yield _gauge(
                "witness_lag_entries",
                "Entries of the latest checkpoint the slowest witness has not cosigned.",
                lag,
            )
        if names:
            yield _gauge(
                "witnesses_refusing",
                "Witnesses whose latest answer was a refusal rather than a cosignature.",
                refusing,
            )
        pending = GaugeMetricFamily(
            f"{PREFIX}_alerts", "Alerts in the outbox, by how their relay went.", labels=["status"]
        )
        for status in sorted({PENDING, *alerts}):
            pending.add_metric([status], alerts.get(status, 0))
        yield pending

    def _lag(self, now: float) -> Iterator[Metric]:
        assert self.kafka is not None
        with self._looking:
            if self._broker is None or now - self._broker[0] >= BROKER_FRESH_SECONDS:
                self._broker = (now, awaiting_receipts(self.kafka))
            seen = self._broker[1]
        yield _gauge(
            "broker_up",
            "Whether the broker answered the last look (1) or not (0).",
            int(seen is not None),
        )
        if seen is None:
            return
        yield _gauge(
            "consumer_lag_records",
            "Records on the input topics the workers have not recorded: each awaits its receipt.",
            seen.records,
        )
        yield _gauge(
            "awaiting_receipt_oldest_age_seconds",
            "Age of the oldest record awaiting a receipt (0: none, or no timestamp).",
            seen.oldest_age or 0.0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _refusing(connection: Connection, names: Sequence[str]) -> int:
    """How many of the witnesses ``names`` refused the latest checkpoint they answered."""
    if not names:
        return 0
    latest_answer = (
        select(COSIGNATURE.c.witness, func.max(COSIGNATURE.c.size).label("size"))
        .where(COSIGNATURE.c.witness.in_(list(names)))
        .group_by(COSIGNATURE.c.witness)
        .subquery()
    )
    found = connection.execute(
        select(func.count())
        .select_from(COSIGNATURE)
        .join(
            latest_answer,
            (latest_answer.c.witness == COSIGNATURE.c.witness)
            & (latest_answer.c.size == COSIGNATURE.c.size),
        )
        .where(COSIGNATURE.c.refusal.is_not(None))
    ).scalar()
    return int(found or 0)
