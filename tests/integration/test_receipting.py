"""The receipt the log owes each record it handled (pipeline.ledger.writing.receipting): one per
record read from a topic, whatever became of it, naming the entry that records it by seq
and by a leaf hash that the entry's own bytes hash to, provable in the next checkpoint."""

from __future__ import annotations

import pytest

from pipeline.engine import Outcome, Position
from pipeline.ledger.storage import schema
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import inclusion_proof, leaf_bytes, root_at
from pipeline.ledger.writing.ingest import LedgerWriter, Record
from pipeline.ledger.writing.receipting import signed_receipts
from pipeline.packs import load_pack
from pipeline.pseudonym import pseudonymiser
from pipeline.transparency.delivery import DeliveryReceipt, open_receipt
from pipeline.transparency.merkle import leaf_hash, verify_inclusion
from pipeline.transparency.note import Signer
from tests import factory

pytestmark = pytest.mark.integration
LOG = Signer("audit.test.sch.uk/log", bytes(range(32)))
AT = 1_767_225_600


def writer_on(url: str) -> LedgerWriter:
    ledger = Ledger.open(url)
    schema.upgrade(ledger.engine)
    return LedgerWriter(ledger, load_pack(), pseudonymiser(bytes(range(32))))


def on_topic(raws: list[bytes], topic: str = "sharing.referral", first: int = 0) -> list[Record]:
    return [(raw, Position(topic, 0, first + i)) for i, raw in enumerate(raws)]


def receipts_of(outcomes: list[Outcome]) -> list[DeliveryReceipt]:
    return [open_receipt(r, LOG.verifier) for r in signed_receipts(outcomes, LOG, AT) if r]


def test_each_record_gets_one_receipt_naming_its_position_event_and_outcome(db_url: str) -> None:
    writer = writer_on(db_url)
    allowed = factory.referral(consent_ref="C-1")
    review = factory.referral(recipient="agency:unknown-agency")
    first = writer.write(
        on_topic([factory.line(factory.consent_given()), factory.line(allowed)], "pupil.lifecycle")
    )
    records = on_topic([factory.line(review), b"{not json", factory.line(allowed)], first=10)
    receipts = receipts_of(writer.write(records))
    assert [(r.record, r.event_id, r.decision) for r in receipts] == [
        ("sharing.referral/0/10", review["id"], "review"),
        ("sharing.referral/0/11", None, "rejected"),
        ("sharing.referral/0/12", allowed["id"], "duplicate"),
    ]
    assert receipts[2].seq == next(o.seq for o in first if o.event_id == allowed["id"])


def test_a_receipts_leaf_is_the_hash_of_the_entry_at_its_seq(db_url: str) -> None:
    writer = writer_on(db_url)
    event = factory.referral()
    writer.write(on_topic([factory.line(event)]))
    again = receipts_of(writer.write(on_topic([factory.line(event)], first=1)))
    fresh = receipts_of(writer.write(on_topic([factory.line(factory.census())], "x", first=2)))
    with writer.ledger.engine.connect() as connection:
        for receipt in [*again, *fresh]:
            leaf = leaf_bytes(connection, receipt.seq)
            assert leaf is not None and leaf_hash(leaf) == receipt.leaf


def test_an_id_reused_with_other_content_is_receipted_as_such(db_url: str) -> None:
    writer = writer_on(db_url)
    event = factory.referral()
    writer.write(on_topic([factory.line(event)]))
    other = {**event, "time": "2026-07-22T09:30:00+01:00"}
    (receipt,) = receipts_of(writer.write(on_topic([factory.line(other)], first=1)))
    assert (receipt.event_id, receipt.decision) == (event["id"], "id_reused")


def test_a_late_fact_gets_one_receipt_and_its_re_evaluations_none(db_url: str) -> None:
    writer = writer_on(db_url)
    referral = factory.referral(consent_ref="C-1")
    writer.write(on_topic([factory.line(factory.consent_given()), factory.line(referral)]))
    withdrawn = factory.consent_withdrawn(time="2026-07-01T10:00:00+01:00")
    outcomes = writer.write(on_topic([factory.line(withdrawn)], "pupil.lifecycle", first=5))
    assert [o.kind for o in outcomes] == ["decision", "reevaluation"]
    assert [(r.event_id, r.record) for r in receipts_of(outcomes)] == [
        (withdrawn["id"], "pupil.lifecycle/0/5")
    ]


def test_a_record_not_read_from_a_topic_is_owed_no_receipt(sqlite_url: str) -> None:
    writer = writer_on(sqlite_url)
    outcomes = writer.write([(factory.line(factory.referral()), Position.line("a.jsonl", 1))])
    assert signed_receipts(outcomes, LOG, AT) == [None]


def test_every_receipted_leaf_is_proven_in_the_tree_that_holds_it(db_url: str) -> None:
    writer = writer_on(db_url)
    raws = [factory.line(factory.referral(pupils=[{"upn": factory.upn(i)}])) for i in range(40)]
    receipts = receipts_of(writer.write(on_topic(raws)))
    size = max(r.seq for r in receipts)
    with writer.ledger.engine.connect() as connection:
        root = root_at(connection, size)
        for receipt in receipts:
            proof = inclusion_proof(connection, receipt.seq - 1, size)
            verify_inclusion(receipt.seq - 1, size, receipt.leaf, proof, root)
