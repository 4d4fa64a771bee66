"""Delivery receipts (sharing-audit/receipt/v1): the test vector of
reference/verifiable-log.md reproduces byte for byte, and a receipt opens only if the log
signed exactly it, for its own origin (pipeline.transparency.delivery)."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.transparency.delivery import (
    DeliveryReceipt,
    ReceiptRefused,
    open_receipt,
    sign_receipt,
)
from pipeline.transparency.merkle import leaf_hash
from pipeline.transparency.note import Checkpoint, Note, NoteError, Signer, sign_note

ORIGIN = "example.org/sharing-audit"
LOG = Signer(ORIGIN, bytes(range(32)))
VECTOR = (
    "sharing-audit/receipt/v1\n"
    "origin example.org/sharing-audit\n"
    "event 9853ec03-f6d1-4be4-bcdf-9d1188830985\n"
    "record sharing.referral/1/0\n"
    "seq 6\n"
    "leaf UUFYUnUVBkx7vTW0TJ8Rrdz8OLQ5VU/Juw2LfGYcPo8=\n"
    "decision breach\n"
    "time 1767225600\n"
    "\n"
    "\u2014 example.org/sharing-audit xpKwp2swgjMKmwFZcUrEOY2iqKhXgeobuhFnJfqcqZ2xC3fSKkK+JU5W"
    "QYj2EyzxtZRJWOiybIC9+cCklqaKHJ+YxQY=\n"
).encode()
VECTOR_TEXT = VECTOR[: VECTOR.index(b"\n\n") + 1]


def vector_receipt() -> DeliveryReceipt:
    return DeliveryReceipt(
        origin=ORIGIN,
        event_id="9853ec03-f6d1-4be4-bcdf-9d1188830985",
        topic="sharing.referral",
        partition=1,
        offset=0,
        seq=6,
        leaf=leaf_hash(b"entry-5"),
        decision="breach",
        time=1767225600,
    )


def signed_text(text: bytes) -> bytes:
    """``text`` signed by the log's key as it stands: only the parser can refuse it."""
    return sign_note(text, LOG).encode()


def test_the_reference_vector_is_signed_byte_for_byte() -> None:
    assert sign_receipt(vector_receipt(), LOG) == VECTOR


def test_the_reference_vector_opens_with_the_logs_verifier_key() -> None:
    assert open_receipt(VECTOR, LOG.verifier) == vector_receipt()


def test_a_record_with_no_usable_id_is_receipted_with_a_dash() -> None:
    receipt = dataclasses.replace(vector_receipt(), event_id=None, decision="rejected")
    assert b"\nevent -\n" in receipt.text()
    assert open_receipt(sign_receipt(receipt, LOG), LOG.verifier).event_id is None


def test_an_event_id_with_spaces_survives_the_round_trip() -> None:
    receipt = dataclasses.replace(vector_receipt(), event_id="census 2026 spring")
    assert open_receipt(sign_receipt(receipt, LOG), LOG.verifier) == receipt


def test_a_receipt_signed_by_another_key_is_refused() -> None:
    other = Signer(ORIGIN, bytes(range(1, 33)))
    with pytest.raises(ReceiptRefused, match="not signed by the log's key"):
        open_receipt(sign_receipt(vector_receipt(), other), LOG.verifier)


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"seq 6\n", b"seq 7\n"), (b"decision breach", b"decision allowed"), (b"leaf UU", b"leaf VU")],
)
def test_an_edited_receipt_is_refused_as_its_signature_fails(old: bytes, new: bytes) -> None:
    with pytest.raises(ReceiptRefused, match="does not verify"):
        open_receipt(VECTOR.replace(old, new), LOG.verifier)


def test_a_failing_signature_by_the_logs_key_beside_a_good_one_is_refused() -> None:
    good = Note.parse(VECTOR)
    bad = dataclasses.replace(good.signatures[0], payload=bytes(64))
    with pytest.raises(ReceiptRefused, match="does not verify"):
        open_receipt(Note(good.text, (good.signatures[0], bad)).encode(), LOG.verifier)


def test_a_receipt_for_another_origin_is_refused_though_its_key_signed_it() -> None:
    text = VECTOR_TEXT.replace(b"origin example.org/", b"origin example.net/")
    with pytest.raises(ReceiptRefused, match=r"is for 'example\.net/sharing-audit'"):
        open_receipt(signed_text(text), LOG.verifier)


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (b"sharing-audit/receipt/v1", b"sharing-audit/receipt/v2", "line 1"),
        (b"seq 6", b"seq 06", "line 5"),
        (b"seq 6", b"seq 0", "line 5"),
        (b"record sharing.referral/1/0", b"record sharing.referral/01/0", "line 4"),
        (b"record sharing.referral/1/0", b"record sharing referral/1/0", "line 4"),
        (b"time 1767225600", b"time \xd9\xa3", "ASCII"),
        (b"time 1767225600", b"time -1", "line 8"),
        (b"leaf UUFYUnUVBkx7vTW0TJ8Rrdz8OLQ5VU/Juw2LfGYcPo8=", b"leaf UUFY", "line 6"),
        (b"decision breach", b"decision accepted", "not a receipt's outcome"),
        (b"event 9853ec03", b"event \t9853ec03", "line 3"),
        (b"time 1767225600\n", b"time 1767225600\nextra 1\n", "exactly 8 lines"),
        (b"decision breach\ntime 1767225600\n", b"decision breach\n", "ends after 7 lines"),
    ],
)
def test_a_text_not_exactly_in_the_format_is_refused_naming_the_line(
    old: bytes, new: bytes, why: str
) -> None:
    text = VECTOR_TEXT.replace(old, new)
    assert text != VECTOR_TEXT
    with pytest.raises(ReceiptRefused, match=why):
        open_receipt(signed_text(text), LOG.verifier)


def test_a_leaf_in_non_canonical_base64_is_refused() -> None:
    # The last character's low bits are not zero: the same hash could be spelt two ways.
    text = VECTOR_TEXT.replace(b"cPo8=", b"cPo9=")
    with pytest.raises(ReceiptRefused, match="canonical base64"):
        open_receipt(signed_text(text), LOG.verifier)


def test_no_checkpoint_parser_takes_a_receipt_for_a_checkpoint() -> None:
    with pytest.raises(NoteError):
        Checkpoint.from_body(VECTOR_TEXT)


def test_the_log_refuses_to_sign_a_receipt_for_another_origin() -> None:
    with pytest.raises(ValueError, match="signed by"):
        sign_receipt(dataclasses.replace(vector_receipt(), origin="example.net/x"), LOG)
