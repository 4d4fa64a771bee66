"""Kafka: the topics, and every client setting, in one place.

The embedded broker (Tansu) and Apache Kafka take the same settings: nothing here depends
on Tansu-only behaviour. What Tansu taught us is in the comments: its group joins take
about half the session timeout, so sessions are kept short; its idempotent producer and
transactions fail, so delivery is at-least-once into an idempotent ledger; it would
auto-create a topic with 4 partitions whatever we want, so every topic is created
explicitly before anything produces.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from schemas.events import DEFAULT_TOPIC, LIFECYCLE_TYPES

INPUT_TOPICS: tuple[str, ...] = tuple(dict.fromkeys(DEFAULT_TOPIC.values()))
#: The topic of the lifecycle facts (consents, leavings, destructions) sharing depends on.
FACTS_TOPIC = DEFAULT_TOPIC[LIFECYCLE_TYPES[0]]
ALERTS_TOPIC = "sharing.alerts"
DEADLETTER_TOPIC = "sharing.deadletter"
#: The log's signed receipts, one per record it handled (contract, Clarifications 2026-12-06).
RECEIPTS_TOPIC = "sharing.receipts"
ALL_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, ALERTS_TOPIC, DEADLETTER_TOPIC, RECEIPTS_TOPIC)
#: The workers' consumer group (Faust's app id).
WORKER_GROUP = "sharing-audit"
DEFAULT_PARTITIONS = 4

SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 1_000
REBALANCE_TIMEOUT_MS = 5_000
REQUEST_TIMEOUT_MS = 10_000
#: How long a consumer (the worker's, a sender's reader of receipts) lets the broker hold
#: a fetch waiting for records. The embedded broker (Tansu) answers a fetch only when this
#: runs out, even when records came sooner, so it is a floor on the time from send to
#: ledger and from ledger to receipt: at Faust's fixed 1,500 ms an event waited 750 ms on
#: average before the worker even took it; at kafka-python's 500 ms a send waited 260 ms
#: for its receipt, at 20 ms 18 ms. Kafka answers as soon as records come; there, a short
#: wait only costs an idle consumer more (empty) fetches.
FETCH_WAIT_MS = 20


class KafkaUnavailable(Exception):
    """The broker did not answer, or refused what was asked of it."""


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the broker is and how to reach it (TLS and SASL for production Kafka)."""

    bootstrap: str
    partitions: int = DEFAULT_PARTITIONS
    replication: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    def security(self) -> dict[str, Any]:
        """kafka-python's connection settings (they are also aiokafka's names)."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            out["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = self.sasl_password
        return out

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ssl_cafile)


def producer_settings(config: KafkaConfig) -> dict[str, Any]:
    """kafka-python producer: every send acknowledged by all replicas, batched."""
    return {
        "bootstrap_servers": config.bootstrap,
        "acks": "all",
        # kafka-python 3 makes a producer idempotent by default; a broker started again
        # (the embedded one after it died) refuses its producer id, and the producer then
        # fails every send for good, so nothing lost could be sent again. The ledger
        # records an event id once: at-least-once delivery is what it needs.
        "enable_idempotence": False,
        "linger_ms": 20,
        "batch_size": 262_144,
        "retries": 5,
        "request_timeout_ms": REQUEST_TIMEOUT_MS * 3,
        "max_request_size": 8 * 1024 * 1024,
        **config.security(),
    }


def consumer_settings(config: KafkaConfig, group: str | None = None) -> dict[str, Any]:
    """kafka-python consumer (tools and tests; the worker is Faust)."""
    return {
        "bootstrap_servers": config.bootstrap,
        "group_id": group,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": group is not None,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        "request_timeout_ms": REQUEST_TIMEOUT_MS * 3,
        **config.security(),
    }


def faust_settings(config: KafkaConfig) -> dict[str, Any]:
    """Faust's App settings for this broker (its TLS/SASL credentials: ``agents.app``)."""
    out: dict[str, Any] = {
        "broker": f"kafka://{config.bootstrap}",
        "broker_session_timeout": SESSION_TIMEOUT_MS / 1000,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_MS / 1000,
        "broker_rebalance_timeout": REBALANCE_TIMEOUT_MS / 1000,
        "broker_request_timeout": REQUEST_TIMEOUT_MS / 1000,
        "broker_max_poll_records": 500,
        "topic_partitions": config.partitions,
        "topic_replication_factor": config.replication,
    }
    return out


