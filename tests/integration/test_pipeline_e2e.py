"""The whole pipeline, end to end: broker, worker, ledger, alerts and dead letters.

Events go in through two real clients, kcat (C, librdkafka) and ``sharing-audit emit``
(kafka-python); the ledger must then hold every event exactly once with the decision
``check`` gives for the same records.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.checking import expected_of
from pipeline.engine import Engine
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.storage.store import Ledger
from pipeline.policy.pack import Policy
from pipeline.simulate import simulate
from pipeline.transport.kafka import (
    ALERTS_TOPIC,
    DEADLETTER_TOPIC,
    KafkaConfig,
    ensure_topics,
    read_topic,
)
from pipeline.transport.mis import route
from pipeline.transport.processes import Pipeline
from tests.integration.streaming import (
    kcat_env,
    kcat_produce,
    ledger_count,
    ledger_final,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_ALERTS = {"SHARING_AUDIT_ALERT_HOLD_SECONDS": "1"}
UNDECODABLE = [
    b"this is not JSON",
    b'{"specversion": "1.0", "id": "half-an-event"',
    b"\xff\xfe not UTF-8 \xc3\x28",
]


def _sharing_audit(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, timeout=120
    )


def _emit(events_file: Path, kafka: KafkaConfig, url: str) -> subprocess.CompletedProcess[bytes]:
    """``emit`` as a school runs it: until the log has signed a receipt for every line,
    checked with the log's verifier key as its operator hands it out."""
    vkey = events_file.parent / "log.vkey"
    vkey.write_bytes(_sharing_audit("log", "vkey", "--db", url).stdout)
    return _sharing_audit(
        "emit", str(events_file), "--broker", kafka.bootstrap, "--vkey", str(vkey)
    )


@pytest.fixture
def year() -> list[bytes]:
    return [orjson.dumps(line.event) for line in simulate(150, violation_rate=0.1, seed=7)]


def test_every_event_sent_by_kcat_and_emit_is_recorded_once_as_check_decides(
    kafka: KafkaConfig, tmp_path: Path, policy: Policy, year: list[bytes]
) -> None:
    ensure_topics(kafka)
    env = kcat_env(kafka, tmp_path)
    if env is None:
        pytest.skip("kcat (Debian package kcat) is not installed or cannot reach the broker")
    url = f"sqlite:///{tmp_path}/ledger.db"
    half = len(year) // 2
    by_kcat, by_emit = year[:half], year[half:]
    events_file = tmp_path / "emit.jsonl"
    events_file.write_bytes(b"".join(raw + b"\n" for raw in by_emit))

    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=FAST_ALERTS):
        per_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for raw in by_kcat:
            where = route(orjson.loads(raw))
            per_topic.setdefault(where.topic, []).append((where.key, raw))
        per_topic["sharing.referral"] += [(None, raw) for raw in UNDECODABLE]
        for topic, records in per_topic.items():
            kcat_produce(env, kafka, topic, records)
        emitted = _emit(events_file, kafka, url)
        assert emitted.returncode == 0, emitted.stderr.decode()

        expected = expected_of([*year, *UNDECODABLE], Engine(policy))
        entries, final = expected.entries, expected.final
        assert wait_until(lambda: ledger_count(url) >= entries, timeout=90), (
            f"{ledger_count(url)} of {entries} decision entries; worker log: "
            + (tmp_path / "worker.log").read_text()[-3000:]
        )
        recorded = ledger_final(url)
        assert ledger_count(url) == entries
        assert recorded == final

        ledger = Ledger.open(url)
        with ledger.engine.connect() as connection:
            result = verify(connection)
            alerting = _current_alerting_entries(connection)
        assert result.ok, result.fault
        breached = {k for k, (decision, _) in final.items() if decision == "breach"}
        assert breached

        alerts = read_topic(kafka, ALERTS_TOPIC, expected=len(alerting), timeout=60)
        bodies = [orjson.loads(a.value) for a in alerts]
        assert {b["seq"] for b in bodies} == set(alerting)
        assert breached <= {b["event_id"] for b in bodies if b["decision"] == "breach"}
        assert all(a.key == str(orjson.loads(a.value)["seq"]).encode() for a in alerts)

        dead = read_topic(kafka, DEADLETTER_TOPIC, expected=len(expected.invalid), timeout=30)
        assert set(UNDECODABLE) <= set(expected.invalid)
        assert sorted(d.value for d in dead) == sorted(expected.invalid)
        assert all(dict(d.headers)["reason"] for d in dead)


def test_an_alert_names_pupils_by_pseudonym_only(
    kafka: KafkaConfig, tmp_path: Path, year: list[bytes]
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    events_file = tmp_path / "year.jsonl"
    events_file.write_bytes(b"".join(raw + b"\n" for raw in year))
    upns = {p["upn"] for raw in year for p in _pupils(raw)}
    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=FAST_ALERTS):
        assert _emit(events_file, kafka, url).returncode == 0
        alerts = read_topic(kafka, ALERTS_TOPIC, expected=1, timeout=60)
    assert alerts
    text = b"".join(a.value for a in alerts).decode()
    assert not any(upn in text for upn in upns)
    log = (tmp_path / "worker.log").read_text()
    assert not any(upn in log for upn in upns)


def _current_alerting_entries(connection: Any) -> dict[int, str]:
    """Breach and review entries that are still their event's current decision."""
    rows = connection.exec_driver_sql(
        "SELECT seq, kind, refers_to, decision FROM ledger_entry ORDER BY seq"
    ).all()
    current: dict[int, tuple[int, str]] = {}
    for seq, kind, refers_to, decision in rows:
        base = refers_to if kind == "reevaluation" else seq
        current[base] = (seq, decision)
    return {seq: d for seq, d in current.values() if d in ("breach", "review")}


