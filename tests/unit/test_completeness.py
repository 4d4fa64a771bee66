"""Completeness: a receipt the log signed is held to a checkpoint the auditor accepted
(pipeline.transparency.completeness). A forged receipt is refused naming why; one the
accepted tree should hold but does not prove, or holds another leaf for, is proof the log
misbehaved; one too young to be due is pending."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest

from pipeline.settings import Settings
from pipeline.transparency.completeness import (
    Accepted,
    Served,
    Verdict,
    another_event_at,
    evidence_readme,
    exit_status,
    held_in_line,
    judge,
    newer_than_accepted,
    open_held,
    tally,
    unproven_beyond,
)
from pipeline.transparency.delivery import DeliveryReceipt, ReceiptRefused, sign_receipt
from pipeline.transparency.merkle import inclusion_ranges, leaf_hash, proof_hashes, tree_root
from pipeline.transparency.note import Checkpoint, Signer, sign_note
from pipeline.transparency.receipt import receipt_for

ORIGIN = "audit.test.sch.uk/log"
LOG = Signer(ORIGIN, bytes(range(32)))
OTHER = Signer(ORIGIN, bytes(range(1, 33)))
T0 = 1_767_225_600
MMD = 60
LEAVES = [f"entry-{i}".encode() for i in range(10)]


def accepted(leaves: list[bytes] = LEAVES, at: int = T0 + 3600) -> Accepted:
    checkpoint = Checkpoint(ORIGIN, len(leaves), tree_root(leaves))
    return Accepted(checkpoint, sign_note(checkpoint.body(), LOG).encode(), at)


def receipt(seq: int, leaf: bytes | None = None, time: int = T0) -> DeliveryReceipt:
    return DeliveryReceipt(
        origin=ORIGIN,
        event_id=f"event-{seq}",
        topic="sharing.referral",
        partition=0,
        offset=seq,
        seq=seq,
        leaf=leaf_hash(LEAVES[seq - 1] if leaf is None else leaf),
        decision="allowed",
        time=time,
    )


def proof_of(seq: int, leaves: list[bytes] = LEAVES, signer: Signer = LOG) -> bytes:
    def node(at: tuple[int, int]) -> bytes:
        level, index = at
        return tree_root(leaves[index << level : (index + 1) << level])

    checkpoint = Checkpoint(ORIGIN, len(leaves), tree_root(leaves))
    hashes = proof_hashes(inclusion_ranges(seq - 1, len(leaves)), node)
    return receipt_for(seq - 1, hashes, sign_note(checkpoint.body(), signer).encode())


# -- what the sender holds ---------------------------------------------------------------


def test_a_receipt_the_log_signed_opens() -> None:
    note = sign_receipt(receipt(3), LOG)
    assert open_held(note, LOG.verifier, "event-3") == receipt(3)


def _other_key(note: bytes) -> bytes:
    return sign_receipt(receipt(3), OTHER)


def _edited_seq(note: bytes) -> bytes:
    return note.replace(b"\nseq 3\n", b"\nseq 4\n")


def _edited_leaf(note: bytes) -> bytes:
    ours = receipt(3).text()
    theirs = dataclasses.replace(receipt(3), leaf=leaf_hash(b"other")).text()
    return note.replace(ours, theirs)


def _garbage(note: bytes) -> bytes:
    return b"hello\n"


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        (_other_key, "not signed by the log's key"),
        (_edited_seq, "does not verify"),
        (_edited_leaf, "does not verify"),
        (_garbage, "malformed|note"),
    ],
    ids=["other key", "edited seq", "edited leaf", "garbage"],
)
def test_a_forged_receipt_is_refused_naming_why(forge: Callable[[bytes], bytes], why: str) -> None:
    forged = forge(sign_receipt(receipt(3), LOG))
    assert forged != sign_receipt(receipt(3), LOG)
    with pytest.raises(ReceiptRefused, match=why):
        open_held(forged, LOG.verifier, None)


def test_a_receipt_for_another_log_is_refused_naming_its_origin() -> None:
    elsewhere = Signer("elsewhere.sch.uk/log", bytes(range(32)))
    note = sign_receipt(dataclasses.replace(receipt(3), origin=elsewhere.name), elsewhere)
    with pytest.raises(ReceiptRefused, match="not signed by the log's key"):
        open_held(note, LOG.verifier, None)


def test_a_receipt_for_another_event_than_its_line_sent_is_refused() -> None:
    note = sign_receipt(receipt(3), LOG)
    with pytest.raises(ReceiptRefused, match="event-3, not the line's event-9"):
        open_held(note, LOG.verifier, "event-9")


def test_a_receipts_line_gives_its_event_and_note_verbatim() -> None:
    note = sign_receipt(receipt(3), LOG)
    line = json.dumps({"line": 1, "event_id": "event-3", "receipt": note.decode()}).encode()
    assert held_in_line(line) == ("event-3", note)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"\xff\xfe{", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"line": 1, "receipt": 7}', "receipt is not a string"),
        (b'{"line": 1, "event_id": 5, "receipt": "x"}', "event_id is not a string"),
    ],
)
def test_a_line_that_holds_no_receipt_is_refused_naming_why(line: bytes, why: str) -> None:
    with pytest.raises(ReceiptRefused, match=why):
        held_in_line(line)


def test_a_line_without_a_receipt_holds_none() -> None:
    assert held_in_line(b'{"line": 4, "event_id": "e", "receipt": null}') == ("e", None)


# -- against the accepted checkpoint -----------------------------------------------------


def test_a_receipt_proven_in_the_accepted_tree_is_proven() -> None:
    found = judge(receipt(4), accepted(), Served(proof_of(4), LEAVES[3]), LOG.verifier)
    assert found.verdict is Verdict.PROVEN


def test_a_receipt_proven_without_its_leaf_is_proven() -> None:
    found = judge(receipt(10), accepted(), Served(proof_of(10)), LOG.verifier)
    assert found.verdict is Verdict.PROVEN


def test_a_receipt_whose_leaf_is_not_at_its_seq_is_misbehaviour() -> None:
    dropped = LEAVES[:3] + LEAVES[4:] + [b"entry-later"]  # entry 4 left out, the rest moved up
    found = judge(receipt(4), accepted(dropped), Served(proof_of(4, dropped)), LOG.verifier)
    assert found.verdict is Verdict.MISBEHAVIOUR
    assert "seq 4" in found.reason and "not the leaf" in found.reason


def test_a_log_serving_another_entry_proven_in_its_place_is_misbehaviour() -> None:
    dropped = LEAVES[:3] + LEAVES[4:] + [b"entry-later"]
    served = Served(proof_of(4, dropped), dropped[3])
    found = judge(receipt(4), accepted(dropped), served, LOG.verifier)
    assert found.verdict is Verdict.MISBEHAVIOUR
    assert "holds another entry at seq 4" in found.reason


def test_a_log_serving_leaf_bytes_other_than_the_receipts_is_misbehaviour() -> None:
    found = judge(receipt(4), accepted(), Served(proof_of(4), b"entry-forged"), LOG.verifier)
    assert found.verdict is Verdict.MISBEHAVIOUR
    assert "leaf bytes" in found.reason


def test_a_proof_for_a_different_leaf_is_misbehaviour() -> None:
    # The log proves entry 5 and offers it as entry 4's proof: the receipt's leaf fails.
    proof = proof_of(5).replace(b"index 4\n", b"index 3\n")
    found = judge(receipt(4), accepted(), Served(proof), LOG.verifier)
    assert found.verdict is Verdict.MISBEHAVIOUR


def test_a_proof_against_a_fork_of_the_accepted_checkpoint_is_misbehaviour() -> None:
    fork = [*LEAVES[:9], b"entry-rewritten"]
    found = judge(receipt(4), accepted(), Served(proof_of(4, fork)), LOG.verifier)
    assert found.verdict is Verdict.MISBEHAVIOUR
    assert "fork" in found.reason


def test_a_proof_against_another_size_than_the_accepted_proves_nothing_yet() -> None:
    found = judge(receipt(4), accepted(), Served(proof_of(4, LEAVES[:8])), LOG.verifier)
    assert found.verdict is Verdict.UNPROVEN
    assert "size 8, not the 10" in found.reason


def test_a_proof_whose_checkpoint_the_log_did_not_sign_proves_nothing() -> None:
    found = judge(receipt(4), accepted(), Served(proof_of(4, signer=OTHER)), LOG.verifier)
    assert found.verdict is Verdict.UNPROVEN


def test_a_proof_for_another_index_proves_nothing() -> None:
    found = judge(receipt(4), accepted(), Served(proof_of(5)), LOG.verifier)
    assert found.verdict is Verdict.UNPROVEN
    assert "entry 5, not 4" in found.reason


@pytest.mark.parametrize(
    "garbage",
    [b"", b"<html>oops</html>", b"c2sp.org/tlog-proof@v1\nindex " + b"9" * 5000 + b"\n\nx"],
)
def test_a_log_answering_garbage_leaves_the_receipt_unproven(garbage: bytes) -> None:
    found = judge(receipt(4), accepted(), Served(garbage), LOG.verifier)
    assert found.verdict is Verdict.UNPROVEN
    assert "proof" in found.reason


def test_a_log_that_gave_no_proof_leaves_the_receipt_unproven_saying_why() -> None:
    served = Served(problem="the log answered 500 to GET /log/proof/inclusion/4")
    found = judge(receipt(4), accepted(), served, LOG.verifier)
    assert (found.verdict, found.reason) == (Verdict.UNPROVEN, served.problem)


# -- the maximum merge delay -------------------------------------------------------------


def test_a_receipt_beyond_the_accepted_tree_within_the_mmd_is_pending() -> None:
    found = unproven_beyond(receipt(11, b"x", time=T0), accepted(at=T0 + MMD), MMD, now=T0 + MMD)
    assert found is not None and found.verdict is Verdict.PENDING
    assert "audit verify" in found.reason


def test_a_receipt_beyond_the_accepted_tree_past_the_mmd_is_misbehaviour() -> None:
    found = unproven_beyond(
        receipt(11, b"x", time=T0), accepted(at=T0 + MMD + 1), MMD, now=T0 + MMD + 1
    )
    assert found is not None and found.verdict is Verdict.MISBEHAVIOUR
    assert "seq 11" in found.reason and "size 10" in found.reason


def test_a_receipt_within_the_accepted_tree_needs_its_proof() -> None:
    assert unproven_beyond(receipt(10), accepted(at=T0), MMD, now=T0) is None


# -- the outcome -------------------------------------------------------------------------


def test_misbehaviour_or_a_refusal_fails_with_1_and_an_unproven_receipt_with_2() -> None:
    base = judge(receipt(4), accepted(), Served(), LOG.verifier)
    proven, pending, unproven, refused, misbehaved = (
        dataclasses.replace(base, verdict=v)
        for v in (
            Verdict.PROVEN,
            Verdict.PENDING,
            Verdict.UNPROVEN,
            Verdict.REFUSED,
            Verdict.MISBEHAVIOUR,
        )
    )
    assert exit_status([proven, pending]) == 0
    assert exit_status([proven, unproven]) == 2
    assert exit_status([proven, dataclasses.replace(base, verdict=Verdict.UNREADABLE)]) == 2
    assert exit_status([unproven, refused]) == 1
    assert exit_status([proven, misbehaved]) == 1
    assert tally([proven, proven, pending])[Verdict.PROVEN] == 2


def test_the_evidence_says_in_plain_words_what_the_receipt_and_checkpoint_show() -> None:
    dropped = LEAVES[:3] + LEAVES[4:] + [b"entry-later"]
    found = judge(receipt(4), accepted(dropped), Served(proof_of(4, dropped)), LOG.verifier)
    text = evidence_readme(found, accepted(dropped), "receipts.jsonl line 4")
    assert "receipts.jsonl line 4" in text and "seq 4" in text
    assert "receipt.note" in text and "checkpoint.note" in text
    assert "sharing-audit audit receipts" in text


# -- the promise's setting ---------------------------------------------------------------


def test_the_mmd_is_six_checkpoint_periods_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS", raising=False)
    monkeypatch.setenv("SHARING_AUDIT_CHECKPOINT_SECONDS", "10")
    assert Settings().merge_delay == 60
    monkeypatch.setenv("SHARING_AUDIT_CHECKPOINT_SECONDS", "300")
    assert Settings().merge_delay == 1800, "signing less often never breaks the promise"
    monkeypatch.setenv("SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS", "90")
    assert Settings().merge_delay == 90


def test_a_receipt_dated_ahead_of_now_is_misbehaviour_not_pending_forever() -> None:
    ahead = receipt(11, b"x", time=T0 + 86_400)
    found = unproven_beyond(ahead, accepted(at=T0), MMD, now=T0)
    assert found is not None and found.verdict is Verdict.MISBEHAVIOUR
    assert "dated" in found.reason and "ahead" in found.reason


def test_a_receipt_dated_a_little_ahead_is_clock_skew_and_pending() -> None:
    found = unproven_beyond(receipt(11, b"x", time=T0 + 60), accepted(at=T0), MMD, now=T0)
    assert found is not None and found.verdict is Verdict.PENDING


def test_a_larger_checkpoint_the_log_serves_is_named_so_the_auditor_accepts_it_first() -> None:
    grown = [*LEAVES, b"entry-10", b"entry-11"]
    served = accepted(grown).note
    advice = newer_than_accepted(served, accepted(), LOG.verifier)
    assert advice is not None and "size 12" in advice and "audit verify" in advice
    assert newer_than_accepted(accepted().note, accepted(), LOG.verifier) is None
    assert newer_than_accepted(b"garbage", accepted(), LOG.verifier) is None


def test_two_events_receipted_at_one_seq_is_misbehaviour_with_both_receipts() -> None:
    claimed: dict[int, tuple[str, bytes]] = {}
    assert another_event_at(receipt(1), b"first", claimed) is None
    lie = dataclasses.replace(receipt(1), event_id="event-5", offset=5, decision="duplicate")
    found = another_event_at(lie, b"second", claimed)
    assert found is not None and found.verdict is Verdict.MISBEHAVIOUR
    assert "seq 1 for event event-1 and for event event-5" in found.reason
    assert found.other == b"first"


def test_a_duplicates_receipt_naming_its_own_events_entry_is_not_misbehaviour() -> None:
    claimed: dict[int, tuple[str, bytes]] = {}
    again = dataclasses.replace(receipt(1), offset=40, decision="duplicate")
    assert another_event_at(receipt(1), b"first", claimed) is None
    assert another_event_at(again, b"again", claimed) is None