def _admin(config: KafkaConfig, timeout_ms: int = REQUEST_TIMEOUT_MS) -> Any:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=config.bootstrap,
            request_timeout_ms=timeout_ms,
            client_id="sharing-audit-admin",
            **config.security(),
        )
    except KafkaError as exc:
        raise KafkaUnavailable(f"no Kafka broker answers at {config.bootstrap}: {exc}") from None


def ensure_topics(config: KafkaConfig, topics: Iterable[str] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    admin = _admin(config)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(
                    [NewTopic(t, config.partitions, config.replication) for t in missing]
                )
        return missing
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot create topics on {config.bootstrap}: {exc}") from None
    finally:
        admin.close()


def wait_for_broker(config: KafkaConfig, timeout: float = 30.0) -> None:
    """Return once the broker answers a metadata request; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            admin = _admin(config, timeout_ms=2_000)
        except KafkaUnavailable as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        try:
            admin.list_topics()
            return
        except Exception as exc:  # any failure here means "not yet"
            last = str(exc)
            time.sleep(0.1)
        finally:
            admin.close()
    raise KafkaUnavailable(last or f"no Kafka broker answers at {config.bootstrap}")


class Lag:
    """How far the workers' consumer group is behind the input topics: a client held open
    between looks, so that a status line can ask every second."""

    def __init__(self, config: KafkaConfig, group: str = WORKER_GROUP) -> None:
        self.config = config
        self.group = group
        self._admin: Any = None
        self._consumer: Any = None

    def records(self) -> int | None:
        """Records on the input topics the group has not yet committed (None if the broker
        cannot say now)."""
        try:
            behind = self.behind()
        except Exception:  # no answer now: the next look tries again
            self.close()
            return None
        return sum(end - start for start, end in behind.values())

    def behind(self, wait: float = 2.0) -> dict[Any, tuple[int, int]]:
        """Each input partition the group has not recorded to its end: (first offset not
        recorded, true end offset, as :func:`true_ends` reads it within ``wait`` seconds).
        Raises whatever the clients raise when the broker does not answer."""
        from kafka import TopicPartition

        self._open()
        committed = _committed(self._admin, self.group)
        partitions = [
            TopicPartition(topic, p)
            for topic in INPUT_TOPICS
            for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        firsts = self._consumer.beginning_offsets(partitions)
        ends = true_ends(self._consumer, self._consumer.end_offsets(partitions), wait)
        behind = {}
        for tp, end in ends.items():
            done = committed[tp].offset if tp in committed else None
            start = max(done if done is not None and done >= 0 else 0, firsts.get(tp) or 0)
            if end > start:
                behind[tp] = (start, end)
        return behind

    def _open(self) -> None:
        from kafka import KafkaConsumer

        if self._admin is None:
            self._admin = _admin(self.config, timeout_ms=2_000)
            self._consumer = KafkaConsumer(
                **consumer_settings(self.config), max_poll_records=10_000
            )

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None


def true_ends(consumer: Any, reported: dict[Any, int], timeout: float = 2.0) -> dict[Any, int]:
    """Each partition's end offset, read past the one the broker reports: the embedded
    broker reports its last batch's first offset + 1, so a batch of 43 records counts as 1
    (a lag of 12 for 43 unrecorded). Reading from the reported end's last record to the
    true end costs a fetch per partition; on Apache Kafka it finds nothing more."""
    ends = dict(reported)
    behind = [tp for tp, end in reported.items() if end > 0]
    if not behind:
        return ends
    consumer.assign(behind)
    for tp in behind:
        consumer.seek(tp, reported[tp] - 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fetched = consumer.poll(timeout_ms=200, max_records=10_000)
        for tp, records in fetched.items():
            ends[tp] = max(ends[tp], records[-1].offset + 1)
        if not fetched and all(consumer.position(tp) >= ends[tp] for tp in behind):
            break
    return ends


def _committed(admin: Any, group: str) -> dict[Any, Any]:
    """The group's committed offsets by partition (kafka-python 3, else 2's call)."""
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets({group: None}).get(group, {}))
    return dict(admin.list_consumer_group_offsets(group))


def read_topic(
    config: KafkaConfig,
    topic: str,
    expected: int,
    timeout: float = 30.0,
    identity: Callable[[Any], Any] | None = None,
) -> list[Any]:
    """Every record on ``topic`` from the start, until ``expected`` have come (counted by
    ``identity`` when records may repeat: delivery is at-least-once) or ``timeout`` passes.
    Reads without a consumer group, so it commits nothing."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_settings(config))
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list[Any] = []
    seen: set[Any] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                records.append(record)
                seen.add(identity(record) if identity else len(records))
    consumer.close()
    return records
