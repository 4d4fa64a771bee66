"""Records awaiting a receipt, as the operator sees them: what the broker accepted on the
input topics that no worker has recorded, and how long the oldest has waited
(``ledger stats --broker``, the live line's figure)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.transport.backlog import Awaiting, awaiting_receipts
from pipeline.transport.kafka import (
    FACTS_TOPIC,
    WORKER_GROUP,
    KafkaConfig,
    consumer_settings,
    ensure_topics,
    producer_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()
TEN_MINUTES_MS = 600_000


def produced_with_no_worker(
    config: KafkaConfig, stamps_ms: list[int], key: bytes | None = None
) -> None:
    """Records on an input topic, each with the broker timestamp given (all on one
    partition when ``key`` is given), and no worker."""
    from kafka import KafkaProducer

    ensure_topics(config)
    producer = KafkaProducer(**producer_settings(config))
    for n, stamp in enumerate(stamps_ms):
        producer.send(FACTS_TOPIC, b'{"n": %d}' % n, key=key or b"k%d" % n, timestamp_ms=stamp)
    producer.flush(30)
    producer.close()


def a_ledger(tmp_path: Path) -> str:
    """An empty ledger's URL."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    return url


def a_port_nobody_answers() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_records_no_worker_recorded_are_counted_with_the_oldest_ones_age(
    kafka: KafkaConfig,
) -> None:
    now_ms = int(time.time() * 1000)
    produced_with_no_worker(kafka, [now_ms - TEN_MINUTES_MS, now_ms, now_ms, now_ms])
    seen = awaiting_receipts(kafka, now=now_ms / 1000)
    assert seen is not None and seen.records == 4
    assert seen.oldest_age is not None and 599 <= seen.oldest_age <= 601


def test_what_the_workers_committed_awaits_nothing_and_the_oldest_is_the_first_not_committed(
    kafka: KafkaConfig,
) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 2 * TEN_MINUTES_MS, now_ms - TEN_MINUTES_MS, now_ms]
    produced_with_no_worker(kafka, stamps, key=b"one partition")
    workers = KafkaConsumer(**consumer_settings(kafka, WORKER_GROUP))
    (partition,) = [
        TopicPartition(FACTS_TOPIC, p)
        for p in workers.partitions_for_topic(FACTS_TOPIC) or ()
        if workers.end_offsets([TopicPartition(FACTS_TOPIC, p)])[TopicPartition(FACTS_TOPIC, p)]
    ]
    workers.commit({partition: OffsetAndMetadata(1, "", -1)})
    workers.close()
    seen = awaiting_receipts(kafka, now=now_ms / 1000)
    assert seen is not None and seen.records == 2
    assert seen.oldest_age is not None and 599 <= seen.oldest_age <= 601


def test_nothing_sent_is_nothing_awaiting(kafka: KafkaConfig) -> None:
    ensure_topics(kafka)
    assert awaiting_receipts(kafka) == Awaiting(0, None)


def test_ledger_stats_shows_the_records_awaiting_a_receipt_and_the_oldest_ones_age(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    url = a_ledger(tmp_path)
    now_ms = int(time.time() * 1000)
    produced_with_no_worker(kafka, [now_ms - TEN_MINUTES_MS, now_ms, now_ms])
    shown = runner.invoke(app, ["ledger", "stats", "--db", url, "--broker", kafka.bootstrap])
    assert shown.exit_code == 0, shown.output
    assert "3 records await a receipt, the oldest for 10 min" in shown.output


def test_ledger_stats_says_plainly_when_no_broker_answers(tmp_path: Path) -> None:
    url = a_ledger(tmp_path)
    nowhere = f"127.0.0.1:{a_port_nobody_answers()}"
    shown = runner.invoke(app, ["ledger", "stats", "--db", url, "--broker", nowhere])
    assert shown.exit_code == 0, shown.output
    assert f"no broker answers at {nowhere}" in shown.output
    assert "entries:" in shown.output and "Traceback" not in shown.output


def test_ledger_stats_without_a_broker_says_it_cannot_tell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHARING_AUDIT_BROKER", raising=False)
    url = a_ledger(tmp_path)
    shown = runner.invoke(app, ["ledger", "stats", "--db", url])
    assert shown.exit_code == 0, shown.output
    assert "records awaiting a receipt: cannot tell without a broker" in shown.output


def test_ledger_stats_shows_a_broker_named_with_markup_and_escapes_as_it_was_given(
    tmp_path: Path,
) -> None:
    url = a_ledger(tmp_path)
    shown = runner.invoke(app, ["ledger", "stats", "--db", url, "--broker", "[bold]\x1b[2Jx:9"])
    assert shown.exit_code == 0, shown.output
    assert "no broker answers at [bold]" in shown.output and "\x1b" not in shown.output
