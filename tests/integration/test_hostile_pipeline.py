"""The worst records anyone can put on a topic, through the broker to a running worker
with alerts unheld, webhooks and email configured: nothing stalls, nothing is lost.

On the same partitions, in order: a record nested 300 deep, an event whose recipient
holds CR/LF, a census whose alert would once have exceeded a megabyte, then ordinary
events and one more high-severity breach. Every ordinary event is recorded, the poison
is recorded as rejected, the last breach's alert reaches ``sharing.alerts``, and its
incident's webhook POST and email arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.transport.kafka import ALERTS_TOPIC, KafkaConfig, read_topic
from pipeline.transport.mis import MisProducer
from pipeline.transport.processes import Pipeline
from schemas.alerts import MAX_ALERT_BYTES
from schemas.events import MAX_REF_LENGTH
from tests.factory import census, line, referral, upn
from tests.integration.streaming import ledger_count, ledger_final, wait_until
from tests.integration.test_incident_webhooks import SECRET, Mailbox, Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Real local authorities, so that the census's 9,000 UPNs are all valid.
LAS = (850, 851, 852, 855, 856, 857, 860, 861, 865)


def big_census() -> dict[str, Any]:
    """9,000 pupils relying on a consent nobody gave: one reason per pupil, 1.7 MB of
    them, which the alert now summarises."""
    pupils = [{"upn": upn(n, la=la)} for la in LAS for n in range(1_000)]
    return census(
        pupils=pupils,
        lawful_basis="consent",
        consent_ref="C" * MAX_REF_LENGTH,
        time="2026-01-15T10:00:00Z",
    )


def high_breach(day: str) -> dict[str, Any]:
    """Medical notes to the school nurse without the consent they rely on."""
    return referral(
        pupils=[{"upn": upn(7, la=865)}],
        lawful_basis="consent",
        special_condition="9.2.a",
        consent_ref="C-77",
        categories=["personal", "medical"],
        time=f"{day}T11:00:00Z",
    )


def test_poison_on_the_topics_stops_nothing_and_the_last_breach_is_alerted(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    receiver, mailbox = Receiver([]), Mailbox()
    env = {
        "SHARING_AUDIT_PSEUDONYM_KEY": "5a" * 32,
        "SHARING_AUDIT_ALERT_HOLD_SECONDS": "0",
        "SHARING_AUDIT_WEBHOOK_URLS": orjson.dumps([receiver.url]).decode(),
        "SHARING_AUDIT_WEBHOOK_SECRET": SECRET.decode(),
        "SHARING_AUDIT_NOTIFY_EMAIL_TO": '["dpo@school.example"]',
        "SHARING_AUDIT_SMTP_HOST": "127.0.0.1",
        "SHARING_AUDIT_SMTP_PORT": str(mailbox.smtp.port),
        "SHARING_AUDIT_SMTP_TLS": "none",
        "SHARING_AUDIT_DESK_URL": "https://desk.example",
    }
    deep = b'{"id":"deep-300","type":"uk.school.pupil.referred.v1","data":' + b"[" * 299
    deep += b"]" * 299 + b"}"
    crlf = referral(recipient="agency:x\r\nBcc: someone@example.org")
    ordinary = [referral(pupils=[{"upn": upn(n)}]) for n in range(20)]
    last = high_breach("2026-03-03")
    sent: list[tuple[str, bytes]] = [
        ("sharing.referral", deep),
        ("sharing.referral", line(crlf)),
        ("sharing.census", line(big_census())),
        *(("sharing.referral", line(e)) for e in ordinary),
        ("sharing.census", line(census(time="2026-01-16T10:00:00Z"))),
        ("sharing.referral", line(last)),
    ]
    try:
        with Pipeline(url, kafka, worker_log=tmp_path / "worker.log", env=env):
            with MisProducer(kafka) as producer:
                for topic, raw in sent:  # one partition a topic: the poison goes first
                    producer.producer.send(topic, value=raw, partition=0)
                producer.flush(60)
            recorded = wait_until(lambda: ledger_count(url) >= len(sent), timeout=120)
            log = (tmp_path / "worker.log").read_text()
            assert recorded, f"{ledger_count(url)} of {len(sent)} recorded: {log[-3000:]}"
            alerts = read_topic(
                kafka,
                ALERTS_TOPIC,
                expected=2,
                timeout=60,
                identity=lambda r: orjson.loads(r.value)["seq"],
            )
            assert wait_until(lambda: len(receiver.requests) >= 2, timeout=60), log[-3000:]
            assert wait_until(lambda: len(mailbox.messages) >= 2, timeout=30), log[-3000:]
    finally:
        receiver.close()
        mailbox.close()

    final = ledger_final(url)
    assert final["deep-300"] == ("rejected", ("event.invalid",))
    assert final[crlf["id"]] == ("rejected", ("event.invalid",))
    assert all(final[e["id"]][0] != "rejected" for e in ordinary)
    assert final[last["id"]][0] == "breach"
    bodies = [orjson.loads(r.value) for r in alerts]
    assert last["id"] in [a["event_id"] for a in bodies]
    assert all(len(r.value) < MAX_ALERT_BYTES for r in alerts)
    big = next(a for a in bodies if len(a["pupil_keys"]) == len(LAS) * 1_000)
    assert any(reason.endswith("more like them") for reason in big["reasons"])
    notices = [orjson.loads(body) for _, body in receiver.requests]
    assert any(n["recipient"] == "agency:school-nursing" for n in notices)