def _pupils(raw: bytes) -> list[dict[str, str]]:
    data = orjson.loads(raw).get("data", {})
    if "pupils" in data:
        return list(data["pupils"])
    return [{"upn": data["upn"]}] if "upn" in data else []


def test_the_worker_sends_signed_notices_of_high_severity_incidents(
    kafka: KafkaConfig, tmp_path: Path, year: list[bytes]
) -> None:
    from pipeline.incidents.notify import signature
    from tests.integration.test_incident_webhooks import Receiver

    receiver = Receiver([503])
    env = {
        **FAST_ALERTS,
        "SHARING_AUDIT_WEBHOOK_URLS": orjson.dumps([receiver.url]).decode(),
        "SHARING_AUDIT_WEBHOOK_SECRET": "s3cret",
        "SHARING_AUDIT_DESK_URL": "https://desk.example",
    }
    url = f"sqlite:///{tmp_path}/ledger.db"
    events_file = tmp_path / "year.jsonl"
    events_file.write_bytes(b"".join(raw + b"\n" for raw in year))
    try:
        with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=env):
            sent = _emit(events_file, kafka, url)
            assert sent.returncode == 0
            assert wait_until(lambda: len(receiver.requests) >= 2, timeout=60), (
                tmp_path / "worker.log"
            ).read_text()[-2000:]
    finally:
        receiver.close()
    headers, body = receiver.requests[-1]
    timestamp = headers["X-Sharing-Audit-Timestamp"]
    assert headers["X-Sharing-Audit-Signature"] == signature(b"s3cret", timestamp, body)
    assert orjson.loads(body)["link"].startswith("https://desk.example/incidents/")


def test_the_worker_signs_a_checkpoint_of_what_it_recorded_and_writes_it_to_a_folder(
    kafka: KafkaConfig, tmp_path: Path, policy: Policy, year: list[bytes]
) -> None:
    ensure_topics(kafka)
    url = f"sqlite:///{tmp_path}/ledger.db"
    folder = tmp_path / "published"
    env = {
        "SHARING_AUDIT_CHECKPOINT_SECONDS": "0.5",
        "SHARING_AUDIT_CHECKPOINT_DIR": str(folder),
    }
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(raw + b"\n" for raw in year))
    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=env):
        assert _emit(events_file, kafka, url).returncode == 0
        entries = expected_of(year, Engine(policy)).entries
        assert wait_until(lambda: ledger_count(url) >= entries, timeout=90)
        with Ledger.open(url).engine.connect() as connection:
            head = int(connection.exec_driver_sql("SELECT seq FROM chain_head").scalar_one())

        def signed_to_head() -> bool:
            published = folder / "checkpoint"
            return (
                published.exists() and published.read_bytes().split(b"\n")[1] == str(head).encode()
            )

        assert wait_until(signed_to_head, timeout=30), (tmp_path / "worker.log").read_text()[-2000:]
    vkey = _sharing_audit("log", "vkey", "--db", url)
    (tmp_path / "vkey").write_bytes(vkey.stdout)
    accepted = _sharing_audit(
        "audit",
        "verify",
        str(folder / "checkpoint"),
        "--vkey",
        str(tmp_path / "vkey"),
        "--state",
        str(tmp_path / "auditor"),
    )
    assert accepted.returncode == 0, accepted.stderr.decode()
    verified = _sharing_audit("ledger", "verify", "--db", url)
    assert verified.returncode == 0, verified.stderr.decode()


def test_every_record_sent_gets_one_receipt_signed_by_the_log_naming_its_entry(
    kafka: KafkaConfig, tmp_path: Path, year: list[bytes]
) -> None:
    from pipeline.ledger.storage.tree import leaf_bytes
    from pipeline.transparency.delivery import open_receipt
    from pipeline.transparency.merkle import leaf_hash
    from pipeline.transparency.note import Verifier
    from pipeline.transport.kafka import RECEIPTS_TOPIC
    from pipeline.transport.mis import MisProducer

    ensure_topics(kafka)
    url = f"sqlite:///{tmp_path}/ledger.db"
    sent = year[:120]
    with Pipeline(url, kafka, worker_log=tmp_path / "worker.log"), MisProducer(kafka) as producer:
        futures = [producer.send_record(raw) for raw in sent]
        futures += [producer.send_record(raw, "sharing.referral") for raw in UNDECODABLE]
        futures.append(producer.send_record(sent[0]))  # sent again: a duplicate's receipt
        producer.flush()
        where = [f.get(timeout=30) for f in futures]
        positions = {positions_of(m) for m in where}
        records = read_topic(
            kafka,
            RECEIPTS_TOPIC,
            expected=len(positions),
            timeout=90,
            identity=lambda r: r.value.split(b"\n")[3],
        )
    vkey = _sharing_audit("log", "vkey", "--db", url).stdout.decode().strip()
    receipts = [open_receipt(r.value, Verifier.parse(vkey)) for r in records]
    by_record = {r.record: r for r in receipts}
    assert set(by_record) == positions
    assert by_record[positions_of(where[-1])].decision == "duplicate"
    assert by_record[positions_of(where[-1])].seq == by_record[positions_of(where[0])].seq
    assert [by_record[positions_of(m)].event_id for m in where[120:123]] == [None] * 3
    for record, receipt in zip(records, receipts, strict=True):
        assert record.key == (receipt.event_id or receipt.record).encode()
    with Ledger.open(url).engine.connect() as connection:
        for receipt in by_record.values():
            assert leaf_hash(leaf_bytes(connection, receipt.seq) or b"") == receipt.leaf


def positions_of(metadata: Any) -> str:
    return f"{metadata.topic}/{metadata.partition}/{metadata.offset}"
