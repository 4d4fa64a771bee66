"""The SDK waits for the log's signed receipts: ``MisClient.send`` gives back the verified
receipt of the event, ``send_all`` those of many in order, and neither takes a broker's
acknowledgement or anyone else's signature for one (a real broker and a fake log)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.transparency.delivery import DeliveryReceipt, open_receipt, sign_receipt
from pipeline.transparency.note import Signer
from pipeline.transport.kafka import KafkaConfig, ensure_topics
from pipeline.transport.mis import MisClient, NoLogKey, NotRecorded
from schemas.events import Event
from tests.factory import upn
from tests.integration.fake_log import LOG, ORIGIN, FakeLog, honest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def mis(kafka: KafkaConfig) -> Iterator[MisClient]:
    ensure_topics(kafka)
    with MisClient(kafka, school_urn="116234", log_vkey=LOG.verifier.vkey()) as client:
        yield client


def referral(mis: MisClient, pupil: int) -> Event:
    return mis.referral(
        upn(pupil),
        recipient="agency:school-nursing",
        categories=["personal"],
        lawful_basis="public_task",
        channel="secure_email",
    )


def test_send_gives_back_the_logs_verified_receipt_of_the_event(
    kafka: KafkaConfig, mis: MisClient
) -> None:
    event = referral(mis, 1)
    with FakeLog(kafka):
        receipt = mis.send(event, timeout=10)
    assert (receipt.event_id, receipt.topic, receipt.origin) == (
        event.id,
        "sharing.referral",
        ORIGIN,
    )


def test_a_resent_event_gets_a_duplicate_receipt_naming_the_first_entry(
    kafka: KafkaConfig, mis: MisClient
) -> None:
    event = referral(mis, 1)
    with FakeLog(kafka):
        first = mis.send(event, timeout=10)
        again = mis.send(event, timeout=10)
    assert again.decision == "duplicate" and again.seq == first.seq
    assert again.offset != first.offset


def test_send_all_gives_the_receipts_in_order_or_names_the_events_without_one(
    kafka: KafkaConfig, mis: MisClient
) -> None:
    events = [referral(mis, n) for n in range(1, 6)]
    lost = events[3].id
    with FakeLog(kafka, lambda r: [] if r.event_id == lost else honest(r)):
        with pytest.raises(NotRecorded) as refused:
            mis.send_all(events, timeout=3)
        assert refused.value.event_ids == [lost]
        assert f"event {lost}: no receipt within 3s" in str(refused.value)
        assert sorted(refused.value.receipts) == [0, 1, 2, 4]
        notes: dict[str, bytes] = {}
        receipts = mis.send_all(events[:3], timeout=10, keep=lambda e, n: notes.update({e.id: n}))
    assert [r.event_id for r in receipts] == [e.id for e in events[:3]]
    assert {e.id: open_receipt(notes[e.id], LOG.verifier) for e in events[:3]} == {
        r.event_id: r for r in receipts
    }


def test_receipts_signed_by_anyone_but_the_log_do_not_deliver(
    kafka: KafkaConfig, mis: MisClient
) -> None:
    impostor = Signer(ORIGIN, bytes(range(1, 33)))

    def forged(receipt: DeliveryReceipt) -> list[bytes]:
        return [b"garbage", sign_receipt(receipt, impostor)]

    with FakeLog(kafka, forged), pytest.raises(NotRecorded):
        mis.send(referral(mis, 1), timeout=3)


def test_waiting_for_a_receipt_needs_the_logs_key_and_waiting_for_the_broker_does_not(
    kafka: KafkaConfig,
) -> None:
    ensure_topics(kafka)
    with MisClient(kafka, school_urn="116234") as mis:
        with pytest.raises(NoLogKey, match="log_vkey"):
            mis.send(referral(mis, 1))
        assert mis.send(referral(mis, 2), wait="acked") is None
